"""The sandbox institution's state in Valkey: codes, tokens (as hashes), injected failures."""

import asyncio
import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import date, timedelta

from redis.asyncio import Redis

from dashtam_api.sandbox import activity

PREFIX = "sandbox:"
ACCESS_TOKEN_SECONDS = 1800
REFRESH_TOKEN_SECONDS = 7 * 24 * 3600
CODE_SECONDS = 120


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def new_code(redis: Redis, grant: dict) -> str:
    code = secrets.token_urlsafe(24)
    await redis.set(f"{PREFIX}code:{code}", json.dumps(grant), ex=CODE_SECONDS)
    return code


async def take_code(redis: Redis, code: str) -> dict | None:
    raw = await redis.getdel(f"{PREFIX}code:{code}")
    return json.loads(raw) if raw else None


async def issue_tokens(
    redis: Redis, *, client_id: str, scope: str, subject: str, access_seconds: int | None = None
) -> dict:
    """A fresh access and refresh token for one account holder (``subject``)."""
    access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    access_seconds = access_seconds or ACCESS_TOKEN_SECONDS
    grant = json.dumps({"client_id": client_id, "scope": scope, "subject": subject})
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(f"{PREFIX}access:{_digest(access)}", grant, ex=access_seconds)
        pipe.set(f"{PREFIX}refresh:{_digest(refresh)}", grant, ex=REFRESH_TOKEN_SECONDS)
        await pipe.execute()
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": access_seconds,
        "refresh_token": refresh,
        "refresh_token_expires_in": REFRESH_TOKEN_SECONDS,
        "scope": scope,
    }


async def take_refresh(redis: Redis, token: str) -> dict | None:
    """Refresh tokens rotate: each one works once. Every use is counted per subject, and a
    reused one is remembered and counted as such (a real institution would now distrust it)."""
    digest = _digest(token)
    raw = await redis.getdel(f"{PREFIX}refresh:{digest}")
    if raw:
        grant = json.loads(raw)
        subject = grant.get("subject", "")
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(f"{PREFIX}used:{digest}", subject, ex=REFRESH_TOKEN_SECONDS)
            pipe.hincrby(f"{PREFIX}subject:{subject}", "refreshes", 1)
            await pipe.execute()
        return grant
    subject = await redis.get(f"{PREFIX}used:{digest}")
    if subject is not None:
        await redis.hincrby(f"{PREFIX}subject:{subject}", "reused", 1)
    return None


async def count_sync(redis: Redis, subject: str) -> int:
    """The account holder's data changes on every listing of the accounts: this is step n.

    Step n's calendar day is recorded the first time it is reached (sandbox/activity.py): the
    day after step n-1's, never past today; step 1's is BEHIND_DAYS before today."""
    key = f"{PREFIX}subject:{subject}"
    step = int(await redis.hincrby(key, "syncs", 1))
    today = date.today()
    previous = await redis.hget(key, f"day:{step - 1}")
    day = (
        min(date.fromordinal(int(previous)) + timedelta(days=1), today)
        if previous
        else today - timedelta(days=activity.BEHIND_DAYS)
    )
    await redis.hsetnx(key, f"day:{step}", day.toordinal())
    return step


async def step_days(redis: Redis, subject: str) -> Callable[[int], date]:
    """Step k's calendar day for this account holder (days before step 1 count back from it)."""
    raw = await redis.hgetall(f"{PREFIX}subject:{subject}")
    days = {int(k[4:]): int(v) for k, v in raw.items() if k.startswith("day:")}
    first = days.get(1, (date.today() - timedelta(days=activity.BEHIND_DAYS)).toordinal())

    def day_of(k: int) -> date:
        return date.fromordinal(days.get(k, first + k - 1) if k >= 1 else first + k - 1)

    return day_of


async def current_sync(redis: Redis, subject: str) -> int:
    return int(await redis.hget(f"{PREFIX}subject:{subject}", "syncs") or 1)


async def subject_stats(redis: Redis, subject: str) -> dict[str, int]:
    """How often the institution saw this account holder: refreshes, reused tokens, syncs."""
    raw = await redis.hgetall(f"{PREFIX}subject:{subject}")
    return {key: int(raw.get(key, 0)) for key in ("refreshes", "reused", "syncs")}


async def access_grant(redis: Redis, token: str) -> dict | None:
    raw = await redis.get(f"{PREFIX}access:{_digest(token)}")
    return json.loads(raw) if raw else None


async def revoke(redis: Redis, token: str) -> None:
    digest = _digest(token)
    await redis.delete(f"{PREFIX}access:{digest}", f"{PREFIX}refresh:{digest}")


async def _set_countdown(redis: Redis, key: str, value: dict) -> None:
    """The next ``times`` calls get it; ``times`` 0 takes back what is left of an earlier one."""
    if value["times"] == 0:
        await redis.delete(key)
    else:
        await redis.set(key, json.dumps(value), ex=600)


async def set_failure(redis: Redis, endpoint: str, failure: dict) -> None:
    await _set_countdown(redis, f"{PREFIX}fail:{endpoint}", failure)


async def take_failure(redis: Redis, endpoint: str, *, key: str | None = None) -> dict | None:
    """An injected failure for endpoint, counted down on each use."""
    key = key or f"{PREFIX}fail:{endpoint}"
    raw = await redis.get(key)
    if not raw:
        return None
    failure = json.loads(raw)
    remaining = int(failure.get("times", 1)) - 1
    if remaining > 0:
        await redis.set(key, json.dumps({**failure, "times": remaining}), keepttl=True)
    else:
        await redis.delete(key)
    return failure


async def set_delay(redis: Redis, endpoint: str, delay: dict) -> None:
    await _set_countdown(redis, f"{PREFIX}delay:{endpoint}", delay)


async def take_delay(redis: Redis, endpoint: str) -> None:
    """Sleep through an injected delay for endpoint, counted down like a failure."""
    delay = await take_failure(redis, f"delay:{endpoint}", key=f"{PREFIX}delay:{endpoint}")
    if delay:
        await asyncio.sleep(float(delay["seconds"]))
