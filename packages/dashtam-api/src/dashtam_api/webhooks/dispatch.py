"""The dispatcher: due deliveries claimed from the outbox, POSTed, and their outcome recorded.

Any number of processes run it against one database. A claim is one statement: the due rows
nobody else holds (``FOR UPDATE SKIP LOCKED``), each given a lease (``next_attempt_at`` moved
past the attempt's timeout) and its attempt counted, committed before anything is sent; so
two processes never send the same attempt, and one that dies mid-send leaves the delivery due
again once the lease lapses (receivers de-duplicate on ``webhook-id``, as the specification
asks). The outcomes of finished attempts are written together, one transaction per batch.

Up to WEBHOOK_CONCURRENCY attempts are under way at once; whenever half of them are free, one
claim fills them (and one transaction records the outcomes of half a batch), so one slow
receiver holds one slot, not a batch, and a busy outbox costs two transactions per half-batch.
"""

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpcore

from dashtam_api import metrics
from dashtam_api.context import AppContext
from dashtam_api.webhooks import queries, signing
from dashtam_api.webhooks.targets import GuardedBackend, RefusedTarget
from dashtam_core.lost_dependencies import lost_dependency
from dashtam_core.vault import VaultError, webhook_secret_context
from dashtam_models import DeliveryStatus

log = logging.getLogger("dashtam.webhooks")

USER_AGENT = "Dashtam-Webhooks/1"
# Enough of an answer to say what went wrong; the rest is not read.
ANSWER_LIMIT = 2048
ERROR_EXCERPT = 200
CHANNEL = "webhook_deliveries"


@dataclass
class Claimed:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    body: bytes
    attempt: int
    created_at: datetime
    url: str
    secret_encrypted: bytes


@dataclass
class Result:
    claimed: Claimed
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def retry_delay(settings, attempt: int) -> float:
    """Seconds before the attempt after ``attempt`` (1 = the first): x4 each time, capped,
    +-20% jitter so that a receiver back from an outage is not hit by every retry at once."""
    delay = min(
        settings.WEBHOOK_RETRY_BASE_SECONDS * 4 ** (attempt - 1),
        settings.WEBHOOK_RETRY_MAX_SECONDS,
    )
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 -- jitter, not a secret


def _excerpt(answer: bytes) -> str:
    text_ = answer.decode("utf-8", errors="replace")
    text_ = "".join(ch if ch.isprintable() else " " for ch in text_).strip()
    return text_[:ERROR_EXCERPT]


class Sender:
    """POSTs signed messages through a pool that checks every address it connects to."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=ctx.tls,
            max_connections=settings.WEBHOOK_CONCURRENCY,
            keepalive_expiry=30.0,
            network_backend=GuardedBackend(allow_private=settings.webhook_allow_private),
        )

    async def send(self, claimed: Claimed) -> Result:
        timeout = self.ctx.settings.WEBHOOK_TIMEOUT_SECONDS
        attempted_at = datetime.now(UTC)
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            secret = self.ctx.vault.open(
                claimed.secret_encrypted, context=webhook_secret_context(claimed.endpoint_id)
            )
            msg_id = str(claimed.event_id)
            timestamp = int(time.time())
            headers = [
                (b"content-type", b"application/json"),
                (b"user-agent", USER_AGENT.encode()),
                (b"webhook-id", msg_id.encode()),
                (b"webhook-timestamp", str(timestamp).encode()),
                (
                    b"webhook-signature",
                    signing.signature(
                        secret, msg_id=msg_id, timestamp=timestamp, body=claimed.body
                    ).encode(),
                ),
            ]
            async with asyncio.timeout(timeout):
                status_code, answer = await self._post(claimed.url, headers, claimed.body, timeout)
            if not 200 <= status_code < 300:
                error = f"answered {status_code}"
                if 300 <= status_code < 400:
                    error += " (redirects are not followed)"
                excerpt = _excerpt(answer)
                if excerpt:
                    error += f": {excerpt}"
        except TimeoutError:
            error = f"no answer within {timeout:g}s"
        except RefusedTarget as exc:
            error = f"refused: {exc}"
        except VaultError:
            error = "the signing secret cannot be opened (rotate it)"
        except httpcore.ConnectError as exc:
            error = f"could not connect: {exc or 'connection refused'}"
        except httpcore.TimeoutException:
            error = f"no answer within {timeout:g}s"
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:ERROR_EXCERPT]
        except httpcore.UnsupportedProtocol as exc:
            error = f"unsupported URL: {exc}"
        duration_ms = round((time.perf_counter() - started) * 1000)
        return Result(claimed, attempted_at, duration_ms, status_code, error)

    async def _post(self, url: str, headers, body: bytes, timeout: float) -> tuple[int, bytes]:
        extensions = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)}
        async with self.pool.stream(
            "POST", url, headers=headers, content=body, extensions=extensions
        ) as response:
            answer = b""
            async for chunk in response.aiter_stream():
                answer += chunk
                if len(answer) >= ANSWER_LIMIT:
                    break  # the rest is not read: the connection is closed, not reused
            return response.status, answer[:ANSWER_LIMIT]

    async def aclose(self) -> None:
        await self.pool.aclose()


async def claim(ctx: AppContext, limit: int) -> list[Claimed]:
    lease = lease_seconds(ctx.settings)
    async with ctx.sessions() as session:
        rows = await queries.claim_due(session, limit=limit, lease=lease)
        await session.commit()
    return [
        Claimed(
            id=row.id,
            endpoint_id=row.endpoint_id,
            event_id=row.event_id,
            event_type=row.event_type,
            body=row.body.encode(),
            attempt=row.attempts,
            created_at=row.created_at,
            url=row.url,
            secret_encrypted=row.secret_encrypted,
        )
        for row in rows
    ]


def _decide(settings, result: Result, now: datetime) -> tuple[str, datetime | None, str]:
    """(status, next attempt, metric outcome) of a delivery after this attempt."""
    if result.delivered:
        return DeliveryStatus.DELIVERED.value, None, "delivered"
    if result.gone:
        return DeliveryStatus.FAILED.value, None, "gone"
    deadline = result.claimed.created_at + timedelta(hours=settings.WEBHOOK_RETRY_HOURS)
    if now >= deadline:
        return DeliveryStatus.FAILED.value, None, "given_up"
    delay = timedelta(seconds=retry_delay(settings, result.claimed.attempt))
    # The last attempt is made at the deadline itself: retried for exactly the window.
    return DeliveryStatus.PENDING.value, min(now + delay, deadline), "retrying"


async def record(ctx: AppContext, results: list[Result]) -> Counter:
    """Write a batch of attempts and what follows from them, in one transaction."""
    settings = ctx.settings
    now = datetime.now(UTC)
    decided = [_decide(settings, r, now) for r in results]
    streaks: dict[uuid.UUID, tuple[bool, datetime | None]] = {}
    for r in sorted(results, key=lambda r: r.attempted_at):
        streaks[r.claimed.endpoint_id] = (
            (True, None) if r.delivered else (False, r.attempted_at)
        )  # the latest attempt of each endpoint says whether its streak goes on
    gone = list({r.claimed.endpoint_id for r in results if r.gone})
    failing = [e for e, (ok, _) in streaks.items() if not ok]
    async with ctx.sessions() as session:
        await queries.log_attempts(
            session,
            delivery_ids=[r.claimed.id for r in results],
            endpoint_ids=[r.claimed.endpoint_id for r in results],
            attempts=[r.claimed.attempt for r in results],
            attempted_at=[r.attempted_at for r in results],
            status_codes=[r.status_code for r in results],
            durations=[r.duration_ms for r in results],
            errors=[r.error for r in results],
        )
        await queries.settle(
            session,
            ids=[r.claimed.id for r in results],
            attempts=[r.claimed.attempt for r in results],
            statuses=[d[0] for d in decided],
            next_attempt_at=[d[1] for d in decided],
            errors=[r.error for r in results],
        )
        await queries.record_streaks(
            session,
            ids=list(streaks),
            succeeded=[ok for ok, _ in streaks.values()],
            failed_at=[at for _, at in streaks.values()],
        )
        disabled: list[uuid.UUID] = []
        if gone:
            reason = "the receiver answered 410 Gone"
            disabled += await queries.disable(session, ids=gone, reason=reason)
        if failing:
            disabled += await queries.disable_failing(
                session,
                ids=failing,
                hours=f"{settings.WEBHOOK_RETRY_HOURS:g}",
                seconds=settings.WEBHOOK_RETRY_HOURS * 3600,
            )
        if disabled:
            await queries.abandon(session, endpoint_ids=disabled)
        await session.commit()
    for endpoint_id in disabled:
        log.warning("webhook endpoint %s disabled", endpoint_id)
    counts = Counter(d[2] for d in decided)
    for r, d in zip(results, decided, strict=True):
        metrics.WEBHOOK_DELIVERIES.labels(r.claimed.event_type, d[2]).inc()
    if disabled:
        counts["disabled"] += len(disabled)
    return counts


def lease_seconds(settings) -> float:
    """How long a claimed delivery is held: past the attempt's timeout, and time to write."""
    return settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 30


async def record_patiently(ctx: AppContext, results: list[Result]) -> Counter:
    """record(), again and again while our database is away, until the lease would lapse: a
    restart between an attempt and its record must not have it sent twice (the receiver may
    have answered 2xx already). Past that, the lease lapses and the delivery is sent again."""
    deadline = time.monotonic() + lease_seconds(ctx.settings) - ctx.settings.WEBHOOK_TIMEOUT_SECONDS
    wait = 0.1
    while True:
        try:
            return await record(ctx, results)
        except Exception as exc:
            lost = lost_dependency(exc)
            if lost is None or time.monotonic() + wait > deadline:
                raise
            log.warning("webhooks: the %s is unavailable; keeping %d outcomes", lost, len(results))
        await asyncio.sleep(wait)
        wait = min(wait * 2, 1.0)


async def deliver_due(
    ctx: AppContext, sender: Sender, stopping: asyncio.Event | None = None
) -> Counter:
    """Send what is due until nothing is, keeping WEBHOOK_CONCURRENCY attempts under way.
    Once ``stopping`` is set nothing new is claimed; attempts under way finish and are kept,
    also when a claim fails (our database gone): their outcomes are written when it is back."""
    slots = ctx.settings.WEBHOOK_CONCURRENCY
    in_flight: set[asyncio.Task] = set()
    finished: list[Result] = []
    counts: Counter = Counter()

    def done(task: asyncio.Task) -> None:
        in_flight.discard(task)
        finished.append(task.result())

    # Claims and records in batches of half the slots (or whatever there is when nothing
    # else is under way): two transactions per half-batch, not two per delivery.
    batch = max(1, slots // 2)
    try:
        while True:
            if finished and (len(finished) >= batch or not in_flight):
                results = finished[:]
                finished.clear()
                counts.update(await record_patiently(ctx, results))
            free = slots - len(in_flight)
            claimed = []
            if (free >= batch or not in_flight) and not (stopping and stopping.is_set()):
                claimed = await claim(ctx, free)
            for one in claimed:
                task = asyncio.create_task(sender.send(one))
                in_flight.add(task)
                task.add_done_callback(done)
            if not in_flight and not finished:
                return counts
            if in_flight:
                await asyncio.wait(set(in_flight), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if in_flight:  # a claim or a record failed: what was sent is still written
            await asyncio.wait(set(in_flight))
        if finished:
            await record_patiently(ctx, finished[:])


async def prune(ctx: AppContext, *, batch: int = 5000) -> int:
    """Delete finished deliveries (and their attempts) older than WEBHOOK_RETENTION_DAYS."""
    before = datetime.now(UTC) - timedelta(days=ctx.settings.WEBHOOK_RETENTION_DAYS)
    pruned = 0
    while True:
        async with ctx.sessions() as session:
            deleted = await queries.prune(session, before=before, batch=batch)
            await session.commit()
        pruned += deleted
        if deleted < batch:
            return pruned


class Wakeup:
    """LISTEN on the outbox's channel: ``webhook_emit`` notifies it at commit, so a dispatcher
    waiting for work starts within milliseconds instead of at its next poll. A lost listening
    connection (the database restarting) only means waiting for the poll; it is opened again
    at the next wait."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.event = asyncio.Event()
        self._connection = None

    async def _listen(self) -> None:
        engine = self.ctx.db.engine
        _, params = engine.dialect.create_connect_args(engine.url)
        connection = await asyncpg.connect(**{**params, "timeout": 5})
        await connection.add_listener(CHANNEL, lambda *_: self.event.set())
        self._connection = connection

    async def wait(self, timeout: float, stopping: asyncio.Event) -> None:
        """Until a notification, ``stopping``, or ``timeout`` seconds."""
        if self._connection is None or self._connection.is_closed():
            self._connection = None
            with contextlib.suppress(Exception):  # no listener: the poll still works
                await self._listen()
        waits = [asyncio.ensure_future(self.event.wait()), asyncio.ensure_future(stopping.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        self.event.clear()

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed():
            with contextlib.suppress(Exception):
                await self._connection.close(timeout=2)
        self._connection = None
