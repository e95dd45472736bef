"""Personal API keys: ``dtk_`` and 43 characters (256 random bits), shown once; a Bearer
credential on exactly the operations its scopes open (scopes.py), refused everywhere else with
a 403 that names what is missing; an unknown, expired or revoked key is a 401.

Checking one is a single statement on the reader, which also records the key's last use (at
most once a minute: an idempotent write, safe to repeat)."""

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.apikeys import queries
from dashtam_api.audit import service as audit
from dashtam_api.auth import credentials
from dashtam_api.errors import Unauthorized
from dashtam_core.database import Reader
from dashtam_models import ApiKey, User

PREFIX = "dtk_"


def is_api_key(token: str) -> bool:
    return token.startswith(PREFIX)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _out(key: ApiKey) -> dict:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": key.scopes,
        "expires_at": key.expires_at,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    }


async def create(
    *,
    session: AsyncSession,
    user: User,
    name: str,
    scopes: list[str],
    expires_in_days: int,
    where: dict,
) -> dict:
    key = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        user_id=user.id,
        name=name,
        prefix=key[: len(PREFIX) + 6],
        key_hash=_hash(key),
        scopes=sorted(set(scopes)),
        expires_at=datetime.now(UTC) + timedelta(days=expires_in_days),
    )
    session.add(row)
    await session.flush()
    await queries.reloaded(session, rows=(row,))
    await audit.security(
        session=session,
        action="api_key_created",
        user_id=user.id,
        details={"api_key_id": str(row.id), "name": name, "scopes": row.scopes},
        **where,
    )
    return {**_out(row), "key": key}


async def listed(*, session: AsyncSession, user: User) -> dict:
    return {"items": [_out(k) for k in await queries.api_keys(session, user_id=user.id)]}


async def revoke(*, session: AsyncSession, user: User, key_id: uuid.UUID, where: dict) -> None:
    await credentials.revoke(
        session=session,
        user=user,
        credential=await queries.api_key(session, key_id=key_id),
        missing="No such API key.",
        action="api_key_revoked",
        id_key="api_key_id",
        where=where,
    )


@dataclass(frozen=True)
class Verified:
    user_id: uuid.UUID
    scopes: frozenset[str]


async def verify(reader: Reader, key: str) -> Verified:
    rows = await queries.check_key(reader, key_hash=_hash(key))
    if not rows or not rows[0]["usable"]:
        raise Unauthorized("This API key is unknown, expired or revoked.")
    return Verified(rows[0]["user_id"], frozenset(rows[0]["scopes"]))
