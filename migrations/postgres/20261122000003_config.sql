-- Operators' configuration API: a service's full public document (JSON text) and its
-- intermediary credentials, sealed with CASSA_SECRET_KEY (never stored in the clear).

ALTER TABLE services ADD COLUMN intermediary_kind TEXT NOT NULL DEFAULT 'simulator';
ALTER TABLE services ADD COLUMN document TEXT NOT NULL DEFAULT '{}';
ALTER TABLE services ADD COLUMN credentials TEXT;
CREATE INDEX services_tenant_idx ON services (tenant_id, id);
-- Optimistic concurrency of configuration writes (a stale PUT/PATCH gets 409).
ALTER TABLE services ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
