"""Ended sessions, known to every API process within SESSION_SYNC_SECONDS, at no cost per request.

An access token names its session (``sid``) and lives ACCESS_TOKEN_MINUTES; ending a session
(logout, a password change, "sign out everywhere", a stolen refresh token detected) must stop its
access tokens at once, not at their expiry. Valkey holds the ended sessions whose tokens may
still be alive (a sorted set scored by when the last of them expires); every process reads it
into a frozenset every SESSION_SYNC_SECONDS, and each request asks the set, in memory. A process
that ends a session knows it at once. The set stays small: only sessions ended within the last
ACCESS_TOKEN_MINUTES are in it.

Ending writes Valkey before the database commits: if Valkey is away, nothing is ended (503,
try again); if the commit then fails, the session's tokens are refused all the same.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable

from redis.asyncio import Redis

from dashtam_core.lost_dependencies import lost_dependency

log = logging.getLogger("dashtam.sessions")

KEY = "auth:ended-sessions"


class EndedSessions:
    def __init__(self, redis: Redis, *, token_seconds: float) -> None:
        self._redis = redis
        self._token_seconds = token_seconds
        self._ended: frozenset[str] = frozenset()
        self._local: dict[str, float] = {}  # ended here, kept until the next sync has them

    def __contains__(self, sid: str) -> bool:
        return sid in self._ended or sid in self._local

    async def end(self, sids: Iterable[uuid.UUID | str]) -> None:
        """Refuse these sessions' access tokens from now on, in every process."""
        sids = [str(s) for s in sids]
        if not sids:
            return
        now = time.time()
        until = now + self._token_seconds + 60  # a token issued just now, and clocks' skew
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(KEY, dict.fromkeys(sids, until))
            pipe.zremrangebyscore(KEY, "-inf", now)  # what can no longer matter
            await pipe.execute()
        self._local.update(dict.fromkeys(sids, until))

    async def sync(self) -> None:
        now = time.time()
        members = await self._redis.zrangebyscore(KEY, now, "+inf")
        self._ended = frozenset(m.decode() if isinstance(m, bytes) else m for m in members)
        self._local = {sid: until for sid, until in self._local.items() if until > now}

    async def keep_synced(self, interval: float) -> None:
        """Until cancelled. While Valkey is away the last known set stands (logged)."""
        while True:
            try:
                await self.sync()
            except Exception as exc:
                lost = lost_dependency(exc)
                if lost is None:
                    log.exception("reading the ended sessions failed")
                else:
                    log.warning("ended sessions: the %s is unavailable; keeping the last set", lost)
            await asyncio.sleep(interval)
