"""Refreshing a connection's tokens, exactly once, however many processes try at the same time.

Every refresh runs in one transaction that first locks the connection's row (``SELECT ... FOR
UPDATE``; the background refresher adds ``SKIP LOCKED`` and moves on). Whoever holds the lock
re-reads the row and decides again: an access token another process has just refreshed is no
longer due, so the institution sees one refresh per due period, and a rotating refresh token is
never presented twice. A crashed holder's lock goes with its database session; a hung one is
cut off by ``idle_in_transaction_session_timeout``, set for the refresh's transaction only.

Our own database going away between the institution's answer and the commit would lose a
rotated refresh token (the next refresh would present a spent one: ``invalid_grant``); the
answer is therefore kept, sealed, in Valkey until the database has it, and the next refresh of
the connection, in any process, stores it instead of asking again (_keep_until_saved).

Rotation: a new refresh token replaces the old one; the same one returned, or none, keeps it (and
its expiry). Every outcome is audited in the refresh's transaction, which is always committed,
failure or not: ``refreshed`` (with the rotation case), ``refresh_failed`` (with the
institution's error), ``expired``.
"""

import base64
import enum
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from authlib.integrations.base_client.errors import OAuthError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api import metrics, upstream
from dashtam_api.audit import service as audit
from dashtam_api.connections import queries
from dashtam_api.context import AppContext
from dashtam_core.vault import VaultError, token_context
from dashtam_models import ConnectionStatus, Provider, ProviderConnection, ProviderToken

log = logging.getLogger(__name__)

NOT_SEEN = object()
LOCK_NOT_AVAILABLE = "55P03"
# Institutions' answers kept until the database has them (_keep_until_saved).
UNSAVED_PREFIX = "refresh:unsaved:"
UNSAVED_TTL_SECONDS = 7 * 86400

# OAuth errors that say "later", not "never" (RFC 6749 5.2 and common practice).
TRANSIENT_OAUTH_ERRORS = {"temporarily_unavailable", "server_error", "slow_down"}


class Trigger(enum.StrEnum):
    BACKGROUND = "background"  # the refresher loop
    ON_DEMAND = "on_demand"  # POST .../authorization/refresh
    ON_USE = "on_use"  # code that needs a valid access token (a sync)


class Rotation(enum.StrEnum):
    ROTATED = "rotated"  # a new refresh token replaced the old one
    SAME = "same"  # the institution returned the one it was given
    KEPT = "kept"  # none returned: the old one stays


class Kind(enum.StrEnum):
    REFRESHED = "refreshed"
    FAILED = "failed"
    NOT_DUE = "not_due"  # still valid past the deadline (another process refreshed it)
    COALESCED = "coalesced"  # refreshed by someone else since the caller asked
    BACKING_OFF = "backing_off"  # a recent failure: not before retry_at
    BUSY = "busy"  # locked by another refresh (background only: it skips)
    INACTIVE = "inactive"  # not an active connection (pending, revoked, error, expired)
    EXPIRED = "expired"  # its refresh token lapsed just now
    UNSUPPORTED = "unsupported"  # the institution gave no refresh token


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    status: str
    rotation: Rotation | None = None
    error: str | None = None
    error_description: str | None = None
    transient: bool = False
    retry_at: datetime | None = None
    failures: int = 0


@dataclass(frozen=True)
class Failure:
    error: str
    description: str
    transient: bool


def backoff(settings, failures: int) -> timedelta:
    """How long to wait after the n-th consecutive failure: doubling, capped."""
    seconds = settings.REFRESH_BACKOFF_SECONDS * 2 ** max(failures - 1, 0)
    return timedelta(seconds=min(seconds, settings.REFRESH_BACKOFF_MAX_SECONDS))


def lapsed(token: ProviderToken, now: datetime) -> bool:
    """No refresh can help any more: the refresh token expired, or there is none and the access
    token expired."""
    if token.refresh_expires_at is not None and token.refresh_expires_at <= now:
        return True
    return (
        token.refresh_token_encrypted is None
        and token.expires_at is not None
        and token.expires_at <= now
    )


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)


# The least time a live holder may be silent between two statements: the gaps besides the token
# call are Python's, but a busy machine can stall a process for a second or more (seen: a
# 1.2 s hold, from a 0.4 s HTTP timeout, cut off a refresh that had made no call at all).
HOLD_FLOOR_SECONDS = 5


def _timeouts(settings) -> dict[str, str]:
    # Bounded waits: an on-demand refresh queues behind a running one for at most this long,
    # and a holder that stops talking to the database loses its lock (and its transaction).
    wait = settings.OAUTH_HTTP_TIMEOUT_SECONDS * 3
    hold = max(wait, HOLD_FLOOR_SECONDS)
    return {"wait": f"{int(wait * 1000)}ms", "hold": f"{int(hold * 1000)}ms"}


async def _read(
    session: AsyncSession, connection_id: uuid.UUID
) -> tuple[ProviderConnection, Provider, ProviderToken | None] | None:
    """The locked connection with its provider and token, read in a statement of its own.

    Lock first, read second: under READ COMMITTED a locking SELECT re-checks only the locked
    row's newest version, so a token row joined into the locking statement could still be the
    one from before the refresh that held the lock, and a rotated-out refresh token would be
    presented again. A new statement takes a new snapshot, which sees that refresh's commit.
    """
    return await queries.connection_provider_token(session, connection_id=connection_id)


async def _lock(
    ctx: AppContext, session: AsyncSession, connection_id: uuid.UUID
) -> tuple[ProviderConnection, Provider, ProviderToken | None] | None:
    await queries.set_lock_timeouts(session, **_timeouts(ctx.settings))
    locked = await queries.lock_connection_row(session, connection_id=connection_id)
    return None if locked is None else await _read(session, connection_id)


async def refresh_next_due(
    ctx: AppContext, session: AsyncSession, *, due_before: datetime, round_started: datetime
) -> Outcome | None:
    """Claim the most urgent due connection nobody holds and refresh it (the refresher's unit
    of work, in ``session``'s transaction); None when none is left.

    One statement finds and locks it (``SKIP LOCKED``: rows other refreshes hold are passed
    over, so processes never queue on each other). A connection refreshed since this round
    started is excluded on the locked row itself, which the lock re-checks at its newest
    version; the token is then read anew (``_read``) and everything decided again.
    """
    claimed = await queries.claim_due_for_refresh(
        session,
        due_before=due_before,
        round_started=round_started,
        hold=_timeouts(ctx.settings)["hold"],
    )
    if claimed is None:
        return None
    locked = await _read(session, claimed)
    if locked is None:
        return _counted(Trigger.BACKGROUND, Outcome(Kind.INACTIVE, status="unknown"))
    outcome = await _refresh_locked(
        ctx, session, locked, trigger=Trigger.BACKGROUND, due_before=due_before
    )
    return _counted(Trigger.BACKGROUND, outcome)


async def refresh(
    ctx: AppContext,
    session: AsyncSession,
    connection_id: uuid.UUID,
    *,
    trigger: Trigger,
    due_before: datetime | None = None,
    seen_refreshed_at: datetime | object | None = NOT_SEEN,
) -> Outcome:
    """Refresh one connection in ``session``'s transaction (the caller commits, whatever the
    outcome).

    ``due_before``: refresh only if the access token expires before it and no back-off holds
    (the refresher, code about to use the token). ``seen_refreshed_at``: the connection's
    last_refreshed_at as the caller saw it before waiting for the lock; if it changed meanwhile,
    that refresh counts as this one (an on-demand refresh racing the refresher).
    """
    try:
        locked = await _lock(ctx, session, connection_id)
    except DBAPIError as exc:
        if _sqlstate(exc) == LOCK_NOT_AVAILABLE:
            await session.rollback()  # the statement failed; nothing was written
            return _counted(trigger, Outcome(Kind.BUSY, status="unknown"))
        raise
    if locked is None:
        return _counted(trigger, Outcome(Kind.INACTIVE, status="unknown"))
    outcome = await _refresh_locked(
        ctx,
        session,
        locked,
        trigger=trigger,
        due_before=due_before,
        seen_refreshed_at=seen_refreshed_at,
    )
    return _counted(trigger, outcome)


def _counted(trigger: Trigger, outcome: Outcome) -> Outcome:
    metrics.REFRESHES.labels(trigger.value, outcome.kind.value).inc()
    return outcome


async def _refresh_locked(
    ctx: AppContext,
    session: AsyncSession,
    locked: tuple[ProviderConnection, Provider, ProviderToken | None],
    *,
    trigger: Trigger,
    due_before: datetime | None,
    seen_refreshed_at: datetime | object | None = NOT_SEEN,
) -> Outcome:
    """Decide again under the lock, then refresh (or not)."""
    connection, provider, token = locked
    now = datetime.now(UTC)
    if connection.status != ConnectionStatus.ACTIVE or token is None:
        return Outcome(Kind.INACTIVE, status=connection.status)
    if lapsed(token, now):
        await expire(session, connection, provider, token)
        return Outcome(Kind.EXPIRED, status=ConnectionStatus.EXPIRED.value)
    settled = _settled(
        connection, token, now, due_before=due_before, seen_refreshed_at=seen_refreshed_at
    )
    if settled is not None:
        return settled
    if token.refresh_token_encrypted is None:
        return Outcome(Kind.UNSUPPORTED, status=connection.status)
    return await _exchange(ctx, session, connection, provider, token, trigger=trigger, now=now)


def _settled(
    connection: ProviderConnection,
    token: ProviderToken,
    now: datetime,
    *,
    due_before: datetime | None,
    seen_refreshed_at: datetime | object | None,
) -> Outcome | None:
    """Why no refresh is needed after all (decided under the lock), or None."""
    if seen_refreshed_at is not NOT_SEEN and connection.last_refreshed_at != seen_refreshed_at:
        return Outcome(Kind.COALESCED, status=connection.status)
    if due_before is None:
        return None
    if token.expires_at is not None and token.expires_at > due_before:
        return Outcome(Kind.NOT_DUE, status=connection.status)
    if connection.refresh_not_before is not None and connection.refresh_not_before > now:
        return Outcome(
            Kind.BACKING_OFF,
            status=connection.status,
            retry_at=connection.refresh_not_before,
            failures=connection.refresh_failures,
        )
    return None


async def _exchange(
    ctx: AppContext,
    session: AsyncSession,
    connection: ProviderConnection,
    provider: Provider,
    token: ProviderToken,
    *,
    trigger: Trigger,
    now: datetime,
) -> Outcome:
    """Present the refresh token to the institution (still holding the lock) and keep the answer."""
    spec = ctx.registry.get(provider.provider_key)
    failure: Failure | None = None
    response: dict = {}
    try:
        old_refresh = ctx.vault.open(
            token.refresh_token_encrypted, context=token_context(connection.id, "refresh")
        )
    except VaultError:
        old_refresh = None
        failure = Failure("token_unreadable", "the stored refresh token cannot be decrypted", False)
    if failure is None and (spec is None or not spec.configured):
        failure = Failure("not_configured", f"{provider.provider_key} is not configured", False)
    recovered = False
    if failure is None:
        response, received_at = await _unsaved_answer(ctx, connection.id, old_refresh)
        recovered = response is not None
        if recovered:
            now = received_at
        else:
            response, failure = await _call_institution(ctx, spec, old_refresh)
        if failure is None and not recovered:
            await _keep_until_saved(ctx, connection.id, old_refresh, response, now)
    where = {
        "user_id": provider.user_id,
        "provider_id": provider.id,
        "connection_id": connection.id,
    }
    if failure is not None:
        return await _failed(ctx, session, connection, failure, trigger=trigger, now=now, **where)
    rotation = _store(ctx, spec, connection, token, response, old_refresh=old_refresh, now=now)
    await audit.record(
        session=session,
        action="refreshed",
        details={
            "trigger": trigger.value,
            "rotation": rotation.value,
            "expires_in": response.get("expires_in"),
            "key_id": ctx.vault.current_key_id,
            **({"recovered": "the answer to a refresh whose commit was lost"} if recovered else {}),
        },
        **where,
    )
    await session.flush()
    return Outcome(Kind.REFRESHED, status=connection.status, rotation=rotation)


def _unsaved_key(connection_id: uuid.UUID) -> str:
    return f"{UNSAVED_PREFIX}{connection_id}"


def _digest(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()


async def _keep_until_saved(
    ctx: AppContext, connection_id: uuid.UUID, old_refresh: str, response: dict, now: datetime
) -> None:
    """Keep the institution's answer, sealed, in Valkey until the database has it.

    The institution may have spent the refresh token we presented the moment it answered: if
    our database goes away before the refresh commits, that answer would be lost and the next
    refresh would present a spent token (``invalid_grant``: the person must reconnect). The
    next refresh of this connection, in any process, takes the answer from here instead. Once
    the commit has landed, the entry names a refresh token the database no longer holds and is
    passed over; it expires after UNSAVED_TTL_SECONDS. Best effort: without Valkey, no entry.
    """
    entry = {
        "presented": _digest(old_refresh),
        "received_at": now.isoformat(),
        "answer": base64.b64encode(
            ctx.vault.seal(json.dumps(response), context=token_context(connection_id, "unsaved"))
        ).decode(),
    }
    try:
        await ctx.redis.set(_unsaved_key(connection_id), json.dumps(entry), ex=UNSAVED_TTL_SECONDS)
    except RedisError as exc:
        log.warning("the refresh of %s is not kept in Valkey: %s", connection_id, exc)


async def _unsaved_answer(
    ctx: AppContext, connection_id: uuid.UUID, refresh_token: str
) -> tuple[dict | None, datetime | None]:
    """The institution's answer to ``refresh_token`` if an earlier refresh got it and never
    committed it (see _keep_until_saved), with when it came; else (None, None)."""
    try:
        raw = await ctx.redis.get(_unsaved_key(connection_id))
    except RedisError as exc:
        log.warning("cannot look for an unsaved refresh of %s: %s", connection_id, exc)
        return None, None
    if not raw:
        return None, None
    try:
        entry = json.loads(raw)
        if entry["presented"] != _digest(refresh_token):
            return None, None  # the database has that answer (or a later one)
        sealed = base64.b64decode(entry["answer"])
        answer = json.loads(ctx.vault.open(sealed, context=token_context(connection_id, "unsaved")))
        return answer, datetime.fromisoformat(entry["received_at"])
    except (ValueError, KeyError, TypeError, VaultError):
        log.warning("an unreadable unsaved refresh of %s was passed over", connection_id)
        return None, None


async def _call_institution(
    ctx: AppContext, spec, refresh_token: str
) -> tuple[dict, Failure | None]:
    client = ctx.token_client(spec)
    try:
        # Sent once: a rotating refresh token may be spent the moment the institution reads it.
        response = await upstream.once(
            ctx.settings,
            lambda: client.fetch_token(
                spec.token_url, grant_type="refresh_token", refresh_token=refresh_token
            ),
        )
    except OAuthError as exc:
        error = (exc.error or "oauth_error")[:100]
        return {}, Failure(
            error, (exc.description or "")[:300], transient=error in TRANSIENT_OAUTH_ERRORS
        )
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        error, transient = upstream.status_failure(status)
        return {}, Failure(error, f"the token endpoint answered {status}", transient=transient)
    except httpx.TransportError as exc:  # timeouts, refused or dropped connections, TLS failures
        return {}, Failure(*upstream.transport_failure(exc), transient=True)
    except (ValueError, KeyError, TypeError) as exc:
        return {}, Failure(upstream.INVALID_RESPONSE, type(exc).__name__, transient=False)
    if not response.get("access_token"):
        return {}, Failure("no_access_token", "the token response lacked one", transient=False)
    return dict(response), None


def _store(
    ctx: AppContext,
    spec,
    connection: ProviderConnection,
    token: ProviderToken,
    response: dict,
    *,
    old_refresh: str,
    now: datetime,
) -> Rotation:
    vault = ctx.vault

    def seal(value: str, column: str) -> bytes:
        return vault.seal(value, context=token_context(connection.id, column))

    returned = response.get("refresh_token")
    if not returned:
        rotation, refresh_token = Rotation.KEPT, old_refresh
    elif returned == old_refresh:
        rotation, refresh_token = Rotation.SAME, old_refresh
    else:
        rotation, refresh_token = Rotation.ROTATED, returned
    token.access_token_encrypted = seal(response["access_token"], "access")
    # Re-sealed even when kept: every column of the row is then under the current key (key_id).
    token.refresh_token_encrypted = seal(refresh_token, "refresh")
    id_token = response.get("id_token")
    if id_token:
        token.id_token_encrypted = seal(id_token, "id")
    elif token.id_token_encrypted is not None:
        kept = vault.open(token.id_token_encrypted, context=token_context(connection.id, "id"))
        token.id_token_encrypted = seal(kept, "id")
    token.key_id = vault.current_key_id
    token.token_type = str(response.get("token_type") or token.token_type or "Bearer")[:40]
    token.scope = response.get("scope") or token.scope
    expires_in = response.get("expires_in")
    token.expires_at = now + timedelta(seconds=int(expires_in)) if expires_in else None
    # A kept refresh token keeps its deadline (Schwab's 7 days run from the authorization); a
    # new one gets the lifetime the institution states, else the provider's known one.
    refresh_in = response.get("refresh_token_expires_in")
    if refresh_in:
        token.refresh_expires_at = now + timedelta(seconds=int(refresh_in))
    elif rotation is Rotation.ROTATED:
        lifetime = spec.refresh_token_lifetime
        token.refresh_expires_at = now + lifetime if lifetime else None
    token.updated_at = now
    connection.last_refreshed_at = now
    connection.refresh_failures = 0
    connection.refresh_not_before = None
    connection.error_message = None
    connection.scope = token.scope
    return rotation


async def _failed(
    ctx: AppContext,
    session: AsyncSession,
    connection: ProviderConnection,
    failure: Failure,
    *,
    trigger: Trigger,
    now: datetime,
    **where,
) -> Outcome:
    settings = ctx.settings
    connection.refresh_failures += 1
    failures = connection.refresh_failures
    retry_at = None
    # An institution that is down, slow or overloaded (a transient failure) says nothing about
    # the authorization: however long it lasts, the connection backs off and waits, and only
    # a lapsed refresh token (expiry) or an answer that will not change ends it.
    gave_up = not failure.transient and failures >= settings.REFRESH_MAX_FAILURES
    if failure.error == "invalid_grant" or gave_up:
        connection.status = ConnectionStatus.ERROR.value
        connection.refresh_not_before = None
        why = (
            "the institution no longer accepts the refresh token"
            if failure.error == "invalid_grant"
            else f"{failures} refreshes failed in a row"
        )
        connection.error_message = f"{why} ({failure.error}); reconnect to continue"[:500]
    else:
        retry_at = now + backoff(settings, failures)
        connection.refresh_not_before = retry_at
        connection.error_message = f"refresh failed: {failure.error}; retrying"[:500]
    await audit.record(
        session=session,
        action="refresh_failed",
        details={
            "trigger": trigger.value,
            "error": failure.error,
            "error_description": failure.description,
            "transient": failure.transient,
            "failures": failures,
            "status": connection.status,
        },
        **where,
    )
    await session.flush()
    return Outcome(
        Kind.FAILED,
        status=connection.status,
        error=failure.error,
        error_description=failure.description,
        transient=failure.transient,
        retry_at=retry_at,
        failures=failures,
    )


async def expire(
    session: AsyncSession, connection: ProviderConnection, provider: Provider, token: ProviderToken
) -> None:
    """The connection can no longer be refreshed: it waits for the person to reconnect."""
    deadline = token.refresh_expires_at or token.expires_at
    connection.status = ConnectionStatus.EXPIRED.value
    connection.refresh_not_before = None
    connection.error_message = (
        f"the authorization expired at {deadline.isoformat() if deadline else 'an unknown time'}"
        "; reconnect to continue"
    )
    await audit.record(
        session=session,
        action="expired",
        details={"reconnect_by": deadline.isoformat() if deadline else None},
        user_id=provider.user_id,
        provider_id=provider.id,
        connection_id=connection.id,
    )
    await session.flush()
