"""The sandbox institution's state in Valkey: codes, tokens (as hashes), injected failures."""

import hashlib
import json
import secrets

from redis.asyncio import Redis

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


async def issue_tokens(redis: Redis, *, client_id: str, scope: str) -> dict:
    access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    grant = json.dumps({"client_id": client_id, "scope": scope})
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(f"{PREFIX}access:{_digest(access)}", grant, ex=ACCESS_TOKEN_SECONDS)
        pipe.set(f"{PREFIX}refresh:{_digest(refresh)}", grant, ex=REFRESH_TOKEN_SECONDS)
        await pipe.execute()
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
        "refresh_token": refresh,
        "refresh_token_expires_in": REFRESH_TOKEN_SECONDS,
        "scope": scope,
    }


async def take_refresh(redis: Redis, token: str) -> dict | None:
    """Refresh tokens rotate: each one works once."""
    raw = await redis.getdel(f"{PREFIX}refresh:{_digest(token)}")
    return json.loads(raw) if raw else None


async def access_grant(redis: Redis, token: str) -> dict | None:
    raw = await redis.get(f"{PREFIX}access:{_digest(token)}")
    return json.loads(raw) if raw else None


async def revoke(redis: Redis, token: str) -> None:
    digest = _digest(token)
    await redis.delete(f"{PREFIX}access:{digest}", f"{PREFIX}refresh:{digest}")


async def set_failure(redis: Redis, endpoint: str, failure: dict) -> None:
    await redis.set(f"{PREFIX}fail:{endpoint}", json.dumps(failure), ex=600)


async def take_failure(redis: Redis, endpoint: str) -> dict | None:
    """An injected failure for endpoint, counted down on each use."""
    key = f"{PREFIX}fail:{endpoint}"
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
