"""Small helpers tests import (fixtures live in tests/fixtures/)."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from dashtam_core.config import Settings
from dashtam_core.test_databases import force_drop
from tests.fixtures.environment import ROOT, TEST_ENV_FILE


def asyncpg_params(url: str) -> dict:
    parsed = make_url(url)
    return {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "database": parsed.database,
    }


def run_module(
    module: str, env: dict[str, str | None], timeout: float = 120, args: list[str] | None = None
) -> subprocess.CompletedProcess:
    """Run one of our console entry points as a separate process, as a person would.

    ``env`` overrides the process environment; a None value removes that variable.
    """
    full_env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-m", module, *(args or [])],
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def private_env_file(directory: Path, url: str, **overrides: str) -> Path:
    """A test env file like env/.env.test that names ``url``'s database (and other overrides).

    init-test-db treats the database an env file names as the test database; tests that need
    a template of their own (never the run's real one) write such a file.
    """
    values = {"DATABASE_URL": url, **overrides}
    lines = []
    for line in TEST_ENV_FILE.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in values:
            line = f"{key}={values.pop(key)}"
        lines.append(line)
    lines += [f"{key}={value}" for key, value in values.items()]
    path = directory / f"env-{uuid.uuid4().hex[:8]}"
    path.write_text("\n".join(lines) + "\n")
    return path


async def fetch(url: str, query: str, *args):
    """Rows of one query on the database ``url`` names."""
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def env_for(url: str, **extra: str) -> dict[str, str]:
    """Process environment for a CLI run against the given database, test env file otherwise."""
    return {"DASHTAM_ENV_FILE": str(TEST_ENV_FILE), "DATABASE_URL": url, **extra}


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return await predicate()


class ScratchDatabases:
    """Databases a test creates on the shared server as the test role, dropped afterwards."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.created: list[str] = []

    def url_for(self, name: str) -> str:
        return self.settings.database_url.set(database=name).render_as_string(hide_password=False)

    async def create(self, name: str | None = None, *, comment: str | None = None) -> str:
        """A new empty database owned by the test role; ``comment`` marks it (COMMENT ON)."""
        name = name or f"dashtam_test_s{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(**asyncpg_params(self.settings.DATABASE_URL))
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
            self.created.append(name)
            if comment is not None:
                await conn.execute(f'COMMENT ON DATABASE "{name}" IS {quote_literal(comment)}')
        finally:
            await conn.close()
        return self.url_for(name)

    async def drop_all(self) -> None:
        conn = await asyncpg.connect(**asyncpg_params(self.settings.DATABASE_URL))
        try:
            for name in self.created:
                await force_drop(conn, name)
        finally:
            await conn.close()
