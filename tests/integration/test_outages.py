"""Our own database or cache going away is not a bug: a pooled connection the server closed is
replaced before use (sessions) or the read is repeated on a fresh one (the reader), and what
cannot be answered is a 503 problem with Retry-After, never a 500.

Connections are cut with pg_terminate_backend (what a restart or a failover does to them) on
this worker's own database; unreachable servers are closed ports. The shared servers are never
stopped here.
"""

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest
import redis.exceptions as redis_errors
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from dashtam_api.auth.security import create_access_token
from dashtam_api.context import AppContext
from dashtam_api.jobs import loops
from dashtam_api.main import create_app
from dashtam_core.database import Database
from dashtam_core.lost_dependencies import lost_dependency, root_cause
from tests.fixtures.app import asgi_client
from tests.helpers import asyncpg_params


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def cut(settings, pid: int) -> None:
    """End one backend of this worker's database, as a restart ends them all."""
    conn = await asyncpg.connect(**asyncpg_params(settings.DATABASE_URL))
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def test_the_reader_repeats_a_read_on_a_fresh_connection(test_settings):
    db = Database.from_settings(test_settings)
    try:
        first = (await db.reader.fetch("SELECT pg_backend_pid()"))[0][0]
        await cut(test_settings, first)
        second = (await db.reader.fetch("SELECT pg_backend_pid()"))[0][0]
        assert second != first
    finally:
        await db.dispose()


async def test_a_reader_bug_is_not_an_outage(test_settings):
    """asyncpg's InterfaceError is also ours to fix (a statement given the wrong number of
    arguments): raised as it is, not repeated, the pool kept, and a 500, not a 503."""
    db = Database.from_settings(test_settings)
    try:
        before = (await db.reader.fetch("SELECT pg_backend_pid()"))[0][0]
        with pytest.raises(asyncpg.InterfaceError) as caught:
            await db.reader.fetch("SELECT $1::int + $2::int", 1)
        assert lost_dependency(caught.value) is None
        assert (await db.reader.fetch("SELECT pg_backend_pid()"))[0][0] == before
    finally:
        await db.dispose()


async def test_over_http_a_lost_connection_is_503_and_any_other_database_error_a_logged_500(
    test_settings, caplog
):
    """The same classification at the request boundary: a statement given the wrong number of
    arguments (asyncpg's InterfaceError, through the reader and through a session) is a 500
    with its traceback logged; a connection closed under us is a 503 with Retry-After."""
    app = create_app(test_settings)

    @app.get("/_probe/reader-bug")
    async def reader_bug() -> dict:
        await app.state.ctx.reader.fetch("SELECT $1::int + $2::int", 1)
        return {}

    @app.get("/_probe/session-bug")
    async def session_bug() -> dict:
        async with app.state.ctx.sessions() as session:
            connection = await session.connection()
            await connection.exec_driver_sql("SELECT $1::int + $2::int", (1,))
        return {}

    @app.get("/_probe/closed")
    async def closed() -> dict:
        raise asyncpg.InterfaceError("cannot perform operation: connection is closed")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        for path in ("/_probe/reader-bug", "/_probe/session-bug"):
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="dashtam.api"):
                bug = await client.get(path)
            assert bug.status_code == 500, bug.text
            assert "retry-after" not in bug.headers
            assert bug.json()["detail"] == "An unexpected error occurred."
            (logged,) = [r for r in caplog.records if r.name == "dashtam.api"]
            assert logged.exc_info is not None, path  # the traceback, for whoever fixes it
        is_unavailable(await client.get("/_probe/closed"), "database")


@pytest.mark.parametrize("pre_ping", [True, False])
async def test_a_session_gets_a_live_connection_after_a_cut(test_settings, pre_ping):
    """With DB_POOL_PRE_PING (the default) a session never meets the dead connection; without
    it the first one does, and it is a lost database, not a bug."""
    settings = test_settings.model_copy(update={"DB_POOL_SIZE": 1, "DB_POOL_PRE_PING": pre_ping})
    db = Database.from_settings(settings)
    try:
        async with db.sessionmaker() as session:
            first = await session.scalar(text("SELECT pg_backend_pid()"))
        await cut(settings, first)
        async with db.sessionmaker() as session:
            if pre_ping:
                assert await session.scalar(text("SELECT pg_backend_pid()")) != first
            else:
                with pytest.raises(Exception) as failed:  # noqa: PT011 -- classified below
                    await session.scalar(text("SELECT pg_backend_pid()"))
                assert lost_dependency(failed.value) == "database"
        async with db.sessionmaker() as session:  # either way, the next one is fine
            assert await session.scalar(text("SELECT 1")) == 1
    finally:
        await db.dispose()


@asynccontextmanager
async def client_of(settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own with these settings (its own pools, no test transaction)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        yield client


def is_unavailable(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert f"The {what} is unavailable" in response.json()["detail"]


async def test_an_unreachable_database_is_503_with_retry_after(test_settings):
    url = test_settings.database_url.set(port=closed_port())
    settings = test_settings.model_copy(
        update={"DATABASE_URL": url.render_as_string(hide_password=False)}
    )
    token, _ = create_access_token(
        user_id=uuid.uuid4(), session_id=uuid.uuid4(), secret=settings.SECRET_KEY, minutes=5
    )
    async with client_of(settings) as client:
        account = {"email": "someone@example.com", "password": "correct horse battery"}
        is_unavailable(await client.post("/api/v1/auth/register", json=account), "database")
        headers = {"Authorization": f"Bearer {token}"}
        for path in ("/api/v1/providers", "/api/v1/auth/me", "/api/v1/accounts"):
            is_unavailable(await client.get(path, headers=headers), "database")
        assert settings.database_url.password not in (await client.get("/health")).text


async def test_an_unreachable_cache_is_503_with_retry_after(test_settings):
    settings = test_settings.model_copy(
        update={"REDIS_URL": f"redis://default:x@127.0.0.1:{closed_port()}/0"}
    )
    async with client_of(settings) as client:
        login = {"email": "someone@example.com", "password": "correct horse battery"}
        is_unavailable(await client.post("/api/v1/auth/login", json=login), "cache")


async def test_the_background_loops_wait_out_an_unreachable_database(test_settings, caplog):
    """One warning line per round, no traceback, and the loop keeps going."""
    url = test_settings.database_url.set(port=closed_port())
    settings = test_settings.model_copy(
        update={
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "REFRESH_INTERVAL_SECONDS": 1,
        }
    )
    ctx = AppContext.open(settings)
    jobs = loops.Jobs(ctx)
    try:
        with caplog.at_level(logging.WARNING, logger="dashtam.jobs"):
            jobs.start()
            await asyncio.sleep(0.5)
            await jobs.stop()
    finally:
        await ctx.close()
    lines = [r for r in caplog.records if r.name == "dashtam.jobs"]
    assert {r.getMessage().split(":")[0] for r in lines} == {
        "refresh round",
        "sync round",
        "webhooks",
    }
    assert all("the database is unavailable" in r.getMessage() for r in lines)
    assert not any(r.exc_info for r in lines)


@pytest.mark.parametrize(
    ("failure", "lost"),
    [
        (asyncpg.ConnectionDoesNotExistError("closed in the middle"), "database"),
        (asyncpg.CannotConnectNowError("the database system is starting up"), "database"),
        (asyncpg.InterfaceError("connection is closed"), "database"),
        (
            asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
            None,
        ),
        (ConnectionRefusedError(111, "Connect call failed"), "database"),
        (redis_errors.ConnectionError("Connection refused"), "cache"),
        (redis_errors.BusyLoadingError("loading the dataset"), "cache"),
        (IntegrityError("INSERT", {}, Exception("duplicate key")), None),
        (ValueError("a bug"), None),
        (redis_errors.ResponseError("WRONGTYPE"), None),
    ],
)
def test_what_counts_as_a_lost_dependency(failure, lost):
    assert lost_dependency(failure) == lost


def test_a_lost_dependency_is_logged_by_what_is_behind_it():
    wrapped = DBAPIError(
        "SELECT 1", {}, asyncpg.CannotConnectNowError("the database system is shutting down")
    )
    assert lost_dependency(wrapped) == "database"
    assert root_cause(wrapped) == "CannotConnectNowError: the database system is shutting down"
    assert root_cause(ValueError()) == "ValueError"


async def test_a_write_is_put_right_once_the_database_is_back(test_settings, caplog):
    """What an outage left undone (a sync's claim to give back) is tried again until it goes
    through; another kind of error ends it at once."""
    ctx = AppContext.open(test_settings)
    attempts = []

    async def comes_back_on_the_third_try():
        attempts.append("try")
        if attempts.count("try") < 3:
            raise ConnectionRefusedError(111, "Connect call failed")  # as asyncpg lets it out

    async def a_bug():
        attempts.append("bug")
        raise ValueError("not an outage")

    try:
        with caplog.at_level(logging.WARNING, logger="dashtam_api.context"):
            ctx.when_back("the first write", comes_back_on_the_third_try, within=10)
            ctx.when_back("the second write", a_bug, within=10)
            for _ in range(100):
                if attempts.count("try") == 3 and "bug" in attempts:
                    break
                await asyncio.sleep(0.05)
    finally:
        await ctx.close()
    assert attempts.count("try") == 3
    assert attempts.count("bug") == 1
    assert [r.getMessage() for r in caplog.records] == [
        "gave up on the second write: ValueError: not an outage"
    ]
