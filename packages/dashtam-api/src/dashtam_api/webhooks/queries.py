"""Every statement of webhooks: the person's endpoints and their attempts, the outbox's claims
(``FOR UPDATE SKIP LOCKED``) and the batched writes of outcomes, retention, and the
reauthorization notices written into the outbox."""

import uuid
from datetime import datetime

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Boolean, DateTime, Integer, Text, Uuid

from dashtam_models import WebhookEndpoint

# --- the person's endpoints ---------------------------------------------------------------------


async def endpoint_count(session: AsyncSession, *, user_id: uuid.UUID) -> int:
    """How many endpoints the person has."""
    return await session.scalar(select(func.count()).where(WebhookEndpoint.user_id == user_id))


async def owned_endpoint(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    for_update: bool = False,
) -> WebhookEndpoint | None:
    """The person's endpoint with this id (locked for update when asked)."""
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.user_id == user_id
    )
    return await session.scalar(query.with_for_update() if for_update else query)


async def endpoints(session: AsyncSession, *, user_id: uuid.UUID) -> list[WebhookEndpoint]:
    """The person's endpoints, the oldest first."""
    rows = await session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.user_id == user_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list(rows)


async def reloaded(session: AsyncSession, *, rows: tuple) -> None:
    """Read ``rows`` again after a flush (the defaults and stamps the database gave them)."""
    for row in rows:
        await session.refresh(row)


EMIT_TEST = text(
    "SELECT webhook_emit(:user_id, :type, "
    "jsonb_build_object('endpoint_id', CAST(:endpoint_id AS uuid)), :endpoint_id)"
)


async def emit_test(
    session: AsyncSession, *, user_id: uuid.UUID, event_type: str, endpoint_id: uuid.UUID
) -> uuid.UUID:
    """Write a test event for this endpoint alone into the outbox; its id."""
    return await session.scalar(
        EMIT_TEST, {"user_id": user_id, "type": event_type, "endpoint_id": endpoint_id}
    )


def _attempts_sql(after: bool) -> str:
    keyset = "AND (a.attempted_at, a.id) < (:at, :attempt_id)" if after else ""
    return f"""
SELECT a.id, a.delivery_id, d.event_id, d.event_type, a.attempt, a.attempted_at, a.status_code,
       a.duration_ms, a.error, d.status AS delivery_status, d.next_attempt_at
  FROM webhook_attempts a
  JOIN webhook_deliveries d ON d.id = a.delivery_id
 WHERE a.endpoint_id = :endpoint_id {keyset}
 ORDER BY a.attempted_at DESC, a.id DESC
 LIMIT :limit + 1
"""  # noqa: S608 (fixed fragments)


_FIRST_ATTEMPTS, _NEXT_ATTEMPTS = text(_attempts_sql(False)), text(_attempts_sql(True))


async def attempts(
    session: AsyncSession,
    *,
    endpoint_id: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list:
    """Up to ``limit`` + 1 of the endpoint's attempts (with their delivery's state), newest
    first, older than ``before`` ((attempted_at, id)) when given; mappings."""
    params: dict = {"endpoint_id": endpoint_id, "limit": limit}
    statement = _FIRST_ATTEMPTS
    if before is not None:
        params["at"], params["attempt_id"] = before
        statement = _NEXT_ATTEMPTS
    return list((await session.execute(statement, params)).mappings().all())


# --- the outbox ---------------------------------------------------------------------------------


CLAIM = text(
    """
    WITH due AS (
        SELECT d.id FROM webhook_deliveries d
         WHERE d.status = 'pending' AND d.next_attempt_at <= now()
         ORDER BY d.next_attempt_at
         LIMIT :limit
           FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_deliveries d
       SET attempts = d.attempts + 1,
           next_attempt_at = now() + make_interval(secs => :lease)
      FROM due, webhook_endpoints e
     WHERE d.id = due.id AND e.id = d.endpoint_id
    RETURNING d.id, d.endpoint_id, d.event_id, d.event_type, d.payload::text AS body,
              d.attempts, d.created_at, e.url, e.secret_encrypted
    """
)

LOG_ATTEMPTS = text(
    """
    INSERT INTO webhook_attempts
           (delivery_id, endpoint_id, attempt, attempted_at, status_code, duration_ms, error)
    SELECT * FROM unnest(:delivery_ids, :endpoint_ids, :attempts, :attempted_at, :status_codes,
                         :durations, :errors)
    """
).bindparams(
    bindparam("delivery_ids", type_=ARRAY(Uuid)),
    bindparam("endpoint_ids", type_=ARRAY(Uuid)),
    bindparam("attempts", type_=ARRAY(Integer)),
    bindparam("attempted_at", type_=ARRAY(DateTime(timezone=True))),
    bindparam("status_codes", type_=ARRAY(Integer)),
    bindparam("durations", type_=ARRAY(Integer)),
    bindparam("errors", type_=ARRAY(Text)),
)

# Only the attempt that holds the delivery writes its outcome (a lease that lapsed under a
# stalled process has been taken over, and the newer attempt decides).
SETTLE = text(
    """
    UPDATE webhook_deliveries d
       SET status = r.status, next_attempt_at = r.next_attempt_at, last_error = r.error,
           finished_at = CASE WHEN r.status = 'pending' THEN NULL ELSE now() END
      FROM unnest(:ids, :attempts, :statuses, :next_attempt_at, :errors)
           AS r(id, attempt, status, next_attempt_at, error)
     WHERE d.id = r.id AND d.attempts = r.attempt AND d.status = 'pending'
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid)),
    bindparam("attempts", type_=ARRAY(Integer)),
    bindparam("statuses", type_=ARRAY(Text)),
    bindparam("next_attempt_at", type_=ARRAY(DateTime(timezone=True))),
    bindparam("errors", type_=ARRAY(Text)),
)

# A success clears an endpoint's failing streak; a failure starts one if none runs.
STREAKS = text(
    """
    UPDATE webhook_endpoints e
       SET failing_since = CASE WHEN r.succeeded THEN NULL
                                ELSE coalesce(e.failing_since, r.failed_at) END
      FROM unnest(:ids, :succeeded, :failed_at) AS r(id, succeeded, failed_at)
     WHERE e.id = r.id
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid)),
    bindparam("succeeded", type_=ARRAY(Boolean)),
    bindparam("failed_at", type_=ARRAY(DateTime(timezone=True))),
)

DISABLE = text(
    """
    UPDATE webhook_endpoints
       SET enabled = false, disabled_at = now(), updated_at = now(), disabled_reason = :reason
     WHERE id = ANY(:ids) AND enabled
    RETURNING id
    """
).bindparams(bindparam("ids", type_=ARRAY(Uuid)))

DISABLE_FAILING = text(
    """
    UPDATE webhook_endpoints
       SET enabled = false, disabled_at = now(), updated_at = now(),
           disabled_reason = 'every delivery failed for ' || :hours || ' hours (since '
                             || to_char(failing_since AT TIME ZONE 'UTC',
                                        'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ')'
     WHERE id = ANY(:ids) AND enabled
       AND failing_since <= now() - make_interval(secs => :seconds)
    RETURNING id
    """
).bindparams(bindparam("ids", type_=ARRAY(Uuid)), bindparam("hours", type_=Text))

# An endpoint that stops (disabled, by its owner or by failures) leaves nothing pending.
ABANDON = text(
    """
    UPDATE webhook_deliveries
       SET status = 'failed', finished_at = now(), next_attempt_at = NULL,
           last_error = coalesce(last_error || '; ', '') || 'the endpoint was disabled'
     WHERE endpoint_id = ANY(:ids) AND status = 'pending'
    """
).bindparams(bindparam("ids", type_=ARRAY(Uuid)))

PRUNE = text(
    """
    DELETE FROM webhook_deliveries WHERE id IN (
        SELECT id FROM webhook_deliveries
         WHERE created_at < :before AND status <> 'pending' LIMIT :batch)
    """
)


async def claim_due(session: AsyncSession, *, limit: int, lease: float) -> list[Row]:
    """Up to ``limit`` due deliveries nobody holds, each leased for ``lease`` seconds and its
    attempt counted, with what sending it needs."""
    return list((await session.execute(CLAIM, {"limit": limit, "lease": lease})).all())


async def log_attempts(session: AsyncSession, **columns: list) -> None:
    """One webhook_attempts row per element of the columns (LOG_ATTEMPTS' parameters)."""
    await session.execute(LOG_ATTEMPTS, columns)


async def settle(session: AsyncSession, **columns: list) -> None:
    """Each delivery's outcome, written only by the attempt that holds it (SETTLE's parameters)."""
    await session.execute(SETTLE, columns)


async def record_streaks(session: AsyncSession, **columns: list) -> None:
    """Each endpoint's failing streak cleared or started (STREAKS' parameters)."""
    await session.execute(STREAKS, columns)


async def disable(session: AsyncSession, *, ids: list[uuid.UUID], reason: str) -> list[uuid.UUID]:
    """Disable those of these endpoints that are enabled, for ``reason``; their ids."""
    return list((await session.scalars(DISABLE, {"ids": ids, "reason": reason})).all())


async def disable_failing(
    session: AsyncSession, *, ids: list[uuid.UUID], hours: str, seconds: float
) -> list[uuid.UUID]:
    """Disable those of these endpoints failing for ``seconds`` or longer; their ids."""
    return list(
        (
            await session.scalars(DISABLE_FAILING, {"ids": ids, "hours": hours, "seconds": seconds})
        ).all()
    )


async def abandon(session: AsyncSession, *, endpoint_ids: list[uuid.UUID]) -> None:
    """Fail every pending delivery to these endpoints (they were disabled)."""
    await session.execute(ABANDON, {"ids": endpoint_ids})


async def prune(session: AsyncSession, *, before: datetime, batch: int) -> int:
    """Delete up to ``batch`` finished deliveries created before ``before``; how many."""
    return (await session.execute(PRUNE, {"before": before, "batch": batch})).rowcount


NOTIFY_REAUTH = text(
    """
    WITH due AS (
        SELECT c.id, c.provider_id, p.user_id, t.refresh_expires_at AS deadline
          FROM provider_connections c
          JOIN provider_tokens t ON t.connection_id = c.id
          JOIN providers p ON p.id = c.provider_id
         WHERE c.status = 'active'
           AND t.refresh_expires_at > now()
           AND t.refresh_expires_at <= now() + make_interval(hours => :hours)
           AND c.reauth_notice_for IS DISTINCT FROM t.refresh_expires_at
           FOR UPDATE OF c SKIP LOCKED
    ), marked AS (
        UPDATE provider_connections c
           SET reauth_notice_for = due.deadline
          FROM due
         WHERE c.id = due.id
        RETURNING due.*
    )
    SELECT webhook_emit(m.user_id, 'connection.reauth_required', jsonb_build_object(
               'connection_id', m.id,
               'provider_id', m.provider_id,
               'status', 'active',
               'reconnect_by', m.deadline))
      FROM marked m
    """
)


async def notify_reauth(session: AsyncSession, *, hours: float) -> int:
    """Mark the connections whose authorization ends within ``hours`` and write their
    connection.reauth_required events into the outbox; how many."""
    return len((await session.execute(NOTIFY_REAUTH, {"hours": hours})).all())
