"""The refresher and the sync loop: rounds over the due connections, each claimed exactly once.

Any number of processes may run them against one database. A round lists the due connections
(without locking), then works through them a few at a time, each in its own transaction that
claims the connection first (refresh: the row lock, ``SKIP LOCKED``; sync: a lease) and decides
again under the claim, so a connection another process has just handled is passed over. The
list is shuffled within the round, so that processes starting together spread out instead of
queueing on the same rows.
"""

import asyncio
import logging
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from dashtam_api.audit import service as audit
from dashtam_api.connections import refresh
from dashtam_api.context import AppContext
from dashtam_api.sync import service as sync

log = logging.getLogger("dashtam.jobs")

# How many due connections one round looks at; the rest wait for the next round.
ROUND_SIZE = 1000

DUE_FOR_REFRESH = text(
    """
    SELECT c.id FROM provider_connections c
      JOIN provider_tokens t ON t.connection_id = c.id
     WHERE c.status = 'active'
       AND t.refresh_token_encrypted IS NOT NULL
       AND t.expires_at <= :deadline
       AND (t.refresh_expires_at IS NULL OR t.refresh_expires_at > now())
       AND (c.refresh_not_before IS NULL OR c.refresh_not_before <= now())
     ORDER BY t.expires_at
     LIMIT :limit
    """
)

# Connections that no refresh can save: mark them expired (one statement, locked rows skipped).
EXPIRE_LAPSED = text(
    """
    WITH lapsed AS (
        SELECT c.id, c.provider_id, p.user_id,
               coalesce(t.refresh_expires_at, t.expires_at) AS deadline
          FROM provider_connections c
          JOIN provider_tokens t ON t.connection_id = c.id
          JOIN providers p ON p.id = c.provider_id
         WHERE c.status = 'active'
           AND (t.refresh_expires_at <= now()
                OR (t.refresh_token_encrypted IS NULL AND t.expires_at <= now()))
           FOR UPDATE OF c SKIP LOCKED
    )
    UPDATE provider_connections c
       SET status = 'expired', refresh_not_before = NULL, updated_at = now(),
           error_message = 'the authorization expired at ' || lapsed.deadline
                           || '; reconnect to continue'
      FROM lapsed
     WHERE c.id = lapsed.id
    RETURNING c.id, lapsed.provider_id, lapsed.user_id, lapsed.deadline
    """
)


async def expire_lapsed(ctx: AppContext) -> int:
    async with ctx.sessions() as session:
        rows = (await session.execute(EXPIRE_LAPSED)).all()
        for connection_id, provider_id, user_id, deadline in rows:
            await audit.record(
                session=session,
                action="expired",
                details={"reconnect_by": deadline.isoformat() if deadline else None},
                user_id=user_id,
                provider_id=provider_id,
                connection_id=connection_id,
            )
        await session.commit()
    return len(rows)


async def _due_ids(ctx: AppContext, query, **params) -> list[uuid.UUID]:
    async with ctx.sessions() as session:
        ids = list((await session.scalars(query, {**params, "limit": ROUND_SIZE})).all())
        await session.commit()
    random.shuffle(ids)
    return ids


async def _each(ctx: AppContext, ids: list[uuid.UUID], work: Callable[[uuid.UUID], Awaitable]):
    """Run work for every id, at most REFRESH_CONCURRENCY at a time; results in a Counter."""
    limit = asyncio.Semaphore(ctx.settings.REFRESH_CONCURRENCY)
    counts: Counter = Counter()

    async def one(connection_id: uuid.UUID) -> None:
        async with limit:
            try:
                counts[await work(connection_id)] += 1
            except Exception:  # one connection's surprise must not stop the round
                log.exception("job on connection %s failed", connection_id)
                counts["crashed"] += 1

    await asyncio.gather(*(one(i) for i in ids))
    return counts


async def refresh_round(ctx: AppContext) -> Counter:
    """One pass of the refresher: expire what lapsed, refresh what expires within the window."""
    counts: Counter = Counter()
    counts["expired"] += await expire_lapsed(ctx)
    deadline = datetime.now(UTC) + timedelta(seconds=ctx.settings.REFRESH_WINDOW_SECONDS)
    ids = await _due_ids(ctx, DUE_FOR_REFRESH, deadline=deadline)

    async def work(connection_id: uuid.UUID) -> str:
        async with ctx.sessions() as session:
            outcome = await refresh.refresh(
                ctx,
                session,
                connection_id,
                trigger=refresh.Trigger.BACKGROUND,
                due_before=deadline,
                skip_locked=True,
            )
            await session.commit()
        return outcome.kind.value

    counts.update(await _each(ctx, ids, work))
    return counts


async def sync_round(ctx: AppContext) -> Counter:
    """One pass of the sync loop over the connections whose last sync is a period old."""
    ids = await _due_ids(
        ctx,
        sync.DUE_FOR_SYNC,
        stale_before=datetime.now(UTC) - timedelta(seconds=ctx.settings.SYNC_INTERVAL_SECONDS),
        keys=sync.syncable_keys(ctx),
    )

    async def work(connection_id: uuid.UUID) -> str:
        result = await sync.sync_connection(
            ctx, connection_id, trigger=refresh.Trigger.BACKGROUND, stale_only=True
        )
        return result.kind

    return await _each(ctx, ids, work)


# Outcomes that mean "there was work": an idle round has none of them.
BUSY_OUTCOMES = {"refreshed", "failed", "busy", "expired", "synced", "sync_failed", "claimed"}


async def until_idle(
    round_: Callable[[AppContext], Awaitable[Counter]], ctx: AppContext, *, pause: float = 0.2
) -> Counter:
    """Run rounds until one finds nothing to do; the total of every round's outcomes."""
    total: Counter = Counter()
    while True:
        counts = await round_(ctx)
        total.update(counts)
        if not any(counts[k] for k in BUSY_OUTCOMES):
            return total
        if counts["busy"] or counts["claimed"]:
            await asyncio.sleep(pause)  # others hold some: let them finish before looking again


class Jobs:
    """The loops of one process, started with it and cancelled when it stops."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        settings = self.ctx.settings
        self._tasks = [
            asyncio.create_task(
                self._forever("refresh", refresh_round, settings.REFRESH_INTERVAL_SECONDS)
            ),
            asyncio.create_task(
                self._forever("sync", sync_round, settings.REFRESH_INTERVAL_SECONDS)
            ),
        ]

    async def _forever(self, name: str, round_, interval: float) -> None:
        while True:
            try:
                counts = await round_(self.ctx)
                if any(counts[k] for k in BUSY_OUTCOMES):
                    log.info("%s round: %s", name, dict(counts))
            except asyncio.CancelledError:
                raise
            except Exception:  # the database restarting, Valkey away: try again next time
                log.exception("%s round failed; retrying in %.0fs", name, interval)
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))  # noqa: S311 -- jitter

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
