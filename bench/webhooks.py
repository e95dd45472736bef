"""Webhook deliveries to a local HTTPS receiver: one dispatcher process beside two, and the time
from a commit to its delivery.

Set-up (once): a scratch clone of the test template and a receiver in this process (HTTPS under
the project's CA, keep-alive, answering 204 at once). Then:

- Throughput, per run and per process count, from a clean slate: ``events`` events committed
  for 20 endpoints (all due), and that many `dashtam-jobs webhooks --until-idle` processes
  started together. Reported: the wall clock from their start to the last exit (interpreter
  start-up included, as a person meets it) and the sending itself (first to last arrival at
  the receiver), as deliveries per second. Checked, not assumed: every event arrived exactly
  once and every delivery is marked delivered.
- Latency: one `dashtam-jobs run` process (its dispatcher waits on LISTEN), and events
  committed one at a time, 20 ms apart; for each, the receiver's arrival time minus the moment
  its commit returned. Reported: median and p99.

Everything shares the machine's two cores: the dispatchers, PostgreSQL, and the receiver.
"""

import asyncio
import statistics
import subprocess
import sys
import time
import uuid

from sqlalchemy import func, select, text

import dashtam_models
from bench import jobs
from bench.scratch import scratch_database
from dashtam_api.context import AppContext
from dashtam_api.webhooks import signing
from dashtam_core.config import TestSettings
from dashtam_core.vault import webhook_secret_context
from dashtam_models import User, WebhookDelivery, WebhookEndpoint
from infra import apps
from infra.demo import Receiver
from infra.errors import InfraError
from infra.layout import Layout

PROCESS_COUNTS = (1, 2)
ENDPOINTS = 20
LATENCY_EVENTS = 200


def run(*, repeat: int, events: int) -> None:
    layout = Layout()
    with scratch_database(layout, "benchhooks") as (template, url):
        overrides = {
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "BACKGROUND_JOBS_ENABLED": "true",
        }
        settings = template.model_copy(update=overrides)
        env = apps.child_env(layout.test_env_file, overrides)
        receiver = Receiver(layout)
        try:
            throughput = _throughput(layout, settings, env, receiver, repeat, events)
            latencies = _latency(layout, settings, env, receiver)
        finally:
            receiver.close()
    print()
    print(f"{'dispatchers':<12} {'wall s (median)':>16} {'deliveries/s':>13} {'sending/s':>10}")
    base = None
    for processes, runs in throughput.items():
        wall = statistics.median(w for w, _ in runs)
        sending = statistics.median(s for _, s in runs)
        base = base or events / sending
        print(
            f"{processes:<12} {wall:>16.2f} {events / wall:>13.0f} {events / sending:>10.0f}"
            f"   ({events / sending / base:.2f}x one)"
        )
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * len(latencies)) - 1)]
    print(
        f"commit -> delivery ({len(latencies)} events, one `dashtam-jobs run`): "
        f"median {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )


def _throughput(layout, settings, env, receiver, repeat: int, events: int):
    samples: dict[int, list[tuple[float, float]]] = {n: [] for n in PROCESS_COUNTS}
    for attempt in range(1, repeat + 1):
        for processes in PROCESS_COUNTS:
            secrets_ = asyncio.run(_clean_and_seed(settings, receiver.url, events))
            receiver.received.clear()
            ran = jobs.run_together(
                "webhooks", processes=processes, counted="delivered", env=env, cwd=layout.root
            )
            arrivals = [at for at, _, _ in receiver.received]
            sending = max(arrivals) - min(arrivals)
            asyncio.run(_check_once(settings, receiver, events, ran.counts, secrets_))
            samples[processes].append((ran.wall, sending))
            print(
                f"  run {attempt}, {processes} dispatcher(s): {ran.wall:6.2f}s wall "
                f"({events / ran.wall:5.0f}/s), sending {sending:5.2f}s ({events / sending:5.0f}/s), "
                f"delivered per process {ran.counts}; CPU s: dispatchers {ran.cpu['jobs']:.1f}, "
                f"receiver {ran.cpu['here']:.1f}, everything else (PostgreSQL...) "
                f"{ran.cpu['machine'] - ran.cpu['jobs'] - ran.cpu['here']:.1f}",
                flush=True,
            )
    return samples


async def _clean_and_seed(settings: TestSettings, url: str, events: int) -> dict[str, str]:
    """``events`` due events over ENDPOINTS endpoints of one person; their secrets by id."""
    ctx = AppContext.open(settings)
    try:
        async with ctx.sessions() as session:
            tables = ", ".join(dashtam_models.metadata.tables)
            await session.execute(text(f"TRUNCATE {tables} CASCADE"))
            user = User(email=f"bench-{uuid.uuid4().hex[:8]}@example.com", name="Bench")
            session.add(user)
            await session.flush()
            secrets_ = {}
            for _ in range(ENDPOINTS):
                endpoint_id, secret = uuid.uuid4(), signing.new_secret()
                secrets_[str(endpoint_id)] = secret
                session.add(
                    WebhookEndpoint(
                        id=endpoint_id,
                        user_id=user.id,
                        url=url,
                        events=["sync.succeeded"],
                        secret_encrypted=ctx.vault.seal(
                            secret, context=webhook_secret_context(endpoint_id)
                        ),
                        key_id=ctx.vault.current_key_id,
                    )
                )
            await session.flush()
            # Each event to one endpoint, round robin: `events` deliveries in all.
            await session.execute(
                text(
                    "SELECT webhook_emit(:user, 'webhook.test', jsonb_build_object('n', n), "
                    "(SELECT id FROM webhook_endpoints ORDER BY id "
                    " OFFSET n % :endpoints LIMIT 1)) FROM generate_series(1, :events) AS n"
                ),
                {"user": user.id, "events": events, "endpoints": ENDPOINTS},
            )
            await session.commit()
        async with ctx.db.engine.connect() as conn:
            await conn.execute(text("ANALYZE webhook_deliveries, webhook_endpoints"))
            await conn.commit()
        return secrets_
    finally:
        await ctx.close()


async def _check_once(settings, receiver, events: int, delivered: list[int], secrets_) -> None:
    ids = [headers["webhook-id"] for _, headers, _ in receiver.received]
    ctx = AppContext.open(settings)
    try:
        async with ctx.sessions() as session:
            statuses = dict(
                (
                    await session.execute(
                        select(WebhookDelivery.status, func.count()).group_by(
                            WebhookDelivery.status
                        )
                    )
                ).all()
            )
    finally:
        await ctx.close()
    if len(ids) != events or len(set(ids)) != events or sum(delivered) != events:
        raise InfraError(
            f"exactly-once broken: {len(ids)} arrivals, {len(set(ids))} distinct, "
            f"delivered per process {delivered}, of {events}"
        )
    if statuses != {"delivered": events}:
        raise InfraError(f"deliveries not all delivered: {statuses}")


def _latency(layout, settings, env, receiver) -> list[float]:
    asyncio.run(_clean_and_seed(settings, receiver.url, 0))
    receiver.received.clear()
    jobs = subprocess.Popen(
        [sys.executable, "-m", "dashtam_api.jobs", "run"],
        env=env,
        cwd=layout.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        committed = asyncio.run(_commit_one_by_one(settings, receiver))
    finally:
        jobs.terminate()
        jobs.communicate(timeout=60)
    arrived = {headers["webhook-id"]: at for at, headers, _ in receiver.received}
    missing = [event for event in committed if event not in arrived]
    if missing:
        raise InfraError(f"{len(missing)} of {len(committed)} events never arrived")
    return [arrived[event] - at for event, at in committed.items()]


async def _commit_one_by_one(settings, receiver) -> dict[str, float]:
    ctx = AppContext.open(settings)
    committed: dict[str, float] = {}
    try:
        async with ctx.sessions() as session:
            user_id, endpoint_id = (
                await session.execute(select(WebhookEndpoint.user_id, WebhookEndpoint.id).limit(1))
            ).one()
            await session.commit()
        await asyncio.sleep(3)  # the jobs process started and listening
        for n in range(LATENCY_EVENTS):
            async with ctx.sessions() as session:
                event = await session.scalar(
                    text(
                        "SELECT webhook_emit(:user, 'webhook.test', jsonb_build_object('n', CAST(:n AS int)),"
                        " :endpoint)"
                    ),
                    {"user": user_id, "endpoint": endpoint_id, "n": n},
                )
                await session.commit()
            committed[str(event)] = time.time()
            await asyncio.sleep(0.02)
        deadline = time.monotonic() + 30
        while len(receiver.received) < LATENCY_EVENTS and time.monotonic() < deadline:  # noqa: ASYNC110 (another thread fills it)
            await asyncio.sleep(0.05)
    finally:
        await ctx.close()
    return committed
