-- The outbox relay keeps a cursor instead of marking every event published. Marking
-- rewrote each event row (payload included) with new index entries, and left a dead row
-- for vacuum; the outbox is now written once per event and never updated.
--
-- Sequence numbers are drawn before commit, so a later `seq` can commit first: a cursor
-- on `seq` alone would step over an event still being written. Each event records the
-- transaction that wrote it (`txid`, the 64-bit id, which does not wrap). The relay reads
-- in (`txid`, `seq`) order and only events of transactions older than every transaction
-- still running (the snapshot's xmin), so nothing can commit behind the cursor.
-- `published_at` is no longer written on PostgreSQL.
ALTER TABLE outbox ADD COLUMN txid BIGINT;
ALTER TABLE outbox ALTER COLUMN txid SET DEFAULT txid_current();
-- Events still unpublished now come before every later one, in their order; those
-- already published keep no txid and are never read again.
UPDATE outbox SET txid = 0 WHERE published_at IS NULL;
CREATE INDEX outbox_txid_idx ON outbox (txid, seq);
DROP INDEX outbox_unpublished_idx;

-- The last event published: one row.
CREATE TABLE outbox_cursor (
    id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    txid BIGINT NOT NULL,
    seq BIGINT NOT NULL
);
INSERT INTO outbox_cursor (txid, seq) VALUES (-1, 0);
