-- Kafka bridge: the platform-notification step and the outbox publisher's lease.

ALTER TABLE payments ADD COLUMN notify_pending BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX payments_notify_pending_idx ON payments (next_check_at) WHERE notify_pending;

-- A named lease held by one instance at a time (e.g. the outbox publisher, so events
-- of one payment are published in order).
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
