"""Connecting a provider of kind ``consent`` (Enable Banking): the person picks their bank,
consents there, and Dashtam opens a session from that consent.

1. ``banks``: the banks of a country (Enable Banking's ``/aspsps``), each with the longest
   consent it gives.
2. ``start``: ``/auth`` for the bank picked, asking access until now + the shorter of the
   bank's longest consent and ENABLE_BANKING_CONSENT_DAYS; the answer is the URL to send the
   person to. The state waits in Valkey as an OAuth2 authorization's does.
3. ``complete`` (from /oauth/callback: the bank redirects the person to the callback server with
   ``code`` and ``state``): ``/sessions`` with the code (sent once: a code is single-use). The
   session id and each account's uid and identification hash are sealed by the vault (the
   connection's credential, sources/enablebanking_accounts.py); the consent's end is the connection's
   ``reconnect_by`` (``refresh_expires_at``: warned of ahead by connection.reauth_required,
   ``expired`` after it, as an OAuth2 refresh token's end is). The request's read is ended
   before the bank is asked (no pooled connection idles meanwhile). The new consent's
   accounts keep the keys the connection's accounts have (sources/enablebanking_accounts.py).
   A session the connection held before is closed at Enable Banking once the new one is
   committed; a session opened but refused here (no account Dashtam can key) is closed at once.
4. ``close``: revoking the connection closes its session (``DELETE /sessions/{id}``).
"""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.audit import service as audit
from dashtam_api.connections import link_queries, oauth, queries
from dashtam_api.context import AppContext
from dashtam_api.errors import Conflict, UpstreamError
from dashtam_api.providers import service as providers
from dashtam_api.providers.registry import ProviderSpec, redirect_uri
from dashtam_api.sources import enablebanking_accounts
from dashtam_api.sources import enablebanking_api as api
from dashtam_api.sources.protocol import Kind
from dashtam_api.sources.shapes import SourceError, timestamp
from dashtam_api.sync import budget
from dashtam_api.unit_of_work import after_commit, end_read
from dashtam_core.config import Settings
from dashtam_core.vault import Vault, VaultError, token_context
from dashtam_models import Provider, ProviderConnection, User


def _app(settings: Settings) -> api.App:
    app = api.application(settings)
    if app is None:
        raise Conflict("Enable Banking is not configured here.")
    return app


def _upstream(exc: SourceError) -> UpstreamError:
    return UpstreamError(
        f"Enable Banking did not answer as expected ({exc.error}): {exc.description}.",
        institution_error=exc.error,
        transient=exc.transient,
    )


def _bank(raw: dict) -> dict:
    validity = raw.get("maximum_consent_validity")
    return {
        "name": str(raw.get("name") or ""),
        "country": str(raw.get("country") or ""),
        "bic": raw.get("bic") or None,
        "logo": raw.get("logo") or None,
        "psu_types": [str(t) for t in raw.get("psu_types") or ()],
        "beta": bool(raw.get("beta")),
        "maximum_consent_validity": int(validity) if isinstance(validity, int) else None,
    }


async def _banks_of(ctx: AppContext, country: str | None) -> list[dict]:
    try:
        async with ctx.http() as http:
            found = await api.Client(http, _app(ctx.settings), ctx.settings).aspsps(country)
    except SourceError as exc:
        raise _upstream(exc) from None
    return [_bank(b) for b in found if b.get("name")]


async def banks(
    *,
    ctx: AppContext,
    session: AsyncSession,
    user: User,
    provider_id: uuid.UUID,
    country: str | None,
) -> dict:
    """The banks (of ``country``, else of every country) a person may pick for the provider:
    none for a provider of a kind not connected by picking a bank."""
    provider, _ = await providers.get_owned(session=session, user=user, provider_id=provider_id)
    spec = ctx.registry.get(provider.provider_key)
    if spec is None or spec.kind is not Kind.CONSENT:
        return {"items": []}
    await _owned_consent(ctx, session, user, provider_id)
    await end_read(session)
    return {"items": await _banks_of(ctx, country)}


async def _owned_consent(ctx, session, user, provider_id) -> tuple[Provider, ProviderConnection]:
    provider, connection = await providers.get_owned(
        session=session, user=user, provider_id=provider_id
    )
    spec = ctx.registry.get(provider.provider_key)
    if spec is None or not spec.configured:
        raise Conflict(f"The provider type {provider.provider_key!r} is not configured here.")
    if spec.kind is not Kind.CONSENT:
        raise Conflict(
            f"A provider of kind {spec.kind.value} has no banks to pick from.",
            kind=spec.kind.value,
        )
    return provider, connection


def consent_end(settings: Settings, bank: dict, now: datetime) -> datetime:
    """The shorter of the bank's longest consent and ENABLE_BANKING_CONSENT_DAYS."""
    longest = timedelta(days=settings.ENABLE_BANKING_CONSENT_DAYS)
    if bank.get("maximum_consent_validity"):
        longest = min(longest, timedelta(seconds=bank["maximum_consent_validity"]))
    return (now + longest).replace(microsecond=0)


async def start(
    *,
    ctx: AppContext,
    session: AsyncSession,
    redis: Redis,
    user: User,
    provider_id: uuid.UUID,
    name: str,
    country: str,
    where: dict | None = None,
) -> dict:
    """The URL of the bank's consent page for the bank picked; a bank Enable Banking does not
    list in that country is a 409 (the request's form is right, the bank is not there). Enable
    Banking refusing ``/auth`` is audited ``authorization_failed`` (``where``: who asked), in a
    transaction of its own: the request's is rolled back."""
    provider, connection = await _owned_consent(ctx, session, user, provider_id)
    await end_read(session)
    settings = ctx.settings
    listed = await _banks_of(ctx, country)
    bank = next((b for b in listed if b["name"] == name), None) or next(
        (b for b in listed if b["name"].casefold() == name.casefold()), None
    )
    if bank is None:
        raise Conflict(
            f"Enable Banking lists no bank named {name!r} in {country}: pick one of GET "
            f"/api/v1/providers/{provider_id}/banks?country={country}.",
            bank=name[:200],
            country=country,
        )
    callback = redirect_uri(settings)
    pending = oauth.new_pending(
        user_id=user.id,
        provider_id=provider.id,
        connection_id=connection.id,
        spec=ctx.registry[provider.provider_key],
        redirect_uri=callback,
    )
    state = await oauth.save_state(redis, pending, settings.OAUTH_STATE_TTL_SECONDS)
    valid_until = consent_end(settings, bank, datetime.now(UTC))
    try:
        async with ctx.http() as http:
            answer = await api.Client(http, _app(settings), settings).auth(
                bank=bank, valid_until=valid_until.isoformat(), state=state, redirect_url=callback
            )
    except SourceError as exc:
        await redis.delete(oauth.STATE_PREFIX + state)
        await audit.record_detached(
            db=ctx.db,
            action="authorization_failed",
            user_id=user.id,
            provider_id=provider.id,
            connection_id=connection.id,
            ip=(where or {}).get("ip"),
            user_agent=(where or {}).get("user_agent"),
            details={
                "step": "auth",
                "bank": bank["name"][:200],
                "error": exc.error[:100],
                "error_description": exc.description[:300],
            },
        )
        raise _upstream(exc) from None
    if not answer.get("url"):
        raise UpstreamError(
            "Enable Banking answered no URL of the bank's page.", institution_error="no_url"
        )
    return {"authorization_url": str(answer["url"]), "expires_in": settings.OAUTH_STATE_TTL_SECONDS}


def _opened(answer: dict, known: dict) -> tuple[str, list, list, datetime]:
    session_id = answer.get("session_id")
    access = answer.get("access") if isinstance(answer.get("access"), dict) else {}
    valid_until = timestamp(access.get("valid_until"), "access.valid_until")
    if not session_id or valid_until is None:
        raise SourceError(
            "invalid_response", "the session came without its id or its end", transient=False
        )
    accounts, left_out = enablebanking_accounts.covered(answer, known)
    if not accounts:
        said = (
            f" (the bank gives {', '.join(left_out)} no lasting identity: Dashtam cannot "
            "keep them apart from one consent to the next)"
            if left_out
            else ""
        )
        raise SourceError(
            "NO_ACCOUNTS_ADDED", f"no account Dashtam can read was shared at the bank{said}: "
            "connect again and pick at least one", transient=False,
        )  # fmt: skip
    return str(session_id), accounts, left_out, valid_until


async def _required_psu_headers(client: api.Client, aspsp) -> list[str]:
    """The PSU headers the session's bank requires (/aspsps' ``required_psu_headers``): kept
    with the connection, whose reads then need the person there. Unknown (the list did not
    answer) is none: the bank's own refusal still says so."""
    if not isinstance(aspsp, dict) or not aspsp.get("name"):
        return []
    try:
        listed = await client.aspsps(str(aspsp.get("country") or "") or None)
    except SourceError:
        return []
    bank = next((b for b in listed if b.get("name") == aspsp["name"]), {})
    required = bank.get("required_psu_headers") or []
    return (
        [str(h)[:60] for h in required if isinstance(h, str)] if isinstance(required, list) else []
    )


def _held(vault: Vault, connection_id: uuid.UUID, stored) -> tuple[str | None, list]:
    """The session id and accounts the connection held before, if they can be read."""
    if stored is None or not stored.access_token_encrypted:
        return None, []
    try:
        plain = vault.open(
            stored.access_token_encrypted, context=token_context(connection_id, "access")
        )
        return enablebanking_accounts.held_of(plain)
    except (VaultError, SourceError):
        return None, []


def _held_session(vault: Vault, connection_id: uuid.UUID, stored) -> str | None:
    """The session id the connection held before (to close it), if it can be read."""
    return _held(vault, connection_id, stored)[0]


async def complete(
    *,
    ctx: AppContext,
    session: AsyncSession,
    spec: ProviderSpec,
    provider: Provider,
    connection: ProviderConnection,
    code: str,
    where: dict,
    record_failure,
    store_tokens,
) -> dict:
    """Open the session from the bank's code and keep it (the module's step 3)."""
    settings = ctx.settings
    # What a new consent's accounts are matched by (a reconnection keeps every account).
    _, before = _held(
        ctx.vault, connection.id, await queries.token_of(session, connection_id=connection.id)
    )
    stored = [
        a.external_id for a in await link_queries.accounts_of(session, connection_id=connection.id)
    ]
    known = enablebanking_accounts.known_keys(before, stored)
    await end_read(session)  # no pooled connection idles while the bank answers
    answer: dict = {}
    try:
        async with ctx.http() as http:
            client = api.Client(http, _app(settings), settings)
            answer = await client.open_session(code)
            session_id, accounts, left_out, valid_until = _opened(answer, known)
            psu_headers = await _required_psu_headers(client, answer.get("aspsp"))
    except SourceError as exc:
        opened = answer.get("session_id")
        if opened and isinstance(opened, str):
            # Opened, but refused here: closed at once, not left to count as a consent.
            async with ctx.http() as http:
                await close(settings, opened, http)
        reason = {"error": exc.error[:100], "error_description": exc.description[:300]}
        await record_failure(db=ctx.db, connection_id=connection.id, reason=reason, where=where)
        raise UpstreamError(
            f"{spec.name} did not open the session: {exc.error}: {exc.description}",
            institution_error=exc.error,
        ) from None
    await queries.lock_connection(session, connection=connection)
    replaced = _held_session(
        ctx.vault, connection.id, await queries.token_of(session, connection_id=connection.id)
    )
    await store_tokens(
        session=session,
        vault=ctx.vault,
        spec=spec,
        connection=connection,
        token={
            "access_token": enablebanking_accounts.credential(
                session_id, accounts, left_out, psu_headers
            ),
            "token_type": "EnableBanking",
        },
    )
    stored_token = await queries.token_of(session, connection_id=connection.id)
    stored_token.refresh_expires_at = valid_until  # the consent's end: reconnect by then
    # A new consent is a new count of the bank's unattended reads.
    await budget.reset(session, connection_id=connection.id)
    await audit.record(
        session=session,
        action="connected",
        details={
            "kind": spec.kind.value,
            "accounts": len(accounts),
            "left_out": len(left_out),
            "valid_until": valid_until.isoformat(),
            "key_id": ctx.vault.current_key_id,
        },
        **where,
    )
    if replaced and replaced != session_id:
        # The session this consent replaces is closed at Enable Banking once the new one is
        # ours for good: never before the commit, never when it rolls back.
        after_commit(
            session,
            lambda: ctx.in_background(
                "closing the Enable Banking session a new consent replaced",
                _close_replaced(settings, ctx, replaced),
            ),
        )
    return {"outcome": "connected", "provider_id": provider.id, "provider_alias": provider.alias}


async def _close_replaced(settings: Settings, ctx: AppContext, session_id: str) -> None:
    async with ctx.http() as http:
        said = await close(settings, session_id, http)
    if said != "revoked":
        raise RuntimeError(f"Enable Banking answered {said}")


async def close(settings: Settings, session_id: str, http: httpx.AsyncClient) -> str:
    """Close a session at Enable Banking: what it said (``revoked``, ``refused (<code>)``,
    ``failed (<error>)``); the connection is done here whatever it says."""
    try:
        await api.Client(http, _app(settings), settings).close_session(session_id)
    except SourceError as exc:
        return f"failed ({exc.error})" if exc.transient else f"refused ({exc.error})"
    return "revoked"


def session_of(vault: Vault, connection_id: uuid.UUID, stored) -> str | None:
    """The session id a connection's sealed credential holds (None: none readable)."""
    return _held_session(vault, connection_id, stored)
