-- Roles and databases of both environments, on one PostgreSQL server.
-- The ONE source of truth for the local runtime (infra/runtime/postgres.py) and the compose runtime.
-- Idempotent: run it as often as you like; it converges the server to this state and sets the
-- role passwords to those of the env files. Run with psql as a superuser; the names and passwords
-- come from the environment (psql's \getenv, so they never appear on a command line):
--   DASHTAM_DEV_DB_USER, DASHTAM_DEV_DB_PASSWORD, DASHTAM_DEV_DB_NAME,
--   DASHTAM_TEST_DB_USER, DASHTAM_TEST_DB_PASSWORD, DASHTAM_TEST_DB_NAME,
--   DASHTAM_TEST_DB_MARKER  the comment that marks the test database as this checkout's: written
--                           only when this script creates it (init-test-db rebuilds nothing else)
\set ON_ERROR_STOP on
\set QUIET on
\getenv dev_user DASHTAM_DEV_DB_USER
\getenv dev_password DASHTAM_DEV_DB_PASSWORD
\getenv dev_db DASHTAM_DEV_DB_NAME
\getenv test_user DASHTAM_TEST_DB_USER
\getenv test_password DASHTAM_TEST_DB_PASSWORD
\getenv test_db DASHTAM_TEST_DB_NAME
\getenv test_marker DASHTAM_TEST_DB_MARKER

-- Roles: log in with a password (scram-sha-256), never superusers.
SELECT format('CREATE ROLE %I LOGIN', :'dev_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'dev_user') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'test_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'test_user') \gexec
ALTER ROLE :"dev_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'dev_password';
-- CREATEDB: the test role clones per-worker databases from its template.
ALTER ROLE :"test_user" WITH LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'test_password';

-- Databases, each owned by its role.
SELECT format('CREATE DATABASE %I OWNER %I ENCODING %L TEMPLATE template0', :'dev_db', :'dev_user', 'UTF8')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'dev_db') \gexec
SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = :'test_db') AS create_test_db \gset
\if :create_test_db
CREATE DATABASE :"test_db" OWNER :"test_user" ENCODING 'UTF8' TEMPLATE template0;
COMMENT ON DATABASE :"test_db" IS :'test_marker';
\endif
ALTER DATABASE :"dev_db" OWNER TO :"dev_user";
ALTER DATABASE :"test_db" OWNER TO :"test_user";

-- Isolation: nobody but the owner may connect; neither role can open the other's database.
REVOKE ALL ON DATABASE :"dev_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"test_db" FROM PUBLIC;
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
-- The test role creates and drops its per-worker clones from here: a template cannot be cloned
-- while anyone (the cloner included) is connected to it. The database holds no data.
GRANT CONNECT ON DATABASE postgres TO :"test_user";
