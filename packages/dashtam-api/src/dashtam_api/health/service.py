import asyncio
import time

from redis.asyncio import Redis

from dashtam_api import __version__
from dashtam_core.cache import ping
from dashtam_core.config import Settings
from dashtam_core.database import Database


async def check_health(*, settings: Settings, db: Database, redis: Redis) -> dict:
    """Probe PostgreSQL and Valkey at once, each under the configured deadline."""
    timeout = settings.HEALTH_TIMEOUT_SECONDS
    database, cache = await asyncio.gather(db.ping(timeout), ping(redis, timeout))
    checks = {"database": database.as_dict(), "cache": cache.as_dict()}
    down = [name for name, check in checks.items() if check["status"] == "down"]
    return {
        "status": "degraded" if down else "healthy",
        "service": "api",
        "version": __version__,
        "environment": settings.ENVIRONMENT,
        "checks": checks,
        "down": down,
    }


class HealthProbe:
    """The dependencies' state, probed at most once per HEALTH_CACHE_SECONDS per process.

    A load balancer probing every second on every replica, or a burst of probes, costs one
    database and one Valkey round trip per interval, not per request; probes that arrive while
    one is running wait for it. What an answer guarantees: it was true at most
    HEALTH_CACHE_SECONDS ago, so an outage shows within that interval plus the probe's own
    deadline (HEALTH_TIMEOUT_SECONDS). 0 probes on every request.
    """

    def __init__(self, *, settings: Settings, db: Database, redis: Redis):
        self._settings, self._db, self._redis = settings, db, redis
        self._report: dict | None = None
        self._checked_at = 0.0
        self._running: asyncio.Future | None = None

    async def report(self) -> dict:
        fresh_for = self._settings.HEALTH_CACHE_SECONDS
        if self._report is not None and time.monotonic() - self._checked_at < fresh_for:
            return self._report
        if self._running is None:
            self._running = asyncio.ensure_future(self._probe())
        # shield: a client that disconnects does not cancel the probe others wait for.
        return await asyncio.shield(self._running)

    async def _probe(self) -> dict:
        try:
            report = await check_health(settings=self._settings, db=self._db, redis=self._redis)
            self._report, self._checked_at = report, time.monotonic()
            return report
        finally:
            self._running = None
