-- The JSON documents (a payment, its saga, an event) are opaque to the database: no
-- query looks inside them. As `jsonb` they were parsed on every write and rendered on
-- every read; as text they are stored as they come.
--
-- At 2-3 KiB they are also past the size where PostgreSQL compresses values on every
-- write. lz4 does that at a fraction of pglz's CPU cost (the create benchmark: 13 % more
-- creates/s). Only where the server was built with lz4 (PostgreSQL 14+); values written
-- before keep pglz, which stays readable.
ALTER TABLE payments ALTER COLUMN document TYPE TEXT USING document::text,
                     ALTER COLUMN saga TYPE TEXT USING saga::text;
ALTER TABLE outbox ALTER COLUMN payload TYPE TEXT USING payload::text;

DO $$
BEGIN
  IF EXISTS (
    SELECT 1 FROM pg_settings
    WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)
  ) THEN
    -- EXECUTE: before 14 the syntax itself is unknown, and PostgreSQL checks a DO block's
    -- statements when it reads the block, even those of a branch that does not run.
    EXECUTE 'ALTER TABLE payments ALTER COLUMN document SET COMPRESSION lz4, '
         || 'ALTER COLUMN saga SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4';
  END IF;
END
$$;
