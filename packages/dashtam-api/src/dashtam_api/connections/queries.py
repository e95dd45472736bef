"""The statements of a provider's connection: its token, its state, its refresh (under the
connection's row lock, connections/refresh.py)."""

import uuid
from datetime import datetime

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_models import ConnectionStatus, Provider, ProviderConnection, ProviderToken, SyncRun


async def connection_by_id(
    session: AsyncSession, *, connection_id: uuid.UUID
) -> ProviderConnection | None:
    """The connection, by its id."""
    return await session.get(ProviderConnection, connection_id)


async def error_unless_active(
    session: AsyncSession, *, connection_id: uuid.UUID, message: str
) -> None:
    """The connection turns ``error`` with ``message``, unless it is ``active`` when the row is
    written (one another request made active meanwhile stays so)."""
    await session.execute(
        update(ProviderConnection)
        .where(
            ProviderConnection.id == connection_id,
            ProviderConnection.status != ConnectionStatus.ACTIVE.value,
        )
        .values(status=ConnectionStatus.ERROR.value, error_message=message)
        .execution_options(synchronize_session=False)
    )


async def lock_connection(session: AsyncSession, *, connection: ProviderConnection) -> None:
    """The connection's row locked and read again, as every writer of its tokens does."""
    await session.refresh(connection, with_for_update=True)


async def token_of(
    session: AsyncSession, *, connection_id: uuid.UUID, fresh: bool = False
) -> ProviderToken | None:
    """The connection's token row (``fresh``: read anew even if the session holds it)."""
    query = select(ProviderToken).where(ProviderToken.connection_id == connection_id)
    if fresh:
        query = query.execution_options(populate_existing=True)
    return await session.scalar(query)


async def last_sync_status(session: AsyncSession, *, connection_id: uuid.UUID) -> str | None:
    """The status of the connection's newest sync run; None before the first."""
    return await session.scalar(
        select(SyncRun.status)
        .where(SyncRun.connection_id == connection_id)
        .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
        .limit(1)
    )


# --- the refresh (connections/refresh.py) -----------------------------------------------------


async def connection_provider_token(
    session: AsyncSession, *, connection_id: uuid.UUID
) -> tuple[ProviderConnection, Provider, ProviderToken | None] | None:
    """The connection with its provider and token, read anew in a statement of its own."""
    row = (
        await session.execute(
            select(ProviderConnection, Provider, ProviderToken)
            .join(Provider, Provider.id == ProviderConnection.provider_id)
            .outerjoin(ProviderToken, ProviderToken.connection_id == ProviderConnection.id)
            .where(ProviderConnection.id == connection_id)
            .execution_options(populate_existing=True)
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2])


async def set_lock_timeouts(session: AsyncSession, *, wait: str, hold: str) -> None:
    """For this transaction only: wait at most ``wait`` for a lock, and end the transaction
    when it stays idle ``hold`` (PostgreSQL intervals, ``5000ms``)."""
    await session.execute(
        text(
            "SELECT set_config('lock_timeout', :wait, true), "
            "set_config('idle_in_transaction_session_timeout', :hold, true)"
        ),
        {"wait": wait, "hold": hold},
    )


async def lock_connection_row(
    session: AsyncSession, *, connection_id: uuid.UUID
) -> uuid.UUID | None:
    """The connection's row locked (waiting for it); its id, None when it is not there."""
    return await session.scalar(
        select(ProviderConnection.id)
        .where(ProviderConnection.id == connection_id)
        .with_for_update()
    )


async def claim_due_for_refresh(
    session: AsyncSession, *, due_before: datetime, round_started: datetime, hold: str
) -> uuid.UUID | None:
    """The most urgent connection due for a refresh that nobody holds and this round has not
    refreshed yet, its row locked (``SKIP LOCKED``) and the transaction's idle limit set to
    ``hold``; None when none is left."""
    claimed = (
        await session.execute(
            select(
                ProviderConnection.id,
                func.set_config("idle_in_transaction_session_timeout", hold, True),
            )
            .join(ProviderToken, ProviderToken.connection_id == ProviderConnection.id)
            .where(
                ProviderConnection.status == ConnectionStatus.ACTIVE.value,
                ProviderToken.refresh_token_encrypted.is_not(None),
                ProviderToken.expires_at <= due_before,
                or_(
                    ProviderToken.refresh_expires_at.is_(None),
                    ProviderToken.refresh_expires_at > func.now(),
                ),
                or_(
                    ProviderConnection.refresh_not_before.is_(None),
                    ProviderConnection.refresh_not_before <= func.now(),
                ),
                or_(
                    ProviderConnection.last_refreshed_at.is_(None),
                    ProviderConnection.last_refreshed_at < round_started,
                ),
            )
            .order_by(ProviderToken.expires_at)
            .limit(1)
            .with_for_update(of=ProviderConnection, skip_locked=True)
        )
    ).first()
    return None if claimed is None else claimed[0]
