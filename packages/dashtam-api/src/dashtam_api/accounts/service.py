"""Reading a person's accounts, balances and positions; syncing a provider on demand."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.accounts import queries
from dashtam_api.connections import refresh
from dashtam_api.connections.service import institution_name, raise_for
from dashtam_api.context import AppContext
from dashtam_api.errors import Conflict, NotFound, TooManyRequests, UpstreamError
from dashtam_api.providers import service as providers
from dashtam_api.sources.protocol import Kind
from dashtam_api.sync import service as sync
from dashtam_api.unit_of_work import end_read
from dashtam_core.database import Reader
from dashtam_models import Account, BalanceSnapshot, User


def _out(account: Account, provider_id: uuid.UUID, balance: BalanceSnapshot | None) -> dict:
    return {
        "id": account.id,
        "provider_id": provider_id,
        "name": account.name,
        "account_type": account.account_type,
        "number_masked": f"••••{account.number_last4}" if account.number_last4 else None,
        "currency": account.currency,
        "synced_at": account.synced_at,
        "closed_at": account.closed_at,
        "balance": None
        if balance is None
        else {
            "as_of": balance.as_of,
            "currency": balance.currency,
            "current": balance.current,
            "available": balance.available,
            "cash": balance.cash,
            "buying_power": balance.buying_power,
        },
    }


async def create_manual(*, ctx: AppContext, session: AsyncSession, user: User, body) -> dict:
    """A manual account under a provider of kind file (the person's own, or their 'Manual
    accounts' one), with its opening balance when given."""
    if body.provider_id is None:
        provider, connection = await providers.files_provider(
            session=session, user=user, registry=ctx.registry
        )
    else:
        provider, connection = await providers.get_owned(
            session=session, user=user, provider_id=body.provider_id
        )
        spec = ctx.registry.get(provider.provider_key)
        if spec is None or spec.kind is not Kind.FILE:
            raise Conflict(
                f"The accounts of {institution_name(ctx, provider)} come from its syncs: "
                "give a provider of kind file, or none.",
                provider_key=provider.provider_key,
            )
    now = datetime.now(UTC)
    account = Account(
        user_id=user.id,
        connection_id=connection.id,
        external_id=f"manual:{uuid.uuid4()}",
        account_type=body.account_type,
        name=body.name,
        currency=body.currency,
        synced_at=now,
    )
    session.add(account)
    await session.flush()
    balance = None
    if body.opening_balance is not None:
        balance = BalanceSnapshot(
            account_id=account.id,
            as_of=now,
            currency=body.currency,
            current=Decimal(body.opening_balance),
        )
        session.add(balance)
        await session.flush()
    return _out(account, provider.id, balance)


async def page(
    *,
    session: AsyncSession,
    user: User,
    limit: int,
    offset: int,
    connection_id: uuid.UUID | None = None,
) -> dict:
    """The person's accounts (of one connection, or all), each with its newest balance, and
    their total in the same statement (a window count; a page past the end counts apart)."""
    rows = await queries.accounts_page(
        session, user_id=user.id, limit=limit, offset=offset, connection_id=connection_id
    )
    if rows:
        total = rows[0].total
    elif offset:
        total = await queries.accounts_count(session, user_id=user.id, connection_id=connection_id)
    else:
        total = 0
    return {
        "items": [_out(a, p, b) for a, p, b, _ in rows],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


async def provider_accounts(
    *, session: AsyncSession, user: User, provider_id: uuid.UUID, limit: int, offset: int
) -> dict:
    _, connection = await providers.get_owned(session=session, user=user, provider_id=provider_id)
    return await page(
        session=session, user=user, limit=limit, offset=offset, connection_id=connection.id
    )


async def _owned_account(session: AsyncSession, user: User, account_id: uuid.UUID):
    row = await queries.account_for_owner(session, user_id=user.id, account_id=account_id)
    if row is None:
        raise NotFound("No such account.")
    return row


async def get(*, reader: Reader, user_id: uuid.UUID, account_id: uuid.UUID) -> bytes:
    """The account as the JSON of schemas.AccountOut."""
    row = await queries.account_row(reader, user_id=user_id, account_id=account_id)
    if row["id"] is None:
        raise NotFound("No such account.")
    balance = None
    if row["as_of"] is not None:
        balance = {
            "as_of": row["as_of"],
            "currency": row["balance_currency"],
            "current": row["current"],
            "available": row["available"],
            "cash": row["cash"],
            "buying_power": row["buying_power"],
        }
    return to_json(
        {
            # Strings: asyncpg's UUID type takes pydantic_core's slow path.
            "id": str(row["id"]),
            "provider_id": str(row["provider_id"]),
            "name": row["name"],
            "account_type": row["account_type"],
            "number_masked": f"••••{row['number_last4']}" if row["number_last4"] else None,
            "currency": row["currency"],
            "synced_at": row["synced_at"],
            "closed_at": row["closed_at"],
            "balance": balance,
        }
    )


async def positions(*, session: AsyncSession, user: User, account_id: uuid.UUID) -> dict:
    account, _, _ = await _owned_account(session, user, account_id)
    held = await queries.positions_of(session, account_id=account.id)
    return {
        "account_id": account.id,
        "as_of": held[0].as_of if held else None,
        "items": [
            {
                "symbol": p.symbol,
                "description": p.description,
                "asset_type": p.asset_type,
                "quantity": p.quantity,
                "price": p.price,
                "market_value": p.market_value,
                "cost_basis": p.cost_basis,
                "currency": p.currency,
                "as_of": p.as_of,
            }
            for p in held
        ],
    }


async def sync_now(
    *,
    ctx: AppContext,
    session: AsyncSession,
    user: User,
    provider_id: uuid.UUID,
    present: dict | None = None,
) -> dict:
    """Pull accounts, balances and positions from the institution now (``present``: the
    person asking, their ``ip`` and ``user_agent``, which a PSD2 bank may want)."""
    provider, connection = await providers.get_owned(
        session=session, user=user, provider_id=provider_id
    )
    spec = ctx.registry.get(provider.provider_key)
    name = institution_name(ctx, provider)
    if spec is not None and spec.kind is Kind.FILE:
        raise Conflict(
            f"{name} has nothing to sync: its accounts are fed by the files you import "
            "(POST /api/v1/accounts/{id}/imports).",
            provider_key=provider.provider_key,
        )
    if spec is None or spec.source is None:
        raise Conflict(
            f"{name} has no data API Dashtam knows: its accounts cannot be synced "
            "(the sandbox and Charles Schwab can).",
            provider_key=provider.provider_key,
        )
    # End the request's read first: the sync runs its own short transactions around the
    # institution's calls, and the request holds no pooled connection meanwhile.
    await end_read(session)
    result = await sync.sync_connection(
        ctx, connection.id, trigger=refresh.Trigger.ON_DEMAND, stale_only=False, present=present
    )
    if result.kind == "synced":
        return {
            "provider_id": provider.id,
            "synced_at": result.synced_at,
            "accounts": result.accounts,
            "positions": result.positions,
            "transactions": vars(result.transactions),
            "refreshed": result.refreshed,
            "run_id": result.run_id,
        }
    if result.kind == "claimed":
        raise Conflict(
            "A sync of this connection is running; try again shortly.",
            headers={"Retry-After": "5"},
        )
    if result.kind == "over_budget":
        wait = max(int((result.retry_at - datetime.now(UTC)).total_seconds()) + 1, 1)
        raise TooManyRequests(
            f"{name} allows only so many requests a day and this connection's are spent: the "
            f"next sync may run at {result.retry_at.isoformat()}.",
            retry_after=wait,
        )
    if result.refresh_outcome is not None:
        raise_for(result.refresh_outcome, spec_name=name)
    if result.kind in ("inactive", "unsupported"):
        action = "connect" if result.status in ("pending", "revoked") else "reconnect"
        raise Conflict(
            f"This connection is {result.status}: {action} it to sync.",
            connection_status=result.status,
            action=action,
        )
    if result.status in ("error", "expired"):  # only the person can mend it: say so
        raise UpstreamError(
            f"{name} refused the sync ({result.error}): {result.error_description}.",
            institution_error=result.error,
            transient=False,
            connection_status=result.status,
            action="reconnect",
        )
    raise UpstreamError(
        f"{name} did not answer the sync ({result.error}).",
        institution_error=result.error,
        transient=result.transient,
    )
