"""One async engine per process (asyncpg), its sessions, a reader for hot reads, a health probe."""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from dashtam_core.config import Settings
from dashtam_core.lost_dependencies import closed_connection


def create_engine(settings: Settings, **overrides) -> AsyncEngine:
    """The engine for this process, sized and timed from settings."""
    options = {
        "echo": settings.DB_ECHO,
        "pool_size": settings.DB_POOL_SIZE,
        "max_overflow": settings.DB_MAX_OVERFLOW,
        "pool_timeout": settings.DB_POOL_TIMEOUT,
        "pool_recycle": settings.DB_POOL_RECYCLE,
        # A round trip per session (docs/performance.md: what it costs); the hot reads go
        # through the reader, which retries a lost connection instead.
        "pool_pre_ping": settings.DB_POOL_PRE_PING,
        "connect_args": {
            "timeout": settings.DB_CONNECT_TIMEOUT,
            # The sync writes each transaction's JSON in SQL (dashtam_api/sync/transactions.py)
            # with ISO text for timestamps, whatever the server's default.
            "server_settings": {"application_name": "dashtam", "DateStyle": "ISO"},
        },
    }
    options.update(overrides)
    return create_async_engine(settings.DATABASE_URL, **options)


class Reader(Protocol):
    """Runs one read statement (asyncpg's $1, $2 parameters) and returns its rows."""

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...

    def stream(
        self, query: str, *args: Any, batch: int = 1000
    ) -> AsyncIterator[list[asyncpg.Record]]: ...


# What a pooled connection that the server closed under us raises on its next use (and
# asyncpg's InterfaceError when it says the connection is closed: lost_dependencies.closed_connection).
_CONNECTION_LOST = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    ConnectionResetError,
)


class _ConnectionLost(Exception):
    """The connection a read ran on was closed by the server; the read may be repeated."""


class PoolReader:
    """Single read statements straight on asyncpg, for the hot read paths.

    A statement is its own transaction, so it reads one consistent snapshot with no BEGIN or
    ROLLBACK round trip, no ORM and no greenlet hop; asyncpg prepares it once per connection.
    On the authenticated provider list this is ~4x a session's throughput (inv bench api).
    Writes, and reads that need several statements in one transaction, stay on sessions.

    Its connections (at most DB_POOL_SIZE, opened on demand, kept while the process lives)
    connect exactly where the engine does (the dialect's own reading of DATABASE_URL) with the
    same timeouts. They are asyncpg connections kept on a free list, not an asyncpg pool: the
    pool's acquire and release (a task to shield the release, a timer re-armed, a proxy per
    use) cost ~85 us of CPU a read, a twelfth of a page of transactions; taking a connection off
    a list costs nothing measurable (docs/performance.md).

    Reads wait for a connection in arrival order: a FIFO semaphore the size of the pool lets in
    only reads that will find a connection free or may open one. (asyncpg's pool handed a
    released connection to whichever task asked next: under load a few reads waited many turns,
    provider list at 32 clients p99 100-134 ms at p50 26 ms; first come, first served ~40 ms.)
    """

    def __init__(self, engine: AsyncEngine, settings: Settings):
        _, params = engine.dialect.create_connect_args(engine.url)
        self._params = {
            **params,
            "timeout": settings.DB_CONNECT_TIMEOUT,
            # Reads that write JSON in SQL rely on ISO text for timestamps, whatever the
            # server's default.
            "server_settings": {"application_name": "dashtam", "DateStyle": "ISO"},
        }
        self._size = settings.DB_POOL_SIZE
        self._acquire_timeout = settings.DB_POOL_TIMEOUT
        # asyncio's Semaphore is first come, first served (a newcomer queues behind waiters).
        self._turns = asyncio.Semaphore(self._size)
        # Free connections, the most recently used last (taken first: its caches are warm).
        self._free: list[asyncpg.Connection] = []
        # Every open connection (free or in use) and the generation it belongs to: close()
        # starts a new one, and a connection of an older one is ended when its read is done.
        self._generation_of: dict[asyncpg.Connection, int] = {}
        self._generation = 0

    def connections(self) -> tuple[int, int]:
        """(in use, idle): this reader's open connections (a metric)."""
        return len(self._generation_of) - len(self._free), len(self._free)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return await self._fetch(query, *args)
        except _ConnectionLost:
            # The server restarted or cut us off: every idle connection is as dead as this
            # one. A read is safe to repeat, once, on a fresh connection.
            self._drop_free()
            try:
                return await self._fetch(query, *args)
            except _ConnectionLost as again:
                raise again.__cause__ from None  # what the driver said, for the 503

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        if self._turns.locked():
            # asyncio.timeout, not wait_for: that wraps the wait in a task each time.
            async with asyncio.timeout(self._acquire_timeout):
                await self._turns.acquire()
        else:
            await self._turns.acquire()  # a turn is free: no wait, no timer
        try:
            # Only as many reads as there are connections (or room for one) get this far:
            # never a wait here but opening one, bounded by the connect timeout.
            conn = self._free.pop() if self._free else await self._connect()
            try:
                rows = await conn.fetch(query, *args)
            except BaseException as exc:
                if self._keep_or_end(conn, exc):
                    raise _ConnectionLost from exc
                raise
            self._put_back(conn)
            return rows
        finally:
            self._turns.release()

    def _keep_or_end(self, conn: asyncpg.Connection, exc: BaseException) -> bool:
        """After a failed read: keep the connection after an error of the statement
        (PostgreSQL refused it, or asyncpg did before sending it: ours to fix, a 500); end it
        after anything that may have left the protocol mid-exchange (a cancelled read, a
        timeout) or lost it. True if it was lost (the read may be repeated)."""
        # InternalClientError: seen when the server's goodbye (a terminated session) arrives
        # as a query starts; the protocol is out of step and the connection of no further use.
        lost = isinstance(
            exc, (*_CONNECTION_LOST, asyncpg.InternalClientError)
        ) or closed_connection(exc)
        if not lost and isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
            self._put_back(conn)
        else:
            self._end(conn)
        return lost

    def _put_back(self, conn: asyncpg.Connection) -> None:
        if conn.is_closed() or self._generation_of.get(conn) != self._generation:
            self._end(conn)
        else:
            self._free.append(conn)

    def _end(self, conn: asyncpg.Connection) -> None:
        self._generation_of.pop(conn, None)
        conn.terminate()

    def _drop_free(self) -> None:
        while self._free:
            self._end(self._free.pop())

    async def _connect(self) -> asyncpg.Connection:
        generation = self._generation
        conn = await asyncpg.connect(**self._params)
        self._generation_of[conn] = generation
        return conn

    async def stream(
        self, query: str, *args: Any, batch: int = 1000
    ) -> AsyncIterator[list[asyncpg.Record]]:
        """A read too big to hold (an export), in batches of rows from a server-side cursor:
        memory stays one batch whatever the row count. On a connection of its own, not the
        reader's: a long export never takes a turn from the hot path's reads."""
        conn = await asyncpg.connect(**self._params)
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                async for rows in _batches(conn, query, args, batch):
                    yield rows
        finally:
            await conn.close()

    async def close(self) -> None:
        """Close the idle connections; one in use is closed when its read ends. A read after
        this opens new ones (as the first read did)."""
        self._generation += 1
        free, self._free = self._free, []
        for conn in free:
            self._generation_of.pop(conn, None)
            try:
                await conn.close(timeout=self._acquire_timeout)
            except Exception:  # a connection already gone: nothing to say goodbye to
                conn.terminate()


@dataclass
class ConnectionReader:
    """The same reads on one connection already held, e.g. inside a transaction: they see what
    it has written."""

    connection: asyncpg.Connection

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self.connection.fetch(query, *args)

    async def stream(
        self, query: str, *args: Any, batch: int = 1000
    ) -> AsyncIterator[list[asyncpg.Record]]:
        """In the transaction this connection is in (a cursor needs one)."""
        async for rows in _batches(self.connection, query, args, batch):
            yield rows


async def _batches(
    conn: asyncpg.Connection, query: str, args: tuple, batch: int
) -> AsyncIterator[list[asyncpg.Record]]:
    cursor = await conn.cursor(query, *args)
    while rows := await cursor.fetch(batch):
        yield rows


@dataclass
class Database:
    """The process's engine, session factory and reader, created once at start-up."""

    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    reader: PoolReader

    @classmethod
    def from_settings(cls, settings: Settings) -> "Database":
        engine = create_engine(settings)
        return cls(
            engine=engine,
            sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
            reader=PoolReader(engine, settings),
        )

    async def ping(self, timeout: float) -> "ProbeResult":
        return await probe(self._select_one, timeout)

    async def _select_one(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.reader.close()
        await self.engine.dispose()


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_ms: float
    error: str | None = None

    def as_dict(self) -> dict:
        result: dict = {"status": "up" if self.ok else "down", "latency_ms": self.latency_ms}
        if self.error:
            result["error"] = self.error
        return result


async def probe(check, timeout: float) -> ProbeResult:
    """Run one dependency check under a deadline; failures become a short, secret-free reason."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await check()
    except TimeoutError:
        return ProbeResult(False, _ms(started), f"no answer within {timeout:g}s")
    except Exception as exc:  # any failure of a dependency is a "down", never a 500
        return ProbeResult(False, _ms(started), _reason(exc))
    return ProbeResult(True, _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _reason(exc: BaseException) -> str:
    text_ = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text_}"[:200] if text_ else type(exc).__name__
