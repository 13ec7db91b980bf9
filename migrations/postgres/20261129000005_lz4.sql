-- The JSON documents (a payment, an event) are 2-3 KiB, past the size where PostgreSQL
-- compresses them on every write. lz4 does that at a fraction of pglz's CPU cost (the
-- create benchmark: 13 % more creates/s). Only where the server was built with lz4
-- (PostgreSQL 14+); rows written before keep pglz, which stays readable.
DO $$
BEGIN
  IF EXISTS (
    SELECT 1 FROM pg_settings
    WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)
  ) THEN
    ALTER TABLE payments ALTER COLUMN document SET COMPRESSION lz4,
                         ALTER COLUMN saga SET COMPRESSION lz4;
    ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4;
  END IF;
END
$$;
