"""Connecting a provider of kind ``link`` (Plaid Link).

1. ``start``: a link token from ``/link/token/create`` (the products the person asked for;
   in update mode with the item's access token and no products), and the URL of the page that
   opens Link with it. Update mode whenever the connection holds an item and either its login
   needs the person (``error`` with ``ITEM_LOGIN_REQUIRED``, ...) or a reauth notice is open
   (Plaid's ``PENDING_EXPIRATION`` / ``PENDING_DISCONNECT``: ``source_state.reauth``, kept by
   plaid_webhooks/service.py), or when the client asks ``{"mode": "update"}``; ``{"mode":
   "new"}`` asks for a new item whatever the state.
   What was started waits in Valkey for ``LINK_SECONDS`` (the link token's life).
2. ``exchange``: the public token Link's onSuccess gave, exchanged once
   (``/item/public_token/exchange``); the access token sealed by the vault
   (provider_tokens.access_token_encrypted, the ``access`` context, as a SimpleFIN access URL
   is); the connection active, its source state the new item (no cursor: the next sync reads
   the item's whole history). Update mode exchanges nothing (the access token stays; Plaid:
   "the public_token does not need to be exchanged"): the connection is active again, its
   reauth notice closed, its accounts and cursor as they were.

An answer of Plaid's without what it always has (``link_token``, ``access_token``, ...) is a
502 (``invalid_response``), never a 500. The
   item a new Link replaces is removed at Plaid (``/item/remove``) once the new one is
   committed: Plaid counts and bills items.

A new Link of the same bank is a new item, and Plaid names its accounts anew: each account
the connection already has keeps its row (and its transactions, balances, positions) under
the new id when it is found among the new item's accounts, by ``persistent_account_id`` where
Plaid gives one (the same for every item of an institution that has it), else by the same
mask, type and name when exactly one account of each side has them. The transactions' new ids
are taken over by the sync's reconciliation (a whole read re-keys what it lists under new ids).
"""

import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.audit import service as audit
from dashtam_api.connections import link_queries, queries
from dashtam_api.connections.service import _described, seal_credential
from dashtam_api.context import AppContext
from dashtam_api.errors import Conflict, UpstreamError
from dashtam_api.providers import service as providers
from dashtam_api.sources.plaid_api import LOGIN, PlaidAPI, PlaidFailure
from dashtam_api.sources.protocol import Kind
from dashtam_api.unit_of_work import after_commit, end_read
from dashtam_api.upstream import INVALID_RESPONSE
from dashtam_core.vault import token_context
from dashtam_models import ConnectionStatus, User

LINK_SECONDS = 4 * 3600  # a link token's life at Plaid
PREFIX = "link:"
PAGE_PATH = "/api/v1/link/"


def _pending_key(provider_id: uuid.UUID) -> str:
    return f"{PREFIX}pending:{provider_id}"


def page_key(page_token: str) -> str:
    return f"{PREFIX}page:{hashlib.sha256(page_token.encode()).hexdigest()}"


def webhook_url(ctx: AppContext) -> str | None:
    settings = ctx.settings
    if settings.PLAID_WEBHOOK_URL:
        return settings.PLAID_WEBHOOK_URL
    if settings.local_environment:
        return settings.API_BASE_URL.rstrip("/") + "/api/v1/plaid/webhook"
    return None


def _upstream(exc: PlaidFailure) -> UpstreamError:
    return UpstreamError(
        f"Plaid refused: {exc.message}", institution_error=exc.error_code,
        transient=exc.status == 429 or exc.status >= 500 or exc.error_type == "TRANSPORT",
    )  # fmt: skip


def _needs_login(error_message: str | None) -> bool:
    return (error_message or "").split(":")[0] in LOGIN


def _fields(answer: dict, path: str, *names: str) -> list[str]:
    """The answer's ``names``, each a non-empty string, or a 502: Plaid answered without them."""
    found = [answer.get(name) for name in names]
    if not all(isinstance(value, str) and value for value in found):
        raise UpstreamError(
            f"Plaid's answer to {path} is not what Plaid sends.",
            institution_error=INVALID_RESPONSE, transient=False,
        )  # fmt: skip
    return found


def _accounts(listed: dict) -> list[dict]:
    accounts = listed.get("accounts")
    if not isinstance(accounts, list) or not all(
        isinstance(a, dict) and isinstance(a.get("account_id"), str) for a in accounts
    ):
        raise UpstreamError(
            "Plaid's answer to /accounts/get is not what Plaid sends.",
            institution_error=INVALID_RESPONSE, transient=False,
        )  # fmt: skip
    return accounts


async def start(
    *,
    ctx: AppContext,
    session: AsyncSession,
    redis: Redis,
    user: User,
    provider_id: uuid.UUID,
    products: list[str] | None,
    mode: str | None = None,
) -> dict:
    """A link token and the page that opens Link with it (the module's step 1)."""
    provider, connection = await providers.get_owned(
        session=session, user=user, provider_id=provider_id
    )
    spec = ctx.registry[provider.provider_key]
    body = {
        "client_name": "Dashtam",
        "language": "en",
        "country_codes": ["US", "CA"],
        "user": {"client_user_id": str(user.id)},
    }
    if webhook := webhook_url(ctx):
        body["webhook"] = webhook
    stored = await queries.token_of(session, connection_id=connection.id)
    if mode == "update" and stored is None:
        raise Conflict(
            "This provider holds no Plaid item to update: connect it with a new Link.",
            kind=Kind.LINK.value,
        )
    needs_person = connection.status == ConnectionStatus.ERROR and _needs_login(
        connection.error_message
    )
    reauth = bool((connection.source_state or {}).get("reauth"))
    update = stored is not None and (
        mode == "update" or (mode is None and (needs_person or reauth))
    )
    if update:
        body["access_token"] = ctx.vault.open(
            stored.access_token_encrypted, context=token_context(connection.id, "access")
        )
    else:
        body["products"] = list(dict.fromkeys(products or ["transactions"]))
        body["transactions"] = {"days_requested": 730}
    await end_read(session)
    try:
        async with ctx.http() as http:
            made = await PlaidAPI(http, base_url=spec.api_base_url, settings=ctx.settings).call(
                "/link/token/create", body
            )
    except PlaidFailure as exc:
        raise _upstream(exc) from None
    link_token, expiration = _fields(made, "/link/token/create", "link_token", "expiration")
    mode = "update" if update else "new"
    page_token = secrets.token_urlsafe(32)
    pending = {
        "user_id": str(user.id),
        "provider_id": str(provider_id),
        "link_token": link_token,
        "mode": mode,
    }
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(_pending_key(provider_id), json.dumps(pending), ex=LINK_SECONDS)
        pipe.set(page_key(page_token), json.dumps(pending), ex=LINK_SECONDS)
        await pipe.execute()
    return {
        "link_token": link_token,
        "expiration": expiration,
        "link_url": ctx.settings.API_BASE_URL.rstrip("/") + PAGE_PATH + page_token,
        "mode": mode,
    }


async def exchange(
    *,
    ctx: AppContext,
    session: AsyncSession,
    redis: Redis,
    user: User,
    provider_id: uuid.UUID,
    public_token: str,
    where: dict,
) -> dict:
    """The public token exchanged and the access token sealed (the module's step 2)."""
    provider, connection = await providers.get_owned(
        session=session, user=user, provider_id=provider_id
    )
    spec = ctx.registry[provider.provider_key]
    started = await redis.getdel(_pending_key(provider_id))
    if started is None:
        raise Conflict(
            "No Link was started for this provider (or it expired): start one with "
            "POST /api/v1/providers/{id}/authorization.",
            kind=Kind.LINK.value,
        )
    mode = json.loads(started)["mode"]
    ids = {"user_id": user.id, "provider_id": provider.id, "connection_id": connection.id}
    stored = await queries.token_of(session, connection_id=connection.id)
    if mode == "update":
        # The item's login mended at the bank: the access token it has works again.
        provider, connection = await providers.get_owned(
            session=session, user=user, provider_id=provider_id, for_update=True
        )
        connection.status = ConnectionStatus.ACTIVE.value
        connection.error_message = None
        connection.sync_error = None
        if (connection.source_state or {}).get("reauth"):  # renewed: the notice is closed
            connection.source_state = {
                k: v for k, v in connection.source_state.items() if k != "reauth"
            }
        await audit.record(
            session=session, action="connected", details={"kind": "link", "mode": mode},
            **ids, **where,
        )  # fmt: skip
        return await _described(session, ctx.settings, provider, connection)
    replaced = (
        ctx.vault.open(
            stored.access_token_encrypted, context=token_context(connection.id, "access")
        )
        if stored is not None
        else None
    )
    await end_read(session)
    try:
        async with ctx.http() as http:
            api = PlaidAPI(http, base_url=spec.api_base_url, settings=ctx.settings)
            exchanged = await api.call(
                "/item/public_token/exchange", {"public_token": public_token}
            )
            access_token, item_id = _fields(
                exchanged, "/item/public_token/exchange", "access_token", "item_id"
            )
            listed = await api.call("/accounts/get", {"access_token": access_token})
            accounts = _accounts(listed)
    except PlaidFailure as exc:
        raise _upstream(exc) from None
    provider, connection = await seal_credential(
        session=session, vault=ctx.vault, spec=spec, user=user, provider_id=provider_id,
        credential=access_token, scheme="Plaid",
    )  # fmt: skip
    await _keep_accounts(session, connection, accounts)
    # A new item: no cursor (the next sync reads its whole history), and a sync of the old
    # item under way writes nothing (its claim is no longer the connection's).
    connection.source_state = {"item_id": item_id, "persistent": _persistent(accounts)}
    connection.sync_lease_until = None
    await audit.record(
        session=session,
        action="connected",
        details={"kind": "link", "mode": mode, "item_id": item_id,
                 "key_id": ctx.vault.current_key_id},
        **ids, **where,
    )  # fmt: skip
    if replaced is not None:
        # The item this one replaces is removed at Plaid (Plaid bills and counts items), once
        # the new one is ours for good: never before the commit, never when it rolls back.
        after_commit(
            session,
            lambda: ctx.in_background(
                "removing the Plaid item a new Link replaced", _remove_item(ctx, spec, replaced)
            ),
        )
    return await _described(session, ctx.settings, provider, connection)


async def _remove_item(ctx: AppContext, spec, access_token: str) -> None:
    """``/item/remove`` of a replaced item; a failure is logged (the item stays billed until
    removed in Plaid's dashboard), never raised: the new connection is already whole."""
    async with ctx.http() as http:
        api = PlaidAPI(http, base_url=spec.api_base_url, settings=ctx.settings)
        try:
            await api.call("/item/remove", {"access_token": access_token})
        except PlaidFailure as exc:
            if exc.error_code not in ("ITEM_NOT_FOUND", "INVALID_ACCESS_TOKEN"):
                raise


def _persistent(accounts: list[dict]) -> dict:
    return {
        a["account_id"]: a["persistent_account_id"]
        for a in accounts
        if a.get("persistent_account_id")
    }


async def _keep_accounts(session: AsyncSession, connection, accounts: list[dict]) -> None:
    """The connection's accounts re-keyed to the new item's ids (the module's rule)."""
    held = await link_queries.accounts_of(session, connection_id=connection.id)
    if not held:
        return
    new_ids = {a["account_id"] for a in accounts}
    old_persistent = (connection.source_state or {}).get("persistent") or {}
    by_persistent = {p: old for old, p in old_persistent.items()}
    taken, moves = set(), {}
    for account in accounts:
        old = by_persistent.get(account.get("persistent_account_id") or "")
        if old is not None and old not in new_ids:
            moves[old] = account["account_id"]
            taken.add(old)

    def looks(kind, name, last4) -> tuple:
        return (kind, name, last4)

    mine = {}
    for row in held:
        if row.external_id in taken or row.external_id in new_ids:
            continue
        mine.setdefault(looks(row.account_type, row.name, row.number_last4), []).append(
            row.external_id
        )
    theirs = {}
    for account in accounts:
        if account["account_id"] in moves.values():
            continue
        kind = str(account.get("subtype") or account.get("type") or "unknown")
        last4 = str(account["mask"])[-4:] if account.get("mask") else None
        theirs.setdefault(looks(kind, str(account.get("name")), last4), []).append(
            account["account_id"]
        )
    for key, olds in mine.items():
        if len(olds) == 1 and len(theirs.get(key, ())) == 1:
            moves[olds[0]] = theirs[key][0]
    for old, new in moves.items():
        await link_queries.rekey_account(session, connection_id=connection.id, old=old, new=new)
    connection.updated_at = datetime.now(UTC)
