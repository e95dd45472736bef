"""dashtam-init-test-db: rebuilds a test database; refuses (exit 2) anything else, untouched."""

import uuid

import asyncpg

import dashtam_models
from tests.helpers import asyncpg_params, env_for, run_module

TABLES = {t.name for t in dashtam_models.metadata.sorted_tables}


async def test_rebuilds_a_clean_schema(scratch_databases):
    url = await scratch_databases.create()
    assert run_module("dashtam_core.init_db", env_for(url)).returncode == 0
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        await conn.execute("INSERT INTO users (email) VALUES ('left@over.example')")
        await conn.execute("CREATE TABLE stale_table (id int)")
    finally:
        await conn.close()

    result = run_module("dashtam_core.init_test_db", env_for(url))
    assert result.returncode == 0, result.stderr
    assert "rebuilt" in result.stdout

    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        users = await conn.fetchval("SELECT count(*) FROM users")
        sync_commit = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    assert tables == TABLES  # stale_table is gone, every model table is there
    assert users == 0
    assert sync_commit == "off"


async def test_refuses_a_database_whose_name_fails_the_rule_and_keeps_every_row(scratch_databases):
    # "latest_prod" contains "test": the weak rule would have wiped it.
    name = f"latest_prod_{uuid.uuid4().hex[:6]}"
    url = await scratch_databases.create(name)
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        await conn.execute("CREATE TABLE accounts (id serial PRIMARY KEY, owner text)")
        await conn.executemany(
            "INSERT INTO accounts (owner) VALUES ($1)", [("ann",), ("bob",), ("cy",)]
        )
    finally:
        await conn.close()

    result = run_module("dashtam_core.init_test_db", env_for(url, ENVIRONMENT="testing"))
    assert result.returncode == 2
    assert result.stderr.startswith("SAFETY:")
    assert name in result.stderr

    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        owners = [r["owner"] for r in await conn.fetch("SELECT owner FROM accounts ORDER BY id")]
    finally:
        await conn.close()
    assert owners == ["ann", "bob", "cy"]


async def test_drops_worker_clones_a_crashed_run_left_behind(scratch_databases):
    template = f"lo{uuid.uuid4().hex[:8]}_test"
    url = await scratch_databases.create(template)
    for leftover in (f"{template}_gw8", f"{template}_main", f"{template}x"):
        await scratch_databases.create(leftover)

    result = run_module("dashtam_core.init_test_db", env_for(url))
    assert result.returncode == 0, result.stderr
    assert f"{template}_gw8" in result.stdout
    assert f"{template}_main" in result.stdout

    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        names = {
            r["datname"]
            for r in await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{template}%"
            )
        }
    finally:
        await conn.close()
    # The clones are gone; the template stays; a name that fails the rule is never touched.
    assert names == {template, f"{template}x"}
