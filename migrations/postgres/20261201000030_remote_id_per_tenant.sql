-- An application id (remote_id) is unique within its tenant only: with one index across
-- all tenants, a system token of one tenant could claim another tenant's application id
-- first and so keep that tenant's application from ever getting its payment.
DROP INDEX payments_remote_id_key;
CREATE UNIQUE INDEX payments_tenant_remote_id_key ON payments (tenant_id, remote_id)
    WHERE remote_id IS NOT NULL;
