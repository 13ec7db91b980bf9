-- Fewer index entries per write (a create writes its payment twice and two events, and
-- marks both events published: each of those adds an entry to every index of its table).
--
-- Most payments have no remote_id (only adopted ones do): the unique index keeps only
-- those that have one. `ON CONFLICT DO NOTHING` and the lookups by remote_id still use it.
ALTER TABLE payments DROP CONSTRAINT payments_remote_id_key;
CREATE UNIQUE INDEX payments_remote_id_key ON payments (remote_id) WHERE remote_id IS NOT NULL;

-- An event id is a random UUID cassa makes when it writes the event, and nothing looks an
-- event up by it: the unique index on it checked nothing.
ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_key;
