"""Refreshing due connections against the sandbox: one refresher process beside two.

Two institutions: the sandbox as it is locally (it answers at once, on the same two cores as
the refreshers and PostgreSQL: every refresh is pure CPU), and the sandbox answering each token
call after 50 ms, the network latency of a real institution (Schwab's token endpoint is farther
away than that). The first shows what the CPU allows; the second is how refreshers meet a real
institution, waiting on it.

Set-up (once): a scratch clone of the test template, Valkey index 15, and per institution a
sandbox API server of its own on a free port. Then, per run and per process count, from a clean
slate: N connections
seeded with real sandbox tokens that all expire within the refresh window, and that many
`python -m dashtam_api.jobs refresh --until-idle` processes started together; the wall clock
runs from their start to the last exit (interpreter start-up included: as a person meets it).

After every run the result is checked, not assumed: the sandbox saw exactly one refresh per
connection and no refresh token twice, the processes' refreshed counts add up to N, every
connection is active with one `refreshed` audit row. A run that breaks exactly-once stops the
benchmark with the numbers.
"""

import asyncio
import os
import statistics

from sqlalchemy import func, select, text

import dashtam_models
from bench import jobs
from bench.scratch import scratch_database, serve_api
from dashtam_api.context import AppContext
from dashtam_api.sandbox import store
from dashtam_api.sandbox.seed import connected_sandbox
from dashtam_core.config import TestSettings
from dashtam_models import ProviderAuditLog, ProviderConnection
from infra import apps
from infra.errors import InfraError
from infra.layout import Layout
from infra.ports import free_port
from infra.runtime import process

VALKEY_INDEX = 15  # the last of Valkey's 16: test workers count up from 1
PROCESS_COUNTS = (1, 2)
LATENCIES = (0.0, 0.05)  # seconds the sandbox takes per token call


def run(*, repeat: int, connections: int) -> None:
    layout = Layout()
    with scratch_database(layout, "benchrefresh") as (template, url):
        samples = {
            latency: _with_sandbox(
                layout, template, url, latency, repeat=repeat, connections=connections
            )
            for latency in LATENCIES
        }
    _report(samples, connections)


def _with_sandbox(layout, template, url, latency: float, *, repeat: int, connections: int):
    """The runs against a sandbox server of their own that answers token calls after
    ``latency`` seconds."""
    port = free_port()
    overrides = {
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "REDIS_URL": f"{template.REDIS_URL.rpartition('/')[0]}/{VALKEY_INDEX}",
        "API_BASE_URL": f"https://localhost:{port}",
        "BACKGROUND_JOBS_ENABLED": "false",
        "SANDBOX_TOKEN_LATENCY_SECONDS": str(latency),
    }
    settings = template.model_copy(update=overrides)
    try:
        with serve_api(layout, pid_name="bench-sandbox", port=port, overrides=overrides):
            print(f"institution latency {latency * 1000:.0f} ms:", flush=True)
            env = apps.child_env(layout.test_env_file, overrides)
            return _measure(layout, settings, env, repeat=repeat, connections=connections)
    finally:
        asyncio.run(_flush(settings))


def _measure(layout, settings, env, *, repeat: int, connections: int) -> dict[int, list[float]]:
    samples: dict[int, list[float]] = {n: [] for n in PROCESS_COUNTS}
    sandbox = process.read_pid(layout.pid_file("bench-sandbox")).pid
    for attempt in range(1, repeat + 1):
        for processes in PROCESS_COUNTS:
            seeded = asyncio.run(_clean_and_seed(settings, connections))
            sandbox_before = jobs.process_cpu_seconds(sandbox)
            ran = jobs.run_together(
                "refresh", processes=processes, counted="refreshed", env=env, cwd=layout.root
            )
            sandbox_cpu = jobs.process_cpu_seconds(sandbox) - sandbox_before
            asyncio.run(_check_exactly_once(settings, seeded, ran.counts))
            samples[processes].append(ran.wall)
            print(
                f"  run {attempt}, {processes} process(es): {ran.wall:6.2f}s "
                f"({connections / ran.wall:6.0f}/s), refreshed per process {ran.counts}; CPU s: "
                f"refreshers {ran.cpu['jobs']:.1f}, sandbox {sandbox_cpu:.1f}, everything else "
                f"{ran.cpu['machine'] - ran.cpu['jobs'] - sandbox_cpu:.1f}",
                flush=True,
            )
    return samples


async def _clean_and_seed(settings: TestSettings, connections: int) -> list:
    ctx = AppContext.open(settings)
    try:
        await ctx.redis.flushdb()
        async with ctx.sessions() as session:
            tables = ", ".join(dashtam_models.metadata.tables)
            await session.execute(text(f"TRUNCATE {tables} CASCADE"))
            seeded = await connected_sandbox(ctx, session, count=connections, expires_in=60)
            await session.commit()
        async with ctx.db.engine.connect() as conn:
            # Planner statistics, as autovacuum keeps them on a database in use.
            await conn.execute(text("ANALYZE provider_connections, provider_tokens"))
            await conn.commit()
        return seeded
    finally:
        await ctx.close()


async def _check_exactly_once(settings: TestSettings, seeded: list, refreshed: list[int]) -> None:
    ctx = AppContext.open(settings)
    try:
        wrong = []
        for one in seeded:
            stats = await store.subject_stats(ctx.redis, str(one.connection_id))
            if (stats["refreshes"], stats["reused"]) != (1, 0):
                wrong.append(stats)
        async with ctx.sessions() as session:
            statuses = dict(
                (
                    await session.execute(
                        select(ProviderConnection.status, func.count()).group_by(
                            ProviderConnection.status
                        )
                    )
                ).all()
            )
            audited = await session.scalar(
                select(func.count(func.distinct(ProviderAuditLog.connection_id))).where(
                    ProviderAuditLog.action == "refreshed"
                )
            )
    finally:
        await ctx.close()
    n = len(seeded)
    if wrong or sum(refreshed) != n or statuses != {"active": n} or audited != n:
        raise InfraError(
            f"exactly-once broken: {len(wrong)} connection(s) refreshed other than once "
            f"(e.g. {wrong[:3]}), refreshed per process {refreshed}, statuses {statuses}, "
            f"audited {audited} of {n}"
        )


async def _flush(settings: TestSettings) -> None:
    ctx = AppContext.open(settings)
    try:
        await ctx.redis.flushdb()
    finally:
        await ctx.close()


def _report(samples: dict[float, dict[int, list[float]]], connections: int) -> None:
    runs = len(next(iter(samples.values()))[1])
    print()
    print(f"Refreshing {connections} due connections against the sandbox ({os.cpu_count()} CPUs),")
    print(f"median of {runs} run(s), wall clock of the refresher processes started together:")
    print(f"{'institution latency':<22} {'1 process':>18} {'2 processes':>18} {'2 / 1':>7}")
    for latency, by_count in samples.items():
        one, two = (statistics.median(by_count[n]) for n in PROCESS_COUNTS)
        print(
            f"{f'{latency * 1000:.0f} ms':<22} {connections / one:>11.0f} conn/s "
            f"{connections / two:>11.0f} conn/s {one / two:>6.2f}x"
        )
    print("exactly once: every connection refreshed once per run, no refresh token reused")
