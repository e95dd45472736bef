"""Connecting a provider: start the authorization, finish it from the callback, show, revoke."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from authlib.integrations.base_client.errors import OAuthError
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api import upstream
from dashtam_api.audit import service as audit
from dashtam_api.connections import consent, oauth, queries, refresh
from dashtam_api.context import AppContext
from dashtam_api.errors import BadRequest, Conflict, UpstreamError
from dashtam_api.providers import queries as provider_queries
from dashtam_api.providers import service as providers
from dashtam_api.providers.registry import ProviderSpec, redirect_uri
from dashtam_api.sources.plaid_api import PlaidAPI, remove_item
from dashtam_api.sources.protocol import Kind
from dashtam_api.unit_of_work import end_read
from dashtam_core.config import Settings
from dashtam_core.database import Database
from dashtam_core.vault import Vault, VaultError, token_context
from dashtam_models import ConnectionStatus, Provider, ProviderConnection, ProviderToken, User


def _spec(registry: dict[str, ProviderSpec], provider: Provider) -> ProviderSpec:
    spec = registry.get(provider.provider_key)
    if spec is None or not spec.configured:
        raise Conflict(f"The provider type {provider.provider_key!r} is not configured here.")
    return spec


async def kind_of(
    *, session: AsyncSession, registry: dict, user: User, provider_id: uuid.UUID
) -> Kind:
    """How the person's provider is connected (404 when it is not theirs, 409 when its type is
    not configured here)."""
    provider, _ = await providers.get_owned(session=session, user=user, provider_id=provider_id)
    return _spec(registry, provider).kind


async def start(
    *,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    registry: dict,
    tls,
    user: User,
    provider_id: uuid.UUID,
) -> dict:
    """A fresh authorization URL; its state (with the PKCE verifier) waits in Valkey."""
    provider, connection = await providers.get_owned(
        session=session, user=user, provider_id=provider_id
    )
    spec = _spec(registry, provider)
    callback = redirect_uri(settings)
    pending = oauth.new_pending(
        user_id=user.id,
        provider_id=provider.id,
        connection_id=connection.id,
        spec=spec,
        redirect_uri=callback,
    )
    state = await oauth.save_state(redis, pending, settings.OAUTH_STATE_TTL_SECONDS)
    async with oauth.client_for(
        spec, redirect_uri=callback, tls=tls, timeout=settings.OAUTH_HTTP_TIMEOUT_SECONDS
    ) as client:
        url = oauth.authorization_url(
            spec, client, state=state, code_verifier=pending.code_verifier
        )
    return {"authorization_url": url, "expires_in": settings.OAUTH_STATE_TTL_SECONDS}


async def complete(
    *,
    session: AsyncSession,
    db: Database,
    redis: Redis,
    settings: Settings,
    registry: dict,
    vault: Vault,
    tls,
    state: str,
    code: str | None,
    error: str | None,
    error_description: str | None,
    ip: str | None,
    user_agent: str | None,
    ctx: AppContext | None = None,
) -> dict:
    """Finish an authorization from the institution's redirect (forwarded by the callback)."""
    pending = await oauth.take_state(redis, state)
    if pending is None:
        raise BadRequest("Unknown, expired or already used state: start the connection again.")
    row = await provider_queries.provider_with_connection(
        session, user_id=uuid.UUID(pending.user_id), provider_id=uuid.UUID(pending.provider_id)
    )
    if row is None:
        raise BadRequest("The provider of this authorization no longer exists.")
    provider, connection = row
    where = {
        "user_id": provider.user_id,
        "provider_id": provider.id,
        "connection_id": connection.id,
        "ip": ip,
        "user_agent": user_agent,
    }
    if error or not code:
        # Denied (or broken) at the institution: nothing changes but the audit trail.
        details = {
            "error": (error or "missing_code")[:200],
            "error_description": (error_description or "")[:500],
        }
        await audit.record(session=session, action="authorization_denied", details=details, **where)
        return {
            "outcome": "denied",
            "provider_id": provider.id,
            "provider_alias": provider.alias,
            **details,
        }
    spec = _spec(registry, provider)
    if spec.kind is Kind.CONSENT and ctx is not None:
        return await consent.complete(
            ctx=ctx, session=session, spec=spec, provider=provider, connection=connection,
            code=code, where=where, record_failure=_record_failure, store_tokens=store_tokens,
        )  # fmt: skip
    try:
        async with oauth.client_for(
            spec,
            redirect_uri=pending.redirect_uri,
            tls=tls,
            timeout=settings.OAUTH_HTTP_TIMEOUT_SECONDS,
        ) as client:
            kwargs = {"code_verifier": pending.code_verifier} if pending.code_verifier else {}
            # Sent once: an authorization code is spent the moment the institution reads it.
            token = await upstream.once(
                settings,
                lambda: client.fetch_token(
                    spec.token_url, grant_type="authorization_code", code=code, **kwargs
                ),
            )
    except (OAuthError, httpx.HTTPError, ValueError, KeyError) as exc:
        reason = _upstream_reason(exc)
        # Outside the request's transaction: the failure stays on record after the rollback.
        await _record_failure(db=db, connection_id=connection.id, reason=reason, where=where)
        raise UpstreamError(
            f"{spec.name} did not complete the authorization: {reason['error']}",
            institution_error=reason["error"],
        ) from None
    if not token.get("access_token"):
        reason = {"error": "no_access_token", "error_description": "token response lacked one"}
        await _record_failure(db=db, connection_id=connection.id, reason=reason, where=where)
        raise UpstreamError(
            f"{spec.name} returned no access token.", institution_error="no_access_token"
        )
    # Lock the row as every writer of a connection's tokens does (a refresh may be running).
    await queries.lock_connection(session, connection=connection)
    await store_tokens(session=session, vault=vault, spec=spec, connection=connection, token=token)
    await audit.record(
        session=session,
        action="connected",
        details={
            "scope": connection.scope,
            "token_type": token.get("token_type"),
            "expires_in": token.get("expires_in"),
            "key_id": vault.current_key_id,
        },
        **where,
    )
    return {"outcome": "connected", "provider_id": provider.id, "provider_alias": provider.alias}


def _upstream_reason(exc: Exception) -> dict:
    if isinstance(exc, OAuthError):
        return {
            "error": (exc.error or "oauth_error")[:100],
            "error_description": (exc.description or "")[:300],
        }
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        error, _ = upstream.status_failure(status)
        return {"error": error, "error_description": f"the token endpoint answered {status}"}
    if isinstance(exc, httpx.TransportError):
        error, description = upstream.transport_failure(exc)
        return {"error": error, "error_description": description}
    return {"error": upstream.INVALID_RESPONSE, "error_description": type(exc).__name__}


async def _record_failure(
    *, db: Database, connection_id: uuid.UUID, reason: dict, where: dict
) -> None:
    async with db.sessionmaker() as failure:
        connection = await queries.connection_by_id(failure, connection_id=connection_id)
        if connection is not None and connection.status != ConnectionStatus.ACTIVE:
            connection.status = ConnectionStatus.ERROR.value
            connection.error_message = f"{reason['error']}: {reason['error_description']}"[:500]
        await failure.commit()
    await audit.record_detached(db=db, action="authorization_failed", details=reason, **where)


async def seal_credential(
    *,
    session: AsyncSession,
    vault: Vault,
    spec: ProviderSpec,
    user: User,
    provider_id: uuid.UUID,
    credential: str,
    scheme: str,
) -> tuple[Provider, ProviderConnection]:
    """A credential the person gave (and the institution accepted) sealed as the connection's
    token: its rows read afresh (the institution's wait ended the request's read) and the
    connection locked as every writer of its tokens does; the connection is active."""
    provider, connection = await providers.get_owned(
        session=session, user=user, provider_id=provider_id, fresh=True
    )
    await queries.lock_connection(session, connection=connection)
    await store_tokens(
        session=session,
        vault=vault,
        spec=spec,
        connection=connection,
        token={"access_token": credential, "token_type": scheme},  # what the credential is
    )
    return provider, connection


async def store_tokens(
    *,
    session: AsyncSession,
    vault: Vault,
    spec: ProviderSpec,
    connection: ProviderConnection,
    token: dict,
) -> None:
    """Seal and keep a token response; the connection becomes active."""
    now = datetime.now(UTC)
    stored = await queries.token_of(session, connection_id=connection.id)
    if stored is None:
        stored = ProviderToken(connection_id=connection.id, access_token_encrypted=b"", key_id="")
        session.add(stored)

    def seal(value: str | None, column: str) -> bytes | None:
        return vault.seal(value, context=token_context(connection.id, column)) if value else None

    stored.access_token_encrypted = seal(token["access_token"], "access")
    stored.refresh_token_encrypted = seal(token.get("refresh_token"), "refresh")
    stored.id_token_encrypted = seal(token.get("id_token"), "id")
    stored.key_id = vault.current_key_id
    stored.token_type = str(token.get("token_type") or "Bearer")[:40]
    stored.scope = token.get("scope") or " ".join(spec.scopes) or None
    expires_in = token.get("expires_in")
    stored.expires_at = now + timedelta(seconds=int(expires_in)) if expires_in else None
    refresh_in = token.get("refresh_token_expires_in")
    if refresh_in:
        stored.refresh_expires_at = now + timedelta(seconds=int(refresh_in))
    elif spec.refresh_token_lifetime and token.get("refresh_token"):
        stored.refresh_expires_at = now + spec.refresh_token_lifetime
    else:
        stored.refresh_expires_at = None  # not the deadline of an earlier authorization
    stored.updated_at = now
    connection.status = ConnectionStatus.ACTIVE.value
    connection.scope = stored.scope
    connection.connected_at = now
    # A new authorization starts a clean slate: whatever failed before no longer applies.
    connection.error_message = None
    connection.refresh_failures = 0
    connection.refresh_not_before = None
    connection.sync_error = None
    await session.flush()


ACTIONS = {
    ConnectionStatus.PENDING: "connect",
    ConnectionStatus.REVOKED: "connect",
    ConnectionStatus.EXPIRED: "reconnect",
    ConnectionStatus.ERROR: "reconnect",
}


def view(
    provider: Provider,
    connection: ProviderConnection,
    stored: ProviderToken | None,
    *,
    last_sync_status: str | None,
    sync_interval_seconds: int,
) -> dict:
    """A connection as the API shows it: its state, its deadlines, its syncs and what to do
    next."""
    now = datetime.now(UTC)
    status_ = connection.status
    if status_ == ConnectionStatus.ACTIVE and stored and refresh.lapsed(stored, now):
        status_ = ConnectionStatus.EXPIRED.value  # the refresher has not been round yet
    reconnect_by = None
    if stored is not None:
        reconnect_by = stored.refresh_expires_at or (
            stored.expires_at if stored.refresh_token_encrypted is None else None
        )
    return {
        "provider_id": provider.id,
        "status": status_,
        "action": ACTIONS.get(ConnectionStatus(status_)),
        "scope": connection.scope,
        "connected_at": connection.connected_at,
        "expires_at": stored.expires_at if stored else None,
        "refresh_expires_at": stored.refresh_expires_at if stored else None,
        "reconnect_by": reconnect_by,
        "last_refreshed_at": connection.last_refreshed_at,
        "refresh_failures": connection.refresh_failures,
        "retry_at": connection.refresh_not_before,
        "synced_at": connection.synced_at,
        "sync_error": connection.sync_error,
        "last_synced_at": connection.synced_at,
        "last_sync_status": last_sync_status,
        "stale": _stale(status_, connection, now, sync_interval_seconds),
        "error": connection.error_message,
        "next_sync_at": _next_sync_at(status_, connection, now, sync_interval_seconds),
    }


def _next_sync_at(
    status_: str, connection: ProviderConnection, now: datetime, interval: int
) -> datetime | None:
    """The earliest the sync loop reads the connection again: the interval after the last
    sync, a failed sync's back-off, the source's budget (sync/budget.py)."""
    if status_ != ConnectionStatus.ACTIVE:
        return None
    moments = [now]
    if connection.synced_at is not None:
        moments.append(connection.synced_at + timedelta(seconds=interval))
    for later in (connection.sync_lease_until, connection.budget_next_at):
        if later is not None:
            moments.append(later)
    return max(moments)


def _stale(status_: str, connection: ProviderConnection, now: datetime, interval: int) -> bool:
    since = connection.synced_at or connection.connected_at
    return (
        status_ == ConnectionStatus.ACTIVE
        and since is not None
        and since < now - timedelta(seconds=2 * interval)
    )


async def _described(
    session: AsyncSession, settings: Settings, provider: Provider, connection: ProviderConnection
) -> dict:
    last_sync_status = await queries.last_sync_status(session, connection_id=connection.id)
    return view(
        provider,
        connection,
        await _token_of(session, connection),
        last_sync_status=last_sync_status,
        sync_interval_seconds=settings.SYNC_INTERVAL_SECONDS,
    )


async def _token_of(session: AsyncSession, connection: ProviderConnection) -> ProviderToken | None:
    return await queries.token_of(session, connection_id=connection.id, fresh=True)


async def status(
    *, session: AsyncSession, settings: Settings, user: User, provider_id: uuid.UUID
) -> dict:
    provider, connection = await providers.get_owned(
        session=session, user=user, provider_id=provider_id
    )
    return await _described(session, settings, provider, connection)


async def refresh_now(
    *, ctx: AppContext, session: AsyncSession, user: User, provider_id: uuid.UUID
) -> dict:
    """Refresh the connection's tokens now, in a transaction of its own that is kept whatever
    the institution answers; a refresh that finishes while this one waits counts for both."""
    provider, connection = await providers.get_owned(
        session=session, user=user, provider_id=provider_id
    )
    spec = ctx.registry.get(provider.provider_key)
    if spec is not None and spec.kind is not Kind.OAUTH2:
        raise Conflict(
            f"A {spec.name} connection has no tokens to refresh: it holds until it is revoked "
            "or fails at the source (reconnect then).",
            connection_status=connection.status,
        )
    seen = connection.last_refreshed_at
    # End the request's read before the refresh's own transaction: the pooled connection is
    # not held idle while the institution answers (and the two never nest).
    await end_read(session)
    async with ctx.sessions() as job:
        outcome = await refresh.refresh(
            ctx, job, connection.id, trigger=refresh.Trigger.ON_DEMAND, seen_refreshed_at=seen
        )
        await job.commit()
    raise_for(outcome, spec_name=institution_name(ctx, provider))
    provider, connection = await providers.get_owned(
        session=session, user=user, provider_id=provider_id, fresh=True
    )
    return await _described(session, ctx.settings, provider, connection)


def institution_name(ctx: AppContext, provider: Provider) -> str:
    spec = ctx.registry.get(provider.provider_key)
    return spec.name if spec else provider.provider_key


def raise_for(outcome: refresh.Outcome, *, spec_name: str) -> None:
    """The problem an unsuccessful refresh outcome means to the person who asked."""
    kind = outcome.kind
    if kind in (refresh.Kind.REFRESHED, refresh.Kind.COALESCED, refresh.Kind.NOT_DUE):
        return
    if kind in (refresh.Kind.INACTIVE, refresh.Kind.EXPIRED):
        action = ACTIONS.get(ConnectionStatus(outcome.status), "connect")
        raise Conflict(
            f"This connection is {outcome.status}: {action} it to continue.",
            connection_status=outcome.status,
            action=action,
        )
    if kind is refresh.Kind.UNSUPPORTED:
        raise Conflict(
            f"{spec_name} issued no refresh token: reconnect when the access token expires.",
            connection_status=outcome.status,
            action="reconnect",
        )
    if kind is refresh.Kind.BUSY:
        raise Conflict(
            "Another refresh of this connection is taking long; try again shortly.",
            headers={"Retry-After": "5"},
            connection_status=outcome.status,
        )
    retry_at = outcome.retry_at.isoformat() if outcome.retry_at else None
    if kind is refresh.Kind.BACKING_OFF:
        raise Conflict(
            f"The last refresh failed; the next try is not before {retry_at}.",
            connection_status=outcome.status,
            retry_at=retry_at,
        )
    if outcome.status == ConnectionStatus.ERROR:
        detail = f"{spec_name} refused the refresh ({outcome.error}): reconnect to continue."
    else:
        detail = f"{spec_name} did not refresh the tokens ({outcome.error}); retrying later."
    raise UpstreamError(
        detail,
        institution_error=outcome.error,
        transient=outcome.transient,
        connection_status=outcome.status,
        action=ACTIONS.get(ConnectionStatus(outcome.status)),
        retry_at=retry_at,
    )


async def _revoke_at_institution(settings: Settings, spec: ProviderSpec, tls, token, hint) -> str:
    """What the institution said to the revocation: ``revoked``, ``refused (<status>)`` or
    ``failed (<upstream error>)``. Sent again on a transient failure (RFC 7009 revocation is
    idempotent); the connection is revoked here whatever it says (revoke's docstring)."""
    try:
        async with oauth.client_for(
            spec,
            redirect_uri=redirect_uri(settings),
            tls=tls,
            timeout=settings.OAUTH_HTTP_TIMEOUT_SECONDS,
        ) as client:
            response = await upstream.idempotent(
                settings,
                lambda: client.revoke_token(spec.revocation_url, token=token, token_type_hint=hint),
            )
    except httpx.TransportError as exc:
        return f"failed ({upstream.transport_failure(exc)[0]})"
    except (OAuthError, httpx.HTTPError, ValueError) as exc:
        return f"failed ({type(exc).__name__})"
    return "revoked" if response.status_code < 400 else f"refused ({response.status_code})"


async def _close_consent(ctx: AppContext, connection_id, stored) -> str:
    """A consent's session closed at Enable Banking (connections/consent.py)."""
    session_id = consent.session_of(ctx.vault, connection_id, stored)
    if session_id is None:
        return "failed (token_unreadable)"
    async with ctx.http() as http:
        return await consent.close(ctx.settings, session_id, http)


async def _remove_item(ctx: AppContext, spec: ProviderSpec, connection_id, stored) -> str:
    """A Plaid item removed at Plaid (it counts and bills items)."""
    try:
        token = ctx.vault.open(
            stored.access_token_encrypted, context=token_context(connection_id, "access")
        )
    except VaultError:
        return "failed (token_unreadable)"
    async with ctx.http() as http:
        api = PlaidAPI(http, base_url=spec.api_base_url, settings=ctx.settings)
        return await remove_item(api, token)


async def revoke(
    *,
    session: AsyncSession,
    settings: Settings,
    registry: dict,
    vault: Vault,
    tls,
    user: User,
    provider_id: uuid.UUID,
    ip: str | None,
    user_agent: str | None,
    ctx: AppContext | None = None,
) -> None:
    """Revoke at the institution when it can, forget the tokens, mark the connection revoked.

    Dashtam's side is done whatever the institution answers: a person who disconnects while the
    institution is down or refusing is disconnected here all the same (nothing of theirs is used
    again), and the audit row's ``at_institution`` keeps what the institution said."""
    provider, connection = await providers.get_owned(
        session=session, user=user, provider_id=provider_id, for_update=True
    )
    stored = await queries.token_of(session, connection_id=connection.id)
    where = {
        "user_id": user.id,
        "provider_id": provider.id,
        "connection_id": connection.id,
        "ip": ip,
        "user_agent": user_agent,
    }
    if stored is None and connection.status != ConnectionStatus.ACTIVE:
        # The provider is there; its authorization is in no state to revoke: a conflict with
        # that state, not a missing resource.
        raise Conflict(
            f"This provider has no authorization to revoke (it is {connection.status}).",
            connection_status=connection.status,
        )
    at_institution = "not_supported"
    spec = registry.get(provider.provider_key)
    if stored is not None and spec is not None and spec.configured and spec.revocation_url:
        column, hint = (
            ("refresh", "refresh_token")
            if stored.refresh_token_encrypted
            else ("access", "access_token")
        )
        sealed = stored.refresh_token_encrypted or stored.access_token_encrypted
        try:
            plain = vault.open(sealed, context=token_context(connection.id, column))
        except VaultError:
            at_institution = "failed (token_unreadable)"
        else:
            at_institution = await _revoke_at_institution(settings, spec, tls, plain, hint)
    elif stored and spec and spec.configured and spec.kind is Kind.CONSENT and ctx is not None:
        at_institution = await _close_consent(ctx, connection.id, stored)
    elif stored and spec and spec.configured and spec.kind is Kind.LINK and ctx is not None:
        at_institution = await _remove_item(ctx, spec, connection.id, stored)
    if stored is not None:
        await session.delete(stored)
    connection.status = ConnectionStatus.REVOKED.value
    connection.error_message = None
    await audit.record(
        session=session, action="revoked", details={"at_institution": at_institution}, **where
    )
    await session.flush()
