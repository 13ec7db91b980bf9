-- An application id (remote_id) is unique within its tenant only: with one constraint
-- across all tenants, a system token of one tenant could claim another tenant's
-- application id first and so keep that tenant's application from ever getting its
-- payment. SQLite cannot drop a table's UNIQUE constraint: the table is rebuilt, with the
-- same columns and indexes and the unique index per (tenant_id, remote_id) instead.
CREATE TABLE payments_rebuilt (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL,
    service_id BLOB NOT NULL,
    user_id BLOB NOT NULL,
    remote_id BLOB,
    payment_type TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    next_check_at TEXT,
    version BIGINT NOT NULL,
    document TEXT NOT NULL,
    saga TEXT NOT NULL,
    notify_pending INTEGER NOT NULL DEFAULT 0
);
INSERT INTO payments_rebuilt (id, tenant_id, service_id, user_id, remote_id, payment_type,
    status, created_at, updated_at, next_check_at, version, document, saga, notify_pending)
SELECT id, tenant_id, service_id, user_id, remote_id, payment_type,
    status, created_at, updated_at, next_check_at, version, document, saga, notify_pending
FROM payments;
DROP TABLE payments;
ALTER TABLE payments_rebuilt RENAME TO payments;
CREATE UNIQUE INDEX payments_tenant_remote_id_key ON payments (tenant_id, remote_id)
    WHERE remote_id IS NOT NULL;
CREATE INDEX payments_open_next_check_idx ON payments (next_check_at)
    WHERE status IN ('CREATION_PENDING', 'PAYMENT_PENDING', 'PAYMENT_STARTED');
CREATE INDEX payments_created_idx ON payments (created_at DESC, id DESC);
CREATE INDEX payments_tenant_created_idx ON payments (tenant_id, created_at DESC, id DESC);
CREATE INDEX payments_status_idx ON payments (status);
CREATE INDEX payments_notify_pending_idx ON payments (next_check_at) WHERE notify_pending = 1;
