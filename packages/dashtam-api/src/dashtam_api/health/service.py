import asyncio

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
