"""A person's webhook endpoints: register, change, rotate the secret, test, read the attempts."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.cursors import decode_cursor, encode_cursor
from dashtam_api.errors import Conflict, NotFound, Unprocessable
from dashtam_api.webhooks import signing
from dashtam_api.webhooks.dispatch import ABANDON
from dashtam_api.webhooks.schemas import AttemptQuery, WebhookCreate, WebhookUpdate
from dashtam_api.webhooks.targets import RefusedTarget, check_url
from dashtam_core.config import Settings
from dashtam_core.vault import Vault, webhook_secret_context
from dashtam_models import User, WebhookEndpoint, WebhookEvent


def _described(endpoint: WebhookEndpoint) -> dict:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "disabled_at": endpoint.disabled_at,
        "failing_since": endpoint.failing_since,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }


def _checked_url(settings: Settings, url: str) -> str:
    try:
        return check_url(
            url,
            allow_http=settings.local_environment,
            allow_private=settings.webhook_allow_private,
        )
    except RefusedTarget as exc:
        raise Unprocessable(str(exc), field="url") from None


def _events(events: list[str]) -> list[str]:
    return list(dict.fromkeys(events))  # each once, in the order given


def _seal(vault: Vault, endpoint_id: uuid.UUID, secret: str) -> bytes:
    return vault.seal(secret, context=webhook_secret_context(endpoint_id))


async def create(
    *, session: AsyncSession, settings: Settings, vault: Vault, user: User, body: WebhookCreate
) -> dict:
    """A new endpoint and its secret (the only time the secret is shown)."""
    url = _checked_url(settings, body.url)
    count = await session.scalar(select(func.count()).where(WebhookEndpoint.user_id == user.id))
    if count >= settings.WEBHOOK_ENDPOINTS_PER_USER:
        raise Conflict(
            f"You have {count} webhook endpoints, the most this instance allows "
            f"(WEBHOOK_ENDPOINTS_PER_USER); delete one first."
        )
    endpoint_id = uuid.uuid4()
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        user_id=user.id,
        url=url,
        events=_events(body.events),
        description=body.description,
        secret_encrypted=_seal(vault, endpoint_id, secret),
        key_id=vault.current_key_id,
    )
    session.add(endpoint)
    await session.flush()
    await session.refresh(endpoint)
    return {**_described(endpoint), "secret": secret}


async def _owned(
    session: AsyncSession, user: User, endpoint_id: uuid.UUID, *, for_update: bool = False
) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.user_id == user.id
    )
    endpoint = await session.scalar(query.with_for_update() if for_update else query)
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


async def listed(*, session: AsyncSession, user: User) -> dict:
    endpoints = await session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.user_id == user.id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return {"items": [_described(e) for e in endpoints]}


async def get(*, session: AsyncSession, user: User, endpoint_id: uuid.UUID) -> dict:
    return _described(await _owned(session, user, endpoint_id))


async def update(
    *,
    session: AsyncSession,
    settings: Settings,
    user: User,
    endpoint_id: uuid.UUID,
    body: WebhookUpdate,
) -> dict:
    endpoint = await _owned(session, user, endpoint_id, for_update=True)
    changes = body.model_dump(exclude_unset=True)
    for name in ("url", "events", "enabled"):
        if name in changes and changes[name] is None:
            raise Unprocessable(f"{name} cannot be null", field=name)
    if "url" in changes:
        endpoint.url = _checked_url(settings, changes["url"])
    if "events" in changes:
        endpoint.events = _events(changes["events"])
    if "description" in changes:
        endpoint.description = changes["description"]
    now = datetime.now(UTC)
    if changes.get("enabled") is True and not endpoint.enabled:
        endpoint.enabled = True
        endpoint.disabled_reason = endpoint.disabled_at = endpoint.failing_since = None
    elif changes.get("enabled") is False and endpoint.enabled:
        endpoint.enabled = False
        endpoint.disabled_reason = "disabled by its owner"
        endpoint.disabled_at = now
        await session.execute(ABANDON, {"ids": [endpoint.id]})
    endpoint.updated_at = now
    await session.flush()
    return _described(endpoint)


async def delete(*, session: AsyncSession, user: User, endpoint_id: uuid.UUID) -> None:
    """The endpoint, its deliveries and their attempts (nothing more is sent to it)."""
    endpoint = await _owned(session, user, endpoint_id, for_update=True)
    await session.delete(endpoint)
    await session.flush()


async def rotate_secret(
    *, session: AsyncSession, vault: Vault, user: User, endpoint_id: uuid.UUID
) -> dict:
    """A new secret signs every attempt from now on, retries of earlier events included."""
    endpoint = await _owned(session, user, endpoint_id, for_update=True)
    secret = signing.new_secret()
    endpoint.secret_encrypted = _seal(vault, endpoint.id, secret)
    endpoint.key_id = vault.current_key_id
    endpoint.updated_at = datetime.now(UTC)
    await session.flush()
    return {"secret": secret}


EMIT_TEST = text(
    "SELECT webhook_emit(:user_id, :type, "
    "jsonb_build_object('endpoint_id', CAST(:endpoint_id AS uuid)), :endpoint_id)"
)


async def send_test(*, session: AsyncSession, user: User, endpoint_id: uuid.UUID) -> dict:
    """A webhook.test event for this endpoint alone, into the outbox like any other."""
    endpoint = await _owned(session, user, endpoint_id)
    if not endpoint.enabled:
        raise Conflict("This endpoint is disabled: enable it (PATCH enabled=true) first.")
    event_id = await session.scalar(
        EMIT_TEST,
        {
            "user_id": user.id,
            "type": WebhookEvent.WEBHOOK_TEST.value,
            "endpoint_id": endpoint.id,
        },
    )
    return {"event_id": event_id}


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
    *, session: AsyncSession, user: User, endpoint_id: uuid.UUID, query: AttemptQuery
) -> dict:
    """The endpoint's attempts, newest first (`cursor` pages)."""
    endpoint = await _owned(session, user, endpoint_id)
    params: dict = {"endpoint_id": endpoint.id, "limit": query.limit}
    statement = _FIRST_ATTEMPTS
    if query.cursor is not None:
        params["at"], params["attempt_id"] = decode_cursor(query.cursor)
        statement = _NEXT_ATTEMPTS
    rows = (await session.execute(statement, params)).mappings().all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = encode_cursor(rows[-1]["attempted_at"], rows[-1]["id"]) if more else None
    # A pending delivery's next attempt is only meaningful while it is pending.
    items = [
        {
            **row,
            "next_attempt_at": row["next_attempt_at"]
            if row["delivery_status"] == "pending"
            else None,
        }
        for row in rows
    ]
    return {"items": items, "limit": query.limit, "next_cursor": next_cursor}
