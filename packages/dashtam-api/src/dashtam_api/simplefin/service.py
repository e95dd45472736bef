"""Dashtam as a SimpleFIN server (https://www.simplefin.org/protocol.html, v2.0 of 2026-03-19,
and what v1 clients read): the budgeting apps that speak SimpleFIN read a person's accounts,
balances, holdings and transactions, read-only.

- A person makes a **setup token** (``POST /api/v1/simplefin/setup-tokens``): the base64 of a
  claim URL, ``{API_BASE_URL}/simplefin/claim/<token>``, good once for
  ``SIMPLEFIN_SETUP_TOKEN_MINUTES``. Only the token's SHA-256 is kept.
- The app ``POST``s to the claim URL and gets the **access URL**,
  ``https://<username>:<password>@<host>/simplefin``, once: the claim is one conditional UPDATE,
  so two racing claims give one access. Only the password's SHA-256 is kept (256 random bits).
- ``GET /simplefin/accounts`` with those credentials (HTTP Basic) answers the spec's Account
  Set: v2's ``errlist``, ``connections`` and each account's ``conn_id``, beside v1's ``errors``
  and ``org`` (deprecated by v2, still read by older clients). Wrong or revoked credentials are a
  403, as the spec says; failures back off per username and address, and an address failing
  across many usernames is answered 429 for its failures only (throttle.py): a stale app's
  revoked access never makes another person's valid one wait.
"""

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.audit import service as audit
from dashtam_api.auth import credentials
from dashtam_api.auth import queries as people
from dashtam_api.context import AppContext
from dashtam_api.errors import Forbidden, NotFound, TooManyRequests
from dashtam_api.providers.registry import ProviderSpec
from dashtam_api.simplefin import queries
from dashtam_api.throttle import Throttle
from dashtam_core.config import Settings
from dashtam_models import (
    ConnectionStatus,
    Position,
    ProviderConnection,
    SimplefinAccess,
    SimplefinSetupToken,
    Transaction,
    TransactionStatus,
    User,
)

VERSIONS = ["1.0", "2.0"]
ROOT = "/simplefin"
# Without start-date, this many days of transactions (the spec leaves it to the server).
DEFAULT_DAYS = 90


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def root_url(settings: Settings) -> str:
    return settings.API_BASE_URL.rstrip("/") + ROOT


def organization(spec: ProviderSpec | None, key: str, root: str) -> dict:
    """v1's Organization of an account: with the optional ``domain`` and ``url`` older apps
    (Actual) link to the institution with; Dashtam's own host where its site is not known."""
    site = (spec.website if spec else None) or urlsplit(root).hostname
    return {
        "name": spec.name if spec else key,
        "id": key,
        "sfin-url": root,
        "domain": site,
        "url": f"https://{site}",
    }


# --- setup tokens and claims ----------------------------------------------------------------


async def _owned_accounts(
    session: AsyncSession, user: User, account_ids: list[uuid.UUID] | None
) -> list[uuid.UUID] | None:
    if account_ids is None:
        return None
    wanted = list(dict.fromkeys(account_ids))
    found = await queries.owned_account_ids(session, user_id=user.id, account_ids=wanted)
    missing = [str(a) for a in wanted if a not in found]
    if missing:
        raise NotFound(f"No such account: {', '.join(missing)}.", parameter="account_ids")
    return wanted


async def create_setup_token(
    *,
    session: AsyncSession,
    settings: Settings,
    user: User,
    label: str,
    account_ids: list[uuid.UUID] | None,
    where: dict,
) -> dict:
    accounts = await _owned_accounts(session, user, account_ids)
    token = secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(minutes=settings.SIMPLEFIN_SETUP_TOKEN_MINUTES)
    row = SimplefinSetupToken(
        user_id=user.id,
        token_hash=_sha256(token),
        label=label,
        account_ids=accounts,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    await audit.security(
        session=session,
        action="simplefin_setup_token_created",
        user_id=user.id,
        details={"setup_token_id": str(row.id), "label": label},
        **where,
    )
    claim_url = f"{root_url(settings)}/claim/{token}"
    return {
        "id": row.id,
        "setup_token": base64.b64encode(claim_url.encode()).decode(),
        "claim_url": claim_url,
        "label": label,
        "account_ids": accounts,
        "expires_at": expires_at,
    }


async def claim(*, session: AsyncSession, settings: Settings, token: str, where: dict) -> str:
    """The access URL, once per setup token; a used, expired or unknown one is a 403."""
    claimed = await queries.claim_setup_token(session, token_hash=_sha256(token))
    user = None if claimed is None else await people.user_by_id(session, user_id=claimed.user_id)
    if claimed is None or user is None or not user.is_active:
        raise Forbidden(
            "This setup token does not exist, has expired or was claimed already: if you did "
            "not claim it, make a new one and revoke the access it gave."
        )
    username, password = secrets.token_hex(16), secrets.token_urlsafe(32)
    access = SimplefinAccess(
        user_id=claimed.user_id,
        setup_token_id=claimed.id,
        label=claimed.label,
        username=username,
        secret_hash=_sha256(password),
        account_ids=claimed.account_ids,
        claimed_ip=where.get("ip"),
    )
    session.add(access)
    await session.flush()
    await audit.security(
        session=session,
        action="simplefin_access_claimed",
        user_id=claimed.user_id,
        details={"access_id": str(access.id), "setup_token_id": str(claimed.id)},
        **where,
    )
    base = urlsplit(root_url(settings))
    return f"{base.scheme}://{username}:{password}@{base.netloc}{base.path}"


# --- reading with an access URL ---------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


async def authenticate(
    *,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    credentials: Credentials | None,
    ip: str | None,
) -> tuple[SimplefinAccess, User]:
    """The access these credentials open, its use recorded; else 403 (429 while this username
    must wait from this address, or for a failure from an address failing across many)."""
    if credentials is None:
        raise Forbidden("HTTP Basic credentials from a claimed access URL are required.")
    username = credentials.username
    throttle = Throttle(
        redis=redis, settings=settings, scope="simplefin", credential=username, address=ip
    )
    await throttle.check("Too many failed attempts; try again later.")
    access = await queries.open_access(session, username=credentials.username)
    user = None if access is None else await people.user_by_id(session, user_id=access.user_id)
    if (
        access is None
        or user is None
        or not user.is_active
        or not hmac.compare_digest(access.secret_hash, _sha256(credentials.password))
    ):
        # A name never handed out has no password to guess: only the address counts it, so
        # guesses at made-up names leave no keys behind per name (a revoked one still counts).
        issued = access is not None or await queries.username_was_issued(session, username=username)
        address_wait = await throttle.failed(known_credential=issued)
        if address_wait:
            raise TooManyRequests(
                "Too many failed attempts from this address; wait before trying again "
                "(valid credentials are still accepted).",
                retry_after=address_wait,
            )
        raise Forbidden("Authentication failed: the access was revoked or is not this one.")
    await throttle.succeeded()
    now = datetime.now(UTC)
    if (
        access.last_used_at is None
        or now - access.last_used_at > timedelta(minutes=1)
        or (access.last_used_ip != ip)
    ):
        access.last_used_at, access.last_used_ip = now, ip
    return access, user


@dataclass(frozen=True)
class AccountsQuery:
    start: datetime | None = None
    end: datetime | None = None
    pending: bool = False
    accounts: tuple[str, ...] = ()
    balances_only: bool = False


def _epoch(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment is not None else 0


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


async def account_set(
    *, ctx: AppContext, session: AsyncSession, access: SimplefinAccess, query: AccountsQuery
) -> dict:
    """The spec's Account Set for this access."""
    root = root_url(ctx.settings)
    wanted = None
    if query.accounts:
        wanted = [w for w in (_uuid(a) for a in query.accounts) if w is not None]
    rows = await queries.accounts_with_balances(
        session, user_id=access.user_id, only=access.account_ids, wanted=wanted
    )

    connections: dict[uuid.UUID, dict] = {}
    errlist: list[dict] = []
    accounts = []
    for account, connection, provider, as_of, current, available in rows:
        conn_id = str(connection.id)
        spec = ctx.registry.get(provider.provider_key)
        org_name = spec.name if spec else provider.provider_key
        name = f"{org_name} - {provider.alias}" if provider.alias != org_name else org_name
        if connection.id not in connections:
            connections[connection.id] = {
                "conn_id": conn_id,
                "name": name,
                "org_id": provider.provider_key,
                "org_name": org_name,
                "sfin_url": root,
            }
            errlist += _connection_errors(connection, conn_id, name)
        item = {
            "org": organization(spec, provider.provider_key, root),
            "id": str(account.id),
            "name": account.name,
            "conn_id": conn_id,
            "conn_name": name,
            "currency": account.currency,
            "balance": _decimal(current) if current is not None else "0",
            "balance-date": _epoch(as_of or account.synced_at),
        }
        if available is not None and available != current:
            item["available-balance"] = _decimal(available)
        if account.closed_at is not None:
            item["extra"] = {"closed": _epoch(account.closed_at)}
        accounts.append(item)
    if not query.balances_only and accounts:
        by_account = {a["id"]: a for a in accounts}
        for a in accounts:
            a["transactions"], a["holdings"] = [], []
        for transaction in await _transactions(session, access, query, list(by_account)):
            by_account[str(transaction.account_id)]["transactions"].append(
                _transaction(transaction)
            )
        positions = await queries.positions(session, account_ids=[uuid.UUID(a) for a in by_account])
        for position in positions:
            by_account[str(position.account_id)]["holdings"].append(_holding(position))
    return {
        "errlist": errlist,
        "errors": [e["msg"] for e in errlist],
        "connections": list(connections.values()),
        "accounts": accounts,
    }


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None  # an id that is no account of ours matches none


def _connection_errors(connection: ProviderConnection, conn_id: str, name: str) -> list[dict]:
    if connection.status in (ConnectionStatus.EXPIRED, ConnectionStatus.REVOKED):
        return [
            {
                "code": "con.auth",
                "msg": f"{name}: its authorization has ended; reconnect it in Dashtam.",
                "conn_id": conn_id,
            }
        ]
    if connection.status == ConnectionStatus.ERROR or connection.sync_error:
        why = connection.sync_error or connection.error_message or "an error"
        return [
            {
                "code": "con.",
                "msg": f"{name}: the last sync failed ({why}); the data may be out of date.",
                "conn_id": conn_id,
            }
        ]
    return []


async def _transactions(
    session: AsyncSession, access: SimplefinAccess, query: AccountsQuery, account_ids: list[str]
) -> list[Transaction]:
    start = query.start or datetime.now(UTC) - timedelta(days=DEFAULT_DAYS)
    statuses = [TransactionStatus.POSTED] + ([TransactionStatus.PENDING] if query.pending else [])
    return await queries.transactions(
        session,
        user_id=access.user_id,
        account_ids=[uuid.UUID(a) for a in account_ids],
        statuses=statuses,
        start=start,
        end=query.end,
    )


def _transaction(t: Transaction) -> dict:
    pending = t.status == TransactionStatus.PENDING
    item = {
        "id": str(t.id),
        "posted": 0 if pending else _epoch(t.posted_at or t.occurred_at),
        "amount": _decimal(t.amount),
        "description": t.description,
        "payee": t.payee or "",
        "memo": t.memo or "",
        "transacted_at": _epoch(t.transacted_at or t.occurred_at),
    }
    if pending:
        item["pending"] = True
    extra = {
        k: v
        for k, v in {
            "kind": t.kind,
            "symbol": t.symbol,
            "quantity": _decimal(t.quantity),
            "price": _decimal(t.price),
            "fees": _decimal(t.fees),
        }.items()
        if v is not None
    }
    if extra:
        item["extra"] = extra
    return item


def _holding(p: Position) -> dict:
    """The SimpleFIN Bridge's holding (the spec has none; apps that read holdings read this)."""
    return {
        "id": str(p.id),
        "created": _epoch(p.as_of),
        "currency": p.currency,
        "cost_basis": _decimal(p.cost_basis) or "0",
        "description": p.description or p.symbol,
        "market_value": _decimal(p.market_value),
        "purchase_price": _decimal(p.cost_basis / p.quantity)
        if p.cost_basis and p.quantity
        else "0",
        "shares": _decimal(p.quantity),
        "symbol": p.symbol,
    }


# --- the person's view --------------------------------------------------------------------------


def _access_out(access: SimplefinAccess) -> dict:
    return {
        "id": access.id,
        "label": access.label,
        "account_ids": access.account_ids,
        "created_at": access.created_at,
        "claimed_ip": access.claimed_ip,
        "last_used_at": access.last_used_at,
        "last_used_ip": access.last_used_ip,
        "revoked_at": access.revoked_at,
    }


async def listed(*, session: AsyncSession, user: User) -> dict:
    return {"items": [_access_out(a) for a in await queries.accesses(session, user_id=user.id)]}


async def revoke(*, session: AsyncSession, user: User, access_id: uuid.UUID, where: dict) -> None:
    await credentials.revoke(
        session=session,
        user=user,
        credential=await queries.access(session, access_id=access_id),
        missing="No such SimpleFIN access.",
        action="simplefin_access_revoked",
        id_key="access_id",
        where=where,
    )
