"""dashtam-init-db against the real server: migrations to head, idempotent, safe when run twice at
once, adopting a database built before migrations, refusing one it cannot vouch for."""

import asyncio
import os
import sys

import dashtam_models
from dashtam_core import migrate
from tests.fixtures.environment import ROOT
from tests.helpers import env_for, execute, fetch, run_main, run_module
from tests.migration_helpers import LEGACY_SCHEMA, catalog_of, migrated

TABLES = {t.name for t in dashtam_models.metadata.sorted_tables} | {"alembic_version"}


async def tables_in(url: str) -> set[str]:
    rows = await fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def revision_of(url: str) -> list[str]:
    return [r["version_num"] for r in await fetch(url, "SELECT version_num FROM alembic_version")]


async def test_init_db_twice_migrates_then_does_nothing(scratch_databases):
    url = await scratch_databases.create()
    first = run_main("dashtam_core.init_db", env_for(url))
    assert first.returncode == 0, first.stderr
    assert "upgraded from an empty schema to head" in first.stdout
    assert await tables_in(url) == TABLES
    assert await revision_of(url) == [migrate.head()]
    second = run_main("dashtam_core.init_db", env_for(url))
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert await revision_of(url) == [migrate.head()]


async def test_init_db_twice_at_the_same_moment_both_succeed(scratch_databases):
    url = await scratch_databases.create()
    env = {**os.environ, **env_for(url)}
    runs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dashtam_core.init_db",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = await asyncio.gather(*(r.communicate() for r in runs))
    assert [r.returncode for r in runs] == [0, 0], [e.decode() for _, e in results]
    outputs = [out.decode() for out, _ in results]
    # Exactly one migrated; the other waited on the lock and found the schema at head.
    assert sum("upgraded from an empty schema" in o for o in outputs) == 1
    assert sum("nothing to do" in o for o in outputs) == 1
    assert await tables_in(url) == TABLES
    assert await revision_of(url) == [migrate.head()]


async def test_init_db_with_echo_logs_sql(scratch_databases):
    url = await scratch_databases.create()
    result = run_module("dashtam_core.init_db", env_for(url, DB_ECHO="true"))
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE users" in result.stdout + result.stderr


async def test_a_database_built_by_create_all_is_adopted_with_its_rows(scratch_databases):
    url = await scratch_databases.create()
    await execute(
        url,
        LEGACY_SCHEMA,
        "INSERT INTO users (email, name) VALUES ('ann@example.com', 'Ann')",
        "INSERT INTO providers (user_id, provider_key, alias) "
        "SELECT id, 'sandbox', 'my bank' FROM users",
        "INSERT INTO provider_connections (provider_id, status) SELECT id, 'active' FROM providers",
        "INSERT INTO provider_audit_logs (user_id, action) SELECT id, 'connected' FROM users",
    )

    result = run_main("dashtam_core.init_db", env_for(url))
    assert result.returncode == 0, result.stderr
    assert "adopted" in result.stdout
    assert await revision_of(url) == [migrate.head()]
    rows = await fetch(
        url,
        "SELECT u.email, p.alias, c.status, a.action FROM users u "
        "JOIN providers p ON p.user_id = u.id JOIN provider_connections c ON c.provider_id = p.id "
        "JOIN provider_audit_logs a ON a.user_id = u.id",
    )
    assert [tuple(r) for r in rows] == [("ann@example.com", "my bank", "active", "connected")]
    # Adopted and upgraded, it is the very schema the migrations build from empty.
    fresh = await migrated(scratch_databases)
    assert await catalog_of(url) == await catalog_of(fresh)


async def test_a_pre_migrations_database_that_differs_is_refused_untouched(scratch_databases):
    url = await scratch_databases.create()
    await execute(
        url,
        LEGACY_SCHEMA,
        "ALTER TABLE users ADD COLUMN nickname text",
        "INSERT INTO users (email, nickname) VALUES ('bo@example.com', 'bo')",
    )
    result = run_main("dashtam_core.init_db", env_for(url))
    assert result.returncode == 1
    assert "differ from the initial revision" in result.stderr
    assert "users.nickname" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "alembic_version" not in await tables_in(url)
    assert [tuple(r) for r in await fetch(url, "SELECT email, nickname FROM users")] == [
        ("bo@example.com", "bo")
    ]


async def test_a_database_ahead_of_the_code_is_one_line_and_untouched(scratch_databases):
    url = await migrated(scratch_databases)
    await execute(url, "UPDATE alembic_version SET version_num = 'f00dfeedbeef'")
    before = await catalog_of(url)
    result = run_main("dashtam_core.init_db", env_for(url))
    assert result.returncode == 1
    assert "'f00dfeedbeef', which this code does not know" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert await revision_of(url) == ["f00dfeedbeef"]
    assert await catalog_of(url) == before
