"""Fixtures every suite shares. Tests run against the isolated test environment (env/.env.test);
nothing here ever opens the development database."""

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from dashtam_core.config import Settings, TestSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
TEST_ENV_FILE = Path(os.environ.get("DASHTAM_ENV_FILE", ROOT / "env" / ".env.test"))
DEV_ENV_FILE = ROOT / "env" / ".env.dev"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        suite = Path(item.fspath).relative_to(ROOT / "tests").parts[0]
        if suite in ("integration", "api"):
            item.add_marker(getattr(pytest.mark, suite))


@pytest.fixture(scope="session")
def test_settings() -> Settings:
    return load_settings(TestSettings, TEST_ENV_FILE)


def worker_number() -> int:
    """0 for a serial run, N for xdist worker gwN."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


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
    module: str, env: dict[str, str | None], timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run one of our console entry points as a separate process, as a person would.

    ``env`` overrides the process environment; a None value removes that variable.
    """
    full_env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-m", module],
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ScratchDatabases:
    """Databases a test creates on the shared server as the test role, dropped afterwards."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.created: list[str] = []

    def url_for(self, name: str) -> str:
        return self.settings.database_url.set(database=name).render_as_string(hide_password=False)

    async def create(self, name: str | None = None) -> str:
        name = name or f"dashtam_test_s{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(**asyncpg_params(self.settings.DATABASE_URL))
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        finally:
            await conn.close()
        self.created.append(name)
        return self.url_for(name)

    async def drop_all(self) -> None:
        conn = await asyncpg.connect(**asyncpg_params(self.settings.DATABASE_URL))
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def scratch_databases(test_settings: Settings) -> AsyncIterator[ScratchDatabases]:
    scratch = ScratchDatabases(test_settings)
    yield scratch
    await scratch.drop_all()


@pytest.fixture
async def app(test_settings: Settings):
    from dashtam_api.main import create_app

    application = create_app(test_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


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
