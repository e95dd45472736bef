"""Every statement of Dashtam's SimpleFIN server: setup tokens and their claims, accesses, and
what an Account Set reads (accounts with their latest balance, holdings, transactions)."""

import uuid
from datetime import datetime

from sqlalchemy import func, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_models import (
    Account,
    BalanceSnapshot,
    Position,
    Provider,
    ProviderConnection,
    SimplefinAccess,
    SimplefinSetupToken,
    Transaction,
    TransactionStatus,
)


async def owned_account_ids(
    session: AsyncSession, *, user_id: uuid.UUID, account_ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of these accounts that are the person's."""
    return set(
        (
            await session.scalars(
                select(Account.id).where(Account.user_id == user_id, Account.id.in_(account_ids))
            )
        ).all()
    )


async def claim_setup_token(
    session: AsyncSession, *, token_hash: str
) -> SimplefinSetupToken | None:
    """Mark the unclaimed, unexpired setup token with this hash claimed, in one conditional
    UPDATE (two racing claims: one wins); None if there is no such token."""
    return (
        await session.execute(
            update(SimplefinSetupToken)
            .where(
                SimplefinSetupToken.token_hash == token_hash,
                SimplefinSetupToken.claimed_at.is_(None),
                SimplefinSetupToken.expires_at > func.now(),
            )
            .values(claimed_at=func.now())
            .returning(SimplefinSetupToken)
        )
    ).scalar_one_or_none()


async def open_access(session: AsyncSession, *, username: str) -> SimplefinAccess | None:
    """The unrevoked access with this username."""
    return await session.scalar(
        select(SimplefinAccess).where(
            SimplefinAccess.username == username,
            SimplefinAccess.revoked_at.is_(None),
        )
    )


async def username_was_issued(session: AsyncSession, *, username: str) -> bool:
    """Whether an access with this username was ever handed out (revoked or not)."""
    found = await session.scalar(
        select(SimplefinAccess.id).where(SimplefinAccess.username == username).limit(1)
    )
    return found is not None


async def accesses(session: AsyncSession, *, user_id: uuid.UUID) -> list[SimplefinAccess]:
    """The person's accesses, the newest first."""
    rows = await session.scalars(
        select(SimplefinAccess)
        .where(SimplefinAccess.user_id == user_id)
        .order_by(SimplefinAccess.created_at.desc(), SimplefinAccess.id)
    )
    return list(rows)


async def access(session: AsyncSession, *, access_id: uuid.UUID) -> SimplefinAccess | None:
    """The access with this id, whoever's it is."""
    return await session.get(SimplefinAccess, access_id)


async def accounts_with_balances(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    only: list[uuid.UUID] | None,
    wanted: list[uuid.UUID] | None,
) -> list:
    """(account, connection, provider, as_of, current, available) of the person's accounts,
    each with its latest balance, by provider alias and account name; only those in ``only``
    (what the access may read) and in ``wanted`` (what the app asked for), when given."""
    latest = (
        select(BalanceSnapshot)
        .where(BalanceSnapshot.account_id == Account.id)
        .order_by(BalanceSnapshot.as_of.desc())
        .limit(1)
        .lateral("latest")
    )
    statement = (
        select(Account, ProviderConnection, Provider, latest.c.as_of, latest.c.current)
        .add_columns(latest.c.available)
        .join(ProviderConnection, ProviderConnection.id == Account.connection_id)
        .join(Provider, Provider.id == ProviderConnection.provider_id)
        .outerjoin(latest, true())
        .where(Account.user_id == user_id)
        .order_by(Provider.alias, Account.name, Account.id)
    )
    if only is not None:
        statement = statement.where(Account.id.in_(only))
    if wanted is not None:
        statement = statement.where(Account.id.in_(wanted))
    return list((await session.execute(statement)).all())


async def positions(session: AsyncSession, *, account_ids: list[uuid.UUID]) -> list[Position]:
    """The positions held in these accounts, by symbol."""
    rows = await session.scalars(
        select(Position).where(Position.account_id.in_(account_ids)).order_by(Position.symbol)
    )
    return list(rows)


async def transactions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_ids: list[uuid.UUID],
    statuses: list[TransactionStatus],
    start: datetime,
    end: datetime | None,
) -> list[Transaction]:
    """The person's transactions in these accounts with these statuses, from ``start`` to
    before ``end``, by account and time."""
    statement = (
        select(Transaction)
        .where(
            Transaction.user_id == user_id,
            Transaction.account_id.in_(account_ids),
            Transaction.status.in_(statuses),
            Transaction.occurred_at >= start,
        )
        .order_by(Transaction.account_id, Transaction.occurred_at, Transaction.id)
    )
    if end is not None:
        statement = statement.where(Transaction.occurred_at < end)
    return list((await session.scalars(statement)).all())
