"""The local runtime end to end, on a private pair of servers (own layout, own ports).

It never touches the shared servers: it builds a second project layout in a temporary folder,
starts PostgreSQL and Valkey there, and checks what `inv up`/`inv down`/`inv test-clean` promise.
"""

import asyncio
import shutil
import socket

import asyncpg
import pytest
import redis

from infra import workflows
from infra.envfiles import ensure_env_files, read_both
from infra.layout import ROOT, Layout
from infra.runtime import process
from infra.runtime.local import LocalRuntime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def private_runtime(tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    for name in (".env.dev.example", ".env.test.example"):
        shutil.copy(ROOT / "env" / name, tmp_path / "env" / name)
    (tmp_path / "infra" / "postgres").mkdir(parents=True)
    shutil.copy(ROOT / "infra/postgres/bootstrap.sql", tmp_path / "infra/postgres/bootstrap.sql")
    monkeypatch.setenv("DASHTAM_POSTGRES_PORT", str(free_port()))
    monkeypatch.setenv("DASHTAM_VALKEY_PORT", str(free_port()))
    layout = Layout(root=tmp_path)
    ensure_env_files(layout)
    runtime = LocalRuntime(layout)
    yield runtime
    runtime.stop_servers()
    runtime.delete_data()


def sql(creds, query: str, *, database: str | None = None, fetch: bool = False):
    """One statement as the environment's own role (the runtime under test is synchronous)."""

    async def run():
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=creds.db_port,
            user=creds.db_user,
            password=creds.db_password,
            database=database or creds.db_name,
        )
        try:
            return await (conn.fetch(query) if fetch else conn.execute(query))
        finally:
            await conn.close()

    return asyncio.run(run())


def database_names(runtime, port: int) -> set[str]:
    async def run():
        conn = await runtime.superuser_connect(port)
        try:
            return {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        finally:
            await conn.close()

    return asyncio.run(run())


def valkey(creds) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=creds.redis_port,
        db=creds.redis_db,
        username=creds.redis_user,
        password=creds.redis_password,
    )


def test_data_survives_a_restart_and_test_clean_spares_dev(private_runtime, capsys):
    runtime, layout = private_runtime, private_runtime.layout
    dev, test_creds = read_both(layout)

    assert runtime.start_servers() == ["postgres", "valkey"]
    assert runtime.start_servers() == []  # already up: a no-op

    sql(dev, "CREATE TABLE notes (body text)")
    sql(dev, "INSERT INTO notes VALUES ('kept across restarts')")
    with valkey(dev) as cache:
        cache.set("dev-key", "dev-value")
    with valkey(test_creds) as cache:
        cache.set("test-key", "x")

    assert workflows.status(layout) == 0
    table = capsys.readouterr().out
    assert "postgres" in table
    assert "yes" in table

    assert runtime.stop_servers() == ["valkey", "postgres"]
    assert not process.port_in_use(dev.db_port)
    assert not process.port_in_use(dev.redis_port)
    assert runtime.start_servers() == ["postgres", "valkey"]

    assert [r["body"] for r in sql(dev, "SELECT body FROM notes", fetch=True)] == [
        "kept across restarts"
    ]
    with valkey(dev) as cache:
        assert cache.get("dev-key") == b"dev-value"

    # A leftover worker database and test keys: test-clean removes them, and only them.
    sql(test_creds, 'CREATE DATABASE "dashtam_test_gw7"')
    workflows.test_clean(layout)
    assert "dashtam_test_gw7" in capsys.readouterr().out
    names = database_names(runtime, dev.db_port)
    assert dev.db_name in names
    assert not {"dashtam_test_gw7", test_creds.db_name} & names
    with valkey(dev) as cache:
        assert cache.get("dev-key") == b"dev-value"
    with valkey(test_creds) as cache:
        assert cache.get("test-key") is None

    # The next start recreates the test database (the bootstrap is idempotent).
    runtime.bootstrap(dev, test_creds)
    assert test_creds.db_name in database_names(runtime, dev.db_port)


def test_a_taken_port_is_one_clear_error(private_runtime):
    dev, _ = read_both(private_runtime.layout)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", dev.db_port))
        blocker.listen()
        from infra.errors import InfraError

        with pytest.raises(
            InfraError, match=f"port {dev.db_port} for PostgreSQL is already in use"
        ):
            private_runtime.start_postgres(dev.db_port)
