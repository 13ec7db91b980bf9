-- A payment's document and an event's payload are now stored packed by cassa (see
-- src/store/packed.rs); SQLite keeps them in the same TEXT columns, as blobs, and reads
-- the text stored before as it is. Nothing to change in the schema: this migration only
-- marks the database, so that an older binary, which cannot read packed values, refuses to
-- start on it instead of failing on every payment it reads.
SELECT 1;
