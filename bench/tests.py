"""How fast the test set-up is, measured side by side on this machine:

1. the whole suite, serial vs ``--parallel`` (pytest-xdist, a worker per core and one more);
2. a worker database: cloning the template vs building the schema with the migrations;
3. per-test isolation: savepoint rollback vs truncating every table, over N tiny tests.

Each line prints the raw medians and their ratio. Numbers from a noisy shared machine: compare
the ratios, not the seconds.
"""

import asyncio
import statistics
import sys
import time
import uuid

import psutil
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

import dashtam_models
from bench import cpu as cpu_meter
from dashtam_core import migrate
from dashtam_core.config import TestSettings, load_settings
from dashtam_core.database import create_engine
from dashtam_core.test_databases import clone_database, drop_database, maintenance_connection
from dashtam_models import User
from infra import apps, workflows
from infra.layout import Layout
from infra.runtime.local import SERVERS, LocalRuntime

TABLES = ", ".join(f'"{t.name}"' for t in dashtam_models.metadata.sorted_tables)


def run(*, repeat: int, suite_repeat: int, tiny_tests: int) -> None:
    layout = Layout()
    with workflows.test_servers(layout):
        settings = load_settings(TestSettings, layout.test_env_file)
        rows = [
            suite_serial_vs_parallel(layout, suite_repeat),
            asyncio.run(clone_vs_build(settings, repeat)),
            *asyncio.run(rollback_vs_truncate(settings, repeat, tiny_tests)),
        ]
    print()
    print(f"{'measurement (median)':<58} {'baseline':>10} {'ours':>10} {'ratio':>7}")
    for label, baseline, ours in rows:
        print(f"{label:<58} {baseline:>9.3f}s {ours:>9.3f}s {baseline / ours:>6.1f}x")


def _median_time(action, times: int) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def suite_serial_vs_parallel(layout: Layout, times: int) -> tuple[str, float, float]:
    env = apps.child_env(layout.test_env_file)

    cpu: dict[bool, list[float]] = {False: [], True: []}

    def pytest(parallel: bool) -> None:
        # The command `inv test [--parallel]` runs, timed by the wall clock around it; in a
        # fixed order (-p no:randomly) so that both runs do the same work.
        args = workflows.pytest_args_for(parallel=parallel, extra=["-q", "-p", "no:randomly"])
        servers_before = _shared_servers_cpu(layout)
        measured = cpu_meter.run(
            [sys.executable, "-m", "pytest", *args],
            env=env,
            cwd=layout.root,
            capture_output=True,
            text=True,
            check=False,
        )
        servers = {k: v - servers_before[k] for k, v in _shared_servers_cpu(layout).items()}
        result = measured.result
        summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "?"
        print(f"  pytest {' '.join(args)}: {summary}", flush=True)
        if result.returncode != 0:
            raise SystemExit(f"the suite failed; benchmark stopped:\n{result.stdout[-2000:]}")
        total = measured.cpu_seconds + sum(servers.values())
        cpu[parallel].append(total)
        print(
            f"  CPU {total:.1f} core-s: pytest and what it started {measured.cpu_seconds:.1f} "
            f"({measured.how}), " + ", ".join(f"{k} {v:.1f}" for k, v in servers.items()),
            flush=True,
        )

    serial = _median_time(lambda: pytest(False), times)
    parallel = _median_time(lambda: pytest(True), times)
    workers = workflows.auto_test_workers()
    label = f"serial vs --parallel ({workers} workers)"
    print(
        f"  total CPU, median: serial {statistics.median(cpu[False]):.1f} core-s, parallel "
        f"{statistics.median(cpu[True]):.1f} core-s; wall clock: serial {serial:.1f} s, parallel "
        f"{parallel:.1f} s",
        flush=True,
    )
    return (f"whole suite, wall clock: {label}", serial, parallel)


def _shared_servers_cpu(layout: Layout) -> dict[str, float]:
    """CPU used so far by the shared servers the suite runs against (started before it, so
    outside what bench.cpu counts for the run), each with the processes it reaped
    (PostgreSQL's backends)."""
    spent = {}
    runtime = LocalRuntime(layout)
    for server in SERVERS:
        tracked = runtime.tracked(server)
        spent[server] = 0.0
        if tracked is None:
            continue
        try:
            times = psutil.Process(tracked.pid).cpu_times()
            spent[server] = times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
    return spent


async def clone_vs_build(settings: TestSettings, times: int) -> tuple[str, float, float]:
    template = settings.database_url
    clone_times, build_times = [], []
    for _ in range(times):
        name = f"dashtam_test_bench{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        await clone_database(
            template_url=template,
            name=name,
            environment="testing",
            dev_database_name=settings.DEV_DATABASE_NAME,
            project_id=settings.PROJECT_ID,
        )
        clone_times.append(time.perf_counter() - started)
        await drop_database(url=template, name=name)

        started = time.perf_counter()
        conn = await maintenance_connection(template)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        finally:
            await conn.close()
        engine = create_engine(
            settings.model_copy(
                update={
                    "DATABASE_URL": template.set(database=name).render_as_string(
                        hide_password=False
                    )
                }
            ),
            pool_size=1,
            max_overflow=0,
        )
        async with engine.begin() as schema_conn:
            await migrate.upgrade_to_head(schema_conn, database=name)
        await engine.dispose()
        build_times.append(time.perf_counter() - started)
        await drop_database(url=template, name=name)
    print(f"  clone: {_fmt(clone_times)}; build: {_fmt(build_times)}", flush=True)
    return (
        "worker database: build schema vs clone template",
        statistics.median(build_times),
        statistics.median(clone_times),
    )


async def rollback_vs_truncate(
    settings: TestSettings, times: int, tiny_tests: int
) -> list[tuple[str, float, float]]:
    """Both the whole tiny tests and the isolation work alone (set-up + clean-up per test)."""
    name = f"dashtam_test_bench{uuid.uuid4().hex[:8]}"
    url = await clone_database(
        template_url=settings.database_url,
        name=name,
        environment="testing",
        dev_database_name=settings.DEV_DATABASE_NAME,
        project_id=settings.PROJECT_ID,
    )
    engine = create_engine(
        settings.model_copy(update={"DATABASE_URL": url.render_as_string(hide_password=False)})
    )
    totals: dict[str, list[float]] = {"rollback": [], "truncate": []}
    overheads: dict[str, list[float]] = {"rollback": [], "truncate": []}
    try:
        for _ in range(times):
            total = overhead = 0.0
            for i in range(tiny_tests):
                t0 = time.perf_counter()
                async with engine.connect() as conn:
                    transaction = await conn.begin()
                    await conn.exec_driver_sql("SELECT 1")  # the BEGIN reaches the server here
                    t1 = time.perf_counter()
                    async with AsyncSession(
                        bind=conn, join_transaction_mode="create_savepoint"
                    ) as s:
                        await _tiny_test(s, i)
                    t2 = time.perf_counter()
                    await transaction.rollback()
                t3 = time.perf_counter()
                total += t3 - t0
                overhead += (t1 - t0) + (t3 - t2)
            totals["rollback"].append(total)
            overheads["rollback"].append(overhead)

            total = overhead = 0.0
            for i in range(tiny_tests):
                t0 = time.perf_counter()
                async with AsyncSession(bind=engine) as s:
                    await _tiny_test(s, i)
                t1 = time.perf_counter()
                async with engine.begin() as conn:
                    await conn.execute(text(f"TRUNCATE {TABLES} CASCADE"))
                t2 = time.perf_counter()
                total += t2 - t0
                overhead += t2 - t1
            totals["truncate"].append(total)
            overheads["truncate"].append(overhead)
    finally:
        await engine.dispose()
        await drop_database(url=settings.database_url, name=name)
    for kind in ("rollback", "truncate"):
        print(
            f"  {kind}: whole tests {_fmt(totals[kind])}; isolation alone "
            f"{_fmt(overheads[kind])} ({tiny_tests} tiny tests each)",
            flush=True,
        )
    median = statistics.median
    return [
        (
            f"{tiny_tests} tiny tests, whole: truncate vs rollback",
            median(totals["truncate"]),
            median(totals["rollback"]),
        ),
        (
            f"{tiny_tests} tiny tests, isolation alone: truncate vs rollback",
            median(overheads["truncate"]),
            median(overheads["rollback"]),
        ),
    ]


async def _tiny_test(session: AsyncSession, i: int) -> None:
    """What a small database test does: write a row, commit, read it back."""
    session.add(User(email=f"bench{i}@example.test", name="bench"))
    await session.commit()
    assert await session.scalar(select(func.count()).select_from(User)) == 1


def _fmt(samples: list[float]) -> str:
    return (
        "median "
        + f"{statistics.median(samples):.4f}s of "
        + ", ".join(f"{s:.4f}" for s in samples)
    )
