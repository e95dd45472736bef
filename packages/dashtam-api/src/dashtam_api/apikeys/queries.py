"""Every statement of API keys: the person's keys, and the check a key's every use makes."""

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_core.database import Reader
from dashtam_models import ApiKey


async def api_keys(session: AsyncSession, *, user_id: uuid.UUID) -> list[ApiKey]:
    """The person's keys, the newest first."""
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at.desc())
    )
    return list(rows)


async def api_key(session: AsyncSession, *, key_id: uuid.UUID) -> ApiKey | None:
    """The key with this id, whoever's it is."""
    return await session.get(ApiKey, key_id)


async def reloaded(session: AsyncSession, *, rows: tuple) -> None:
    """Read ``rows`` again after a flush (the defaults and stamps the database gave them)."""
    for row in rows:
        await session.refresh(row)


_CHECK = """
WITH k AS (
  SELECT id, user_id, scopes, last_used_at,
         revoked_at IS NULL AND expires_at > now() AS usable
    FROM api_keys WHERE key_hash = $1
), used AS (
  UPDATE api_keys SET last_used_at = now() FROM k
   WHERE api_keys.id = k.id AND k.usable
     AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')
)
SELECT user_id, scopes, usable FROM k
"""


async def check_key(reader: Reader, *, key_hash: str) -> list:
    """The key's person, scopes and whether it is usable (no row: no such key); a usable key's
    last use recorded, at most once a minute."""
    return await reader.fetch(_CHECK, key_hash)
