"""Every statement of the background loops' own: expiring what no refresh can save, and the
due connections a round looks at."""

import uuid

from sqlalchemy import text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

# Connections that no refresh can save: mark them expired (one statement, locked rows skipped).
EXPIRE_LAPSED = text(
    """
    WITH lapsed AS (
        SELECT c.id, c.provider_id, p.user_id,
               coalesce(t.refresh_expires_at, t.expires_at) AS deadline
          FROM provider_connections c
          JOIN provider_tokens t ON t.connection_id = c.id
          JOIN providers p ON p.id = c.provider_id
         WHERE c.status = 'active'
           AND (t.refresh_expires_at <= now()
                OR (t.refresh_token_encrypted IS NULL AND t.expires_at <= now()))
           FOR UPDATE OF c SKIP LOCKED
    )
    UPDATE provider_connections c
       SET status = 'expired', refresh_not_before = NULL, updated_at = now(),
           error_message = 'the authorization expired at ' || lapsed.deadline
                           || '; reconnect to continue'
      FROM lapsed
     WHERE c.id = lapsed.id
    RETURNING c.id, lapsed.provider_id, lapsed.user_id, lapsed.deadline
    """
)


async def expire_lapsed(session: AsyncSession) -> list[Row]:
    """Mark expired the active connections whose authorization lapsed (rows others hold are
    skipped); (connection id, provider id, user id, deadline) of each."""
    return list((await session.execute(EXPIRE_LAPSED)).all())


async def due_ids(session: AsyncSession, statement, **params) -> list[uuid.UUID]:
    """The ids a round's statement of due connections answers (sync's DUE_FOR_SYNC)."""
    return list((await session.scalars(statement, params)).all())
