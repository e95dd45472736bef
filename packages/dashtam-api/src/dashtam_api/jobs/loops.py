"""The refresher and the sync loop: rounds over the due connections, each claimed exactly once.

Any number of processes may run them against one database.

- Refresher round: a few workers per process, each in a loop of one transaction per
  connection: claim the most urgent due connection nobody holds (one ``SELECT ... FOR UPDATE
  SKIP LOCKED``), decide again under the lock, refresh, commit. Processes never wait on each
  other's rows and never look at a connection twice (connections/refresh.py).
- Webhooks: deliveries due in the outbox, claimed with a lease and sent (webhooks/dispatch.py);
  a commit that writes one wakes the dispatchers at once (NOTIFY).
- Sync round: the due connections are listed (without locking), shuffled so that processes
  starting together spread out, and each is claimed with a lease before it is synced
  (sync/service.py); one another process holds is passed over.
"""

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from dashtam_api.audit import service as audit
from dashtam_api.connections import refresh
from dashtam_api.context import AppContext
from dashtam_api.jobs import queries
from dashtam_api.sync import runs
from dashtam_api.sync import service as sync
from dashtam_api.webhooks import dispatch, notices
from dashtam_core.lost_dependencies import lost_dependency

log = logging.getLogger("dashtam.jobs")

# How many due connections one round looks at; the rest wait for the next round.
ROUND_SIZE = 1000
# Finished webhook deliveries past their retention are looked for this often.
PRUNE_EVERY_SECONDS = 3600.0


async def expire_lapsed(ctx: AppContext) -> int:
    async with ctx.sessions() as session:
        rows = await queries.expire_lapsed(session)
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
        ids = await queries.due_ids(session, query, **params, limit=ROUND_SIZE)
        await session.commit()
    random.shuffle(ids)
    return ids


async def _each(
    ctx: AppContext,
    ids: list[uuid.UUID],
    work: Callable[[uuid.UUID], Awaitable],
    stopping: asyncio.Event | None = None,
):
    """Run work for every id, at most REFRESH_CONCURRENCY at a time; results in a Counter.
    Once ``stopping`` is set, no new work starts (what runs finishes)."""
    limit = asyncio.Semaphore(ctx.settings.REFRESH_CONCURRENCY)
    counts: Counter = Counter()

    async def one(connection_id: uuid.UUID) -> None:
        async with limit:
            if stopping is not None and stopping.is_set():
                return
            try:
                counts[await work(connection_id)] += 1
            except Exception as exc:  # one connection's surprise must not stop the round
                if lost_dependency(exc):  # ours, not the connection's: it stays due
                    counts["unavailable"] += 1
                else:
                    log.exception("job on connection %s failed", connection_id)
                    counts["crashed"] += 1

    await asyncio.gather(*(one(i) for i in ids))
    return counts


async def refresh_round(ctx: AppContext, stopping: asyncio.Event | None = None) -> Counter:
    """One pass of the refresher: expire what lapsed, then REFRESH_CONCURRENCY workers claim
    and refresh due connections one at a time until none is left that nobody else holds (or
    ``stopping`` is set: a refresh under way always finishes, so no rotated token is lost)."""
    counts: Counter = Counter()
    counts["expired"] += await expire_lapsed(ctx)
    counts["reauth_notices"] += await notices.reauth_required(ctx)
    started = datetime.now(UTC)
    deadline = started + timedelta(seconds=ctx.settings.REFRESH_WINDOW_SECONDS)

    async def worker() -> None:
        while stopping is None or not stopping.is_set():
            try:
                async with ctx.sessions() as session:
                    outcome = await refresh.refresh_next_due(
                        ctx, session, due_before=deadline, round_started=started
                    )
                    await session.commit()
            except Exception as exc:  # this worker stops; the row stays due for next round
                lost = lost_dependency(exc)
                if lost:  # our own database or cache went away: no connection is to blame
                    log.warning("refresh round: the %s is unavailable; next round retries", lost)
                    counts["unavailable"] += 1
                else:
                    log.exception("refresh round: a worker stopped")
                    counts["crashed"] += 1
                return
            if outcome is None:
                return
            counts[outcome.kind.value] += 1

    await asyncio.gather(*(worker() for _ in range(ctx.settings.REFRESH_CONCURRENCY)))
    return counts


async def sync_round(ctx: AppContext, stopping: asyncio.Event | None = None) -> Counter:
    """One pass of the sync loop: runs past their retention deleted, then the connections whose
    last sync is a period old."""
    pruned = await runs.prune(ctx)
    now = datetime.now(UTC)
    ids = await _due_ids(
        ctx,
        sync.DUE_FOR_SYNC,
        stale_before=now - timedelta(seconds=ctx.settings.SYNC_INTERVAL_SECONDS),
        now=now,
        keys=sync.syncable_keys(ctx),
    )

    async def work(connection_id: uuid.UUID) -> str:
        result = await sync.sync_connection(
            ctx, connection_id, trigger=refresh.Trigger.BACKGROUND, stale_only=True
        )
        return result.kind

    counts = await _each(ctx, ids, work, stopping)
    if pruned:
        counts["pruned_runs"] += pruned
    return counts


async def webhooks_round(ctx: AppContext, stopping: asyncio.Event | None = None) -> Counter:
    """Send every webhook delivery that is due (its own pool, closed after)."""
    sender = dispatch.Sender(ctx)
    try:
        return await dispatch.deliver_due(ctx, sender, stopping)
    finally:
        await sender.aclose()


# Outcomes that mean "there was work": an idle round has none of them.
BUSY_OUTCOMES = {
    "refreshed",
    "failed",
    "busy",
    "expired",
    "synced",
    "sync_failed",
    "claimed",
    "reauth_notices",
    "delivered",
    "retrying",
    "given_up",
    "gone",
}


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
    """The loops of one process, started with it and wound down when it stops: no new work
    after the stop signal, work under way finishes (a refresh is never cut in half)."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()
        self._wound_down: asyncio.Future | None = None

    def start(self) -> None:
        settings = self.ctx.settings
        self._tasks = [
            asyncio.create_task(
                self._forever("refresh", refresh_round, settings.REFRESH_INTERVAL_SECONDS)
            ),
            asyncio.create_task(
                self._forever("sync", sync_round, settings.REFRESH_INTERVAL_SECONDS)
            ),
            asyncio.create_task(self._dispatch()),
        ]

    async def _dispatch(self) -> None:
        """Webhook deliveries: whatever is due, then wait for a commit's NOTIFY (or the poll
        interval, for retries that come due and a lost listener) and go again."""
        ctx = self.ctx
        sender, wakeup = dispatch.Sender(ctx), dispatch.Wakeup(ctx)
        pruned_at = 0.0
        try:
            while not self._stopping.is_set():
                try:
                    counts = await dispatch.deliver_due(ctx, sender, self._stopping)
                    if counts:
                        log.info("webhooks: %s", dict(counts))
                    if time.monotonic() - pruned_at > PRUNE_EVERY_SECONDS:
                        await dispatch.prune(ctx)
                        pruned_at = time.monotonic()
                except Exception as exc:
                    lost = lost_dependency(exc)
                    if lost:
                        log.warning(
                            "webhooks: the %s is unavailable; retrying in %.0fs",
                            lost,
                            ctx.settings.WEBHOOK_POLL_SECONDS,
                        )
                    else:
                        log.exception("webhooks: a round failed")
                await wakeup.wait(ctx.settings.WEBHOOK_POLL_SECONDS, self._stopping)
        finally:
            await sender.aclose()
            await wakeup.close()

    async def _forever(self, name: str, round_, interval: float) -> None:
        while not self._stopping.is_set():
            try:
                counts = await round_(self.ctx, self._stopping)
                if any(counts[k] for k in BUSY_OUTCOMES):
                    log.info("%s round: %s", name, dict(counts))
            except Exception as exc:  # the database restarting, Valkey away: next time
                lost = lost_dependency(exc)
                if lost:
                    log.warning(
                        "%s round: the %s is unavailable; retrying in %.0fs", name, lost, interval
                    )
                else:
                    log.exception("%s round failed; retrying in %.0fs", name, interval)
            pause = interval * random.uniform(0.9, 1.1)  # noqa: S311 -- jitter
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)

    def wind_down(self) -> asyncio.Future:
        """Stop starting work; the future is done once the work under way has finished."""
        if self._wound_down is None:
            self._stopping.set()

            async def finish() -> None:
                await asyncio.gather(*self._tasks, return_exceptions=True)

            self._wound_down = asyncio.ensure_future(finish())
        return self._wound_down

    async def stop(self) -> None:
        await self.wind_down()
        self._tasks = []
