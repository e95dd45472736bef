"""Which failures mean that our own database or cache is not there right now (a restart, a
failover, a connection cut) rather than a bug: the API answers the first 503 with Retry-After,
the second 500, and the background jobs back off from the first without blaming a connection.
"""

import asyncpg
import redis.exceptions as redis_errors
from sqlalchemy import exc as sa_errors

# PostgreSQL went away or is not taking sessions yet: the connection is gone, the server is
# shutting down or starting up, or has no session slot left.
_DATABASE_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    sa_errors.TimeoutError,  # no pooled connection came free in time
)
# Valkey went away, or is loading its data after a start.
_CACHE_LOST = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
)


def closed_connection(exc: BaseException) -> bool:
    """asyncpg's InterfaceError for a connection (or pool) that was closed under us ("connection
    is closed", "cannot perform operation: connection is closed"). Its other InterfaceErrors are
    bugs of ours ("another operation is in progress", "the server expects 2 arguments for this
    query, 1 was passed"): a 500, not an outage to wait out."""
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def lost_dependency(exc: BaseException) -> str | None:
    """ "database" or "cache" when exc (or what it wraps) says that one is unreachable."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _CACHE_LOST):
            return "cache"
        if isinstance(current, _DATABASE_LOST) or closed_connection(current):
            return "database"
        if isinstance(current, sa_errors.DBAPIError) and current.connection_invalidated:
            return "database"
        if isinstance(current, ConnectionError):
            # A refused or reset socket: only the database driver lets those out raw (asyncpg
            # when it connects, also through SQLAlchemy's pool); redis and httpx wrap theirs.
            return "database"
        current = getattr(current, "orig", None) or current.__cause__
    return None


def root_cause(exc: BaseException) -> str:
    """The innermost error behind exc, as one short line ("CannotConnectNowError: the database
    system is starting up"): what a log line about a lost dependency should name."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "orig", None) or current.__cause__
        if inner is None:
            break
        current = inner
    message = str(current).strip().splitlines()
    return f"{type(current).__name__}: {message[0][:200]}" if message else type(current).__name__
