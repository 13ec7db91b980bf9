-- cassa initial schema (SQLite). Applied migrations are never edited.

CREATE TABLE tenants (
    id BLOB PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    tax_identification_number TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE services (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants (id),
    payment_types TEXT NOT NULL,
    intermediary_url TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE payments (
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
    CONSTRAINT payments_remote_id_key UNIQUE (remote_id)
);
CREATE INDEX payments_open_next_check_idx ON payments (next_check_at)
    WHERE status IN ('CREATION_PENDING', 'PAYMENT_PENDING', 'PAYMENT_STARTED');
CREATE INDEX payments_created_idx ON payments (created_at DESC, id DESC);
CREATE INDEX payments_tenant_created_idx ON payments (tenant_id, created_at DESC, id DESC);
CREATE INDEX payments_status_idx ON payments (status);

CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id BLOB NOT NULL UNIQUE,
    payment_id BLOB NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    published_at TEXT
);
CREATE INDEX outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_payment_idx ON outbox (payment_id, seq);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    payment_id BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);

CREATE TABLE accounts (
    id BLOB PRIMARY KEY NOT NULL,
    owner_id BLOB NOT NULL,
    currency TEXT NOT NULL,
    balance_cents BIGINT NOT NULL CHECK (balance_cents >= 0),
    held_cents BIGINT NOT NULL CHECK (held_cents >= 0 AND held_cents <= balance_cents),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE holds (
    payment_id BLOB PRIMARY KEY NOT NULL,
    account_id BLOB NOT NULL REFERENCES accounts (id),
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
