-- Issue 23: the hosts a tenant's configuration may make cassa call or send citizens to
-- (host patterns, a JSON array of text; managed by admins). '[]': only the global
-- CASSA_OUTBOUND_ALLOW applies.
ALTER TABLE tenants ADD COLUMN allowed_hosts TEXT NOT NULL DEFAULT '[]';
