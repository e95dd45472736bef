-- Run as a superuser in one database after its schema exists (after init-db / init-test-db).
-- Idempotent. Makes the audit logs (provider_audit_logs, security_audit_logs) append-only for
-- the application's role for real: each table and its trigger function belong to a role nobody
-- logs in as, and the application's role holds only SELECT and INSERT on them (so it cannot
-- UPDATE, DELETE, ALTER them or disable the triggers).
-- From the environment (psql's \getenv):
--   DASHTAM_APP_USER       the application's role in this database
--   DASHTAM_JANITOR_GRANT  "TRUNCATE" in the test environment only (the per-test janitor), else ""
--   DASHTAM_LOCK_SCHEMA    "on": the schema goes to dashtam_audit_owner too, so the application's
--                          role (which keeps USAGE and CREATE) cannot DROP the audit log either.
--                          "off" in the test environment, whose role rebuilds the schema per run.
\set ON_ERROR_STOP on
\set QUIET on
\getenv app_user DASHTAM_APP_USER
\getenv janitor DASHTAM_JANITOR_GRANT
\getenv lock_schema DASHTAM_LOCK_SCHEMA

SELECT 'CREATE ROLE dashtam_audit_owner NOLOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dashtam_audit_owner') \gexec
-- ON DELETE SET NULL from the audit log runs as the table's owner, which needs the schema.
GRANT USAGE ON SCHEMA public TO dashtam_audit_owner;
ALTER TABLE provider_audit_logs OWNER TO dashtam_audit_owner;
ALTER FUNCTION provider_audit_logs_append_only() OWNER TO dashtam_audit_owner;
REVOKE ALL ON provider_audit_logs FROM :"app_user";
GRANT SELECT, INSERT ON provider_audit_logs TO :"app_user";
SELECT format('GRANT %s ON provider_audit_logs TO %I', :'janitor', :'app_user')
 WHERE :'janitor' <> '' \gexec
ALTER TABLE security_audit_logs OWNER TO dashtam_audit_owner;
ALTER FUNCTION security_audit_logs_append_only() OWNER TO dashtam_audit_owner;
REVOKE ALL ON security_audit_logs FROM :"app_user";
GRANT SELECT, INSERT ON security_audit_logs TO :"app_user";
SELECT format('GRANT %s ON security_audit_logs TO %I', :'janitor', :'app_user')
 WHERE :'janitor' <> '' \gexec
\if :lock_schema
ALTER SCHEMA public OWNER TO dashtam_audit_owner;
GRANT USAGE, CREATE ON SCHEMA public TO :"app_user";
\endif
