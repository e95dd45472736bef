"""What the console scripts share: one-line failures and a non-zero exit, never a traceback."""

import asyncio
import gc
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

import asyncpg
from sqlalchemy.exc import DBAPIError, OperationalError

from dashtam_core.config import ConfigError


class CommandError(Exception):
    """A failure to report as one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1, *, prefixed: bool = True):
        super().__init__(message)
        self.code = code
        self.prefixed = prefixed


def run(name: str, command: Callable[[], Awaitable[int | None]]) -> None:
    logging.basicConfig(level=logging.INFO, format=f"{name}: %(message)s", stream=sys.stdout)
    try:
        code = asyncio.run(command()) or 0
    except CommandError as exc:
        print(f"{name}: {exc}" if exc.prefixed else str(exc), file=sys.stderr)
        code = exc.code
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        code = 1
    except (OSError, OperationalError, DBAPIError, asyncpg.PostgresError) as exc:
        print(f"{name}: {describe_db_error(exc)}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    """``sys.exit``, without the interpreter's collections at exit walking every object the
    imports made (SQLAlchemy, the models...): ~0.3 s of CPU per command otherwise. Everything
    is frozen out of the collector's sight first; ``atexit`` handlers still run (logging's
    flushes its handlers) and the interpreter still flushes standard output and error."""
    gc.freeze()
    sys.exit(code)


def describe_db_error(exc: BaseException) -> str:
    """A short cause for a database failure, without the URL (it holds the password)."""
    cause = getattr(exc, "orig", None) or exc
    cause = getattr(cause, "__cause__", None) or cause
    if isinstance(cause, ConnectionRefusedError | socket.gaierror) or "Connect call failed" in str(
        cause
    ):
        return "cannot reach PostgreSQL (connection refused): start it with `inv up` or `inv test-setup`"
    if isinstance(cause, asyncpg.InvalidPasswordError):
        return "PostgreSQL refused the password in DATABASE_URL (re-run `inv setup`?)"
    if isinstance(cause, asyncpg.InvalidCatalogNameError):
        return f"database does not exist: {cause}"
    if isinstance(cause, TimeoutError):
        return "PostgreSQL did not answer in time"
    first = str(cause).splitlines()[0] if str(cause) else ""
    return f"database error: {type(cause).__name__}: {first}"
