"""The Valkey (Redis protocol) client of this process."""

from redis.asyncio import Redis

# The asyncio Retry: given redis.retry's, the client "retries" a coroutine it has not awaited
# yet, so it never retries (the first command after a Valkey restart failed).
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from dashtam_core.config import Settings
from dashtam_core.database import ProbeResult, probe


def create_redis(settings: Settings) -> Redis:
    """A pooled client; a short, bounded retry so a dead server is reported quickly."""
    return Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=settings.HEALTH_TIMEOUT_SECONDS,
        socket_timeout=settings.HEALTH_TIMEOUT_SECONDS,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        health_check_interval=30,
        decode_responses=True,
    )


async def ping(client: Redis, timeout: float) -> ProbeResult:
    return await probe(client.ping, timeout)
