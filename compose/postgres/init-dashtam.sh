#!/usr/bin/env bash
# The PostgreSQL image runs this once, on its first start with an empty data directory: the
# roles and databases of both environments from the same infra/postgres/bootstrap.sql as the local
# runtime (psql \getenv reads DASHTAM_* from the environment, set from .dashtam/compose/postgres.env).
# `inv up` runs the same file again on every start (it is idempotent): passwords follow the env files.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -f /dashtam/sql/bootstrap.sql
