"""One async engine per process (asyncpg), its sessions, and a health probe."""

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from dashtam_core.config import Settings


def create_engine(settings: Settings, **overrides) -> AsyncEngine:
    """The engine for this process, sized and timed from settings."""
    options = {
        "echo": settings.DB_ECHO,
        "pool_size": settings.DB_POOL_SIZE,
        "max_overflow": settings.DB_MAX_OVERFLOW,
        "pool_timeout": settings.DB_POOL_TIMEOUT,
        "pool_recycle": settings.DB_POOL_RECYCLE,
        # No pre-ping: it would cost a round trip on every checkout of a hot path.
        "pool_pre_ping": False,
        "connect_args": {
            "timeout": settings.DB_CONNECT_TIMEOUT,
            "server_settings": {"application_name": "dashtam"},
        },
    }
    options.update(overrides)
    return create_async_engine(settings.DATABASE_URL, **options)


@dataclass
class Database:
    """The process's engine and session factory, created once at start-up."""

    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    @classmethod
    def from_settings(cls, settings: Settings) -> "Database":
        engine = create_engine(settings)
        return cls(engine=engine, sessionmaker=async_sessionmaker(engine, expire_on_commit=False))

    async def ping(self, timeout: float) -> "ProbeResult":
        return await probe(self._select_one, timeout)

    async def _select_one(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
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
