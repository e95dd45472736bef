"""dashtam-init-db against the real server: idempotent, and safe when run twice at once."""

import asyncio
import os
import sys

import asyncpg

import dashtam_models
from tests.fixtures.environment import ROOT
from tests.helpers import asyncpg_params, env_for, run_module

TABLES = {t.name for t in dashtam_models.metadata.sorted_tables}


async def tables_in(url: str) -> set[str]:
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


async def test_init_db_twice_creates_then_does_nothing(scratch_databases):
    url = await scratch_databases.create()
    first = run_module("dashtam_core.init_db", env_for(url))
    assert first.returncode == 0, first.stderr
    assert "created users" in first.stdout
    assert await tables_in(url) == TABLES
    second = run_module("dashtam_core.init_db", env_for(url))
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert await tables_in(url) == TABLES


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
    outputs = sorted(out.decode() for out, _ in results)
    # Exactly one created the schema; the other waited on the lock and found it in place.
    assert "nothing to do" in outputs[0] or "nothing to do" in outputs[1]
    assert sum("created users" in o for o in outputs) == 1
    assert await tables_in(url) == TABLES


async def test_init_db_with_echo_logs_sql(scratch_databases):
    url = await scratch_databases.create()
    result = run_module("dashtam_core.init_db", env_for(url, DB_ECHO="true"))
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE users" in result.stdout + result.stderr
