"""A person's webhook endpoints: register, change, rotate the secret, test, read the attempts."""

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.cursors import decode_cursor, encode_cursor
from dashtam_api.errors import Conflict, NotFound, Unprocessable
from dashtam_api.webhooks import queries, signing
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
    count = await queries.endpoint_count(session, user_id=user.id)
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
    await queries.reloaded(session, rows=(endpoint,))
    return {**_described(endpoint), "secret": secret}


async def _owned(
    session: AsyncSession, user: User, endpoint_id: uuid.UUID, *, for_update: bool = False
) -> WebhookEndpoint:
    endpoint = await queries.owned_endpoint(
        session, user_id=user.id, endpoint_id=endpoint_id, for_update=for_update
    )
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


async def listed(*, session: AsyncSession, user: User) -> dict:
    return {"items": [_described(e) for e in await queries.endpoints(session, user_id=user.id)]}


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
        await queries.abandon(session, endpoint_ids=[endpoint.id])
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


async def send_test(*, session: AsyncSession, user: User, endpoint_id: uuid.UUID) -> dict:
    """A webhook.test event for this endpoint alone, into the outbox like any other."""
    endpoint = await _owned(session, user, endpoint_id)
    if not endpoint.enabled:
        raise Conflict("This endpoint is disabled: enable it (PATCH enabled=true) first.")
    event_id = await queries.emit_test(
        session,
        user_id=user.id,
        event_type=WebhookEvent.WEBHOOK_TEST.value,
        endpoint_id=endpoint.id,
    )
    return {"event_id": event_id}


async def attempts(
    *, session: AsyncSession, user: User, endpoint_id: uuid.UUID, query: AttemptQuery
) -> dict:
    """The endpoint's attempts, newest first (`cursor` pages)."""
    endpoint = await _owned(session, user, endpoint_id)
    rows = await queries.attempts(
        session,
        endpoint_id=endpoint.id,
        limit=query.limit,
        before=None if query.cursor is None else decode_cursor(query.cursor),
    )
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
