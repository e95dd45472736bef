"""Small helpers tests import (fixtures live in tests/fixtures/)."""

import asyncio
import importlib
import io
import logging
import os
import subprocess
import sys
import threading
import traceback
import uuid
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from dashtam_core.config import Settings
from dashtam_core.test_database_guard import read_markers
from dashtam_core.test_databases import force_drop
from dashtam_models import Account, Provider, ProviderConnection
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


def run_main(
    module: str, env: dict[str, str | None], args: list[str] | None = None
) -> subprocess.CompletedProcess:
    """Run the ``main()`` of one of our console entry points in this process, as run_module
    would run it as its own: this environment (None removes a variable) and argv, what it
    prints on stdout and stderr (its logging included), its exit code; an uncaught exception
    is exit 1 with its traceback on stderr, as Python would print it.

    It spares the ~0.6 s of CPU a new interpreter and its imports cost, which made the CLI
    tests a good part of the suite. Every entry point keeps at least one test through
    run_module, so the real process (its ``-m`` start, its exit) stays covered.
    """
    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    outcome: dict[str, int] = {}

    def target() -> None:
        saved_env, saved_argv = dict(os.environ), sys.argv
        root = logging.getLogger()
        saved_handlers, saved_level = root.handlers[:], root.level
        root.handlers = []  # so the command's own logging.basicConfig takes effect, on `out`
        try:
            os.environ.update({k: v for k, v in env.items() if v is not None})
            for key in (k for k, v in env.items() if v is None):
                os.environ.pop(key, None)
            sys.argv = [module, *(args or [])]
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    main()
                    outcome["code"] = 0
                except SystemExit as exc:
                    code = exc.code
                    outcome["code"] = code if isinstance(code, int) else (0 if code is None else 1)
                    if isinstance(code, str):
                        print(code, file=sys.stderr)
                except BaseException:
                    traceback.print_exc()
                    outcome["code"] = 1
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            sys.argv = saved_argv
            root.handlers, root.level = saved_handlers, saved_level

    # A thread of its own: the command calls asyncio.run, and async tests have a loop running.
    thread = threading.Thread(target=target, name=f"run_main {module}")
    thread.start()
    thread.join()
    return subprocess.CompletedProcess(
        [module, *(args or [])], outcome["code"], out.getvalue(), err.getvalue()
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


async def marker_of(url: str, name: str) -> str | None:
    """The marker database ``name`` carries, read as the guard reads it (None: none, or no such
    database), through the server ``url`` names."""
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        found = await read_markers(conn, names=[name])
    finally:
        await conn.close()
    return found[name].marker if name in found else None


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


class LentDatabases(ScratchDatabases):
    """Databases made once per worker and lent to one test at a time under the name and the
    COMMENT ON DATABASE it needs (ALTER DATABASE ... RENAME TO), then given back under their own
    name with no comment. For the guard's ~25 refused targets: making and dropping a database
    for each was a fifth of the suite's PostgreSQL time (a DROP DATABASE forces a checkpoint)."""

    async def lend(self, index: int, name: str, *, comment: str | None) -> str:
        while len(self.created) <= index:
            await self.create(f"dashtam_test_lent{uuid.uuid4().hex[:10]}")
        await self._rename(self.created[index], name, comment)
        return self.url_for(name)

    async def give_back(self, index: int, name: str) -> None:
        await self._rename(name, self.created[index], None)

    async def _rename(self, old: str, new: str, comment: str | None) -> None:
        conn = await asyncpg.connect(**asyncpg_params(self.settings.DATABASE_URL))
        try:
            if old != new:
                await conn.execute(f'ALTER DATABASE "{old}" RENAME TO "{new}"')
            literal = "NULL" if comment is None else quote_literal(comment)
            await conn.execute(f'COMMENT ON DATABASE "{new}" IS {literal}')
        finally:
            await conn.close()


# The connect flow over the real servers (tests/e2e, tests/browser), with the `api` client.


def connectable_provider(api) -> tuple[dict, str]:
    """A signed-in user with a sandbox provider; returns (auth headers, provider path)."""
    email = f"e2e-{os.urandom(4).hex()}@example.com"
    password = "correct horse battery"
    assert (
        api.post("/api/v1/auth/register", json={"email": email, "password": password}).status_code
        == 201
    )
    token = api.post("/api/v1/auth/login", json={"email": email, "password": password}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    provider = api.post(
        "/api/v1/providers",
        headers=headers,
        json={"provider_key": "sandbox", "alias": "E2E <Bank>"},
    ).json()
    return headers, f"/api/v1/providers/{provider['id']}/authorization"


def authorization_url(api, headers, path) -> str:
    response = api.post(path, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["authorization_url"]


async def account_of(client, session, headers, *, alias: str, **account) -> Account:
    """An account of the person these headers sign in, as a sync leaves one: a sandbox
    provider (``alias``), its active connection, the account (``account``: its columns;
    ``synced_at`` an hour ago, to the second). Flushed, not committed."""
    me = (await client.get("/api/v1/auth/me", headers=headers)).json()
    user_id = uuid.UUID(me["id"])
    provider = Provider(user_id=user_id, provider_key="sandbox", alias=alias)
    session.add(provider)
    await session.flush()
    connection = ProviderConnection(provider_id=provider.id, status="active")
    session.add(connection)
    await session.flush()
    synced_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    row = Account(
        user_id=user_id, connection_id=connection.id, currency="USD", synced_at=synced_at,
        **account,
    )  # fmt: skip
    session.add(row)
    await session.flush()
    return row
