"""The refresh's claim on a connection, with two real transactions on one database."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from dashtam_api.connections import refresh
from dashtam_api.context import AppContext
from dashtam_api.sandbox.seed import connected_sandbox
from dashtam_models import ProviderConnection, ProviderToken

# Real commits: every test takes `session` (through `connection`), which truncates afterwards.
pytestmark = pytest.mark.commits


@pytest.fixture
async def ctx(worker_settings):
    context = AppContext.open(worker_settings)
    yield context
    await context.close()


async def _one_due_connection(ctx: AppContext):
    async with ctx.sessions() as seeding:
        (one,) = await connected_sandbox(ctx, seeding, count=1, expires_in=60)
        await seeding.commit()
    return one.connection_id


async def _until_someone_waits_for_a_lock(session, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        waiting = await session.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
        await session.commit()
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("nobody waited for the lock")


async def _refresh_in_own_transaction(ctx, connection_id, **kwargs) -> refresh.Outcome:
    async with ctx.sessions() as session:
        outcome = await refresh.refresh(
            ctx, session, connection_id, trigger=refresh.Trigger.BACKGROUND, **kwargs
        )
        await session.commit()
    return outcome


async def test_a_refresh_that_waited_for_the_lock_sees_what_the_holder_committed(ctx, session):
    """The holder refreshes while the waiter queues; once it has the lock, the waiter must see
    the new token (not the row it would have read when it started waiting) and do nothing:
    presenting the old, rotated-out refresh token again would break the connection."""
    connection_id = await _one_due_connection(ctx)
    deadline = datetime.now(UTC) + timedelta(minutes=5)
    async with ctx.sessions() as holder:
        await holder.execute(
            select(ProviderConnection.id)
            .where(ProviderConnection.id == connection_id)
            .with_for_update()
        )
        waiter = asyncio.create_task(
            _refresh_in_own_transaction(ctx, connection_id, due_before=deadline)
        )
        await _until_someone_waits_for_a_lock(session)
        refreshed_at = datetime.now(UTC)
        await holder.execute(
            update(ProviderToken)
            .where(ProviderToken.connection_id == connection_id)
            .values(expires_at=refreshed_at + timedelta(minutes=30))
        )
        await holder.execute(
            update(ProviderConnection)
            .where(ProviderConnection.id == connection_id)
            .values(last_refreshed_at=refreshed_at)
        )
        await holder.commit()
    outcome = await asyncio.wait_for(waiter, 30)
    assert outcome.kind is refresh.Kind.NOT_DUE


async def test_the_refresher_passes_over_a_locked_connection(ctx, session):
    """The refresher's claim (SKIP LOCKED) does not wait for a connection someone holds: with
    the only due connection locked, there is nothing to claim."""
    connection_id = await _one_due_connection(ctx)
    now = datetime.now(UTC)
    async with ctx.sessions() as holder:
        await holder.execute(
            select(ProviderConnection.id)
            .where(ProviderConnection.id == connection_id)
            .with_for_update()
        )
        async with ctx.sessions() as claimer:
            claimed = await asyncio.wait_for(
                refresh.refresh_next_due(
                    ctx, claimer, due_before=now + timedelta(minutes=5), round_started=now
                ),
                10,
            )
            await claimer.commit()
        await holder.rollback()
    assert claimed is None
