-- Kafka bridge: the platform-notification step and the outbox publisher's lease.

ALTER TABLE payments ADD COLUMN notify_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX payments_notify_pending_idx ON payments (next_check_at) WHERE notify_pending = 1;

-- A named lease held by one instance at a time (e.g. the outbox publisher, so events
-- of one payment are published in order).
CREATE TABLE leases (
    name TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
