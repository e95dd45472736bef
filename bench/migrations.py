"""What building a schema with the migrations costs, beside the create_all it replaced:

1. in-process, on an empty database: ``metadata.create_all`` (plus the citext extension and the
   audit log's trigger, as the old init-db did) vs ``migrate.upgrade_to_head`` (every revision);
2. as a person meets it, the wall clock of ``python -m dashtam_core.init_db`` on an empty
   database (interpreter start, imports, connect, migrate) vs the same process importing the
   same modules and running create_all;
3. the test template: ``dashtam-init-test-db`` on the real template, wall clock.

Each line prints medians and the ratio (migrations / create_all). Numbers from a noisy shared
machine: compare the ratios.
"""

import asyncio
import statistics
import subprocess
import sys
import time
import uuid

from sqlalchemy import text

import dashtam_models
from dashtam_core import migrate
from dashtam_core.config import TestSettings, load_settings
from dashtam_core.database import create_engine
from dashtam_core.test_databases import drop_database, maintenance_connection
from infra import apps, workflows
from infra.layout import Layout

# The old init-db's create_all path, as a child process: the same imports as init_db, then the
# DDL create_all emits, the extension and the audit trigger (taken from the initial revision).
CREATE_ALL_SCRIPT = """
import asyncio, importlib.util, sys
from sqlalchemy import text
import dashtam_models
from dashtam_core import migrate
from dashtam_core.config import load_settings
from dashtam_core.database import create_engine

spec = importlib.util.spec_from_file_location("initial", sys.argv[1])
initial = importlib.util.module_from_spec(spec)
spec.loader.exec_module(initial)

async def main():
    engine = create_engine(load_settings(), pool_size=1, max_overflow=0)
    async with engine.begin() as conn:
        await migrate.lock(conn)
        await conn.execute(text("CREATE EXTENSION IF NOT EXISTS citext"))
        await conn.run_sync(dashtam_models.metadata.create_all)
        await conn.execute(text(initial.APPEND_ONLY_FUNCTION))
        await conn.execute(text(initial.APPEND_ONLY_TRIGGER))
    await engine.dispose()

asyncio.run(main())
"""


def run(*, repeat: int) -> None:
    layout = Layout()
    with workflows.test_servers(layout):
        settings = load_settings(TestSettings, layout.test_env_file)
        rows = [
            *asyncio.run(_in_process(settings, repeat)),
            _as_a_command(layout, settings, repeat),
            _template(layout, repeat),
        ]
    print()
    print(f"{'measurement (median)':<62} {'create_all':>10} {'migrations':>10} {'ratio':>7}")
    for label, baseline, ours in rows:
        if baseline is None:
            print(f"{label:<62} {'-':>10} {ours:>9.3f}s {'-':>7}")
        else:
            print(f"{label:<62} {baseline:>9.3f}s {ours:>9.3f}s {ours / baseline:>6.2f}x")


async def _empty_database(settings: TestSettings) -> tuple[str, str]:
    name = f"dashtam_test_bench{uuid.uuid4().hex[:8]}"
    conn = await maintenance_connection(settings.database_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await conn.close()
    return name, settings.database_url.set(database=name).render_as_string(hide_password=False)


async def _in_process(settings: TestSettings, times: int) -> list[tuple[str, float, float]]:
    initial = migrate.script_directory().get_revision(migrate.initial_revision()).module
    samples: dict[str, list[float]] = {"create_all": [], "migrations": []}
    for _ in range(times):
        for kind in samples:
            name, url = await _empty_database(settings)
            engine = create_engine(
                settings.model_copy(update={"DATABASE_URL": url}), pool_size=1, max_overflow=0
            )
            started = time.perf_counter()
            async with engine.begin() as conn:
                await migrate.lock(conn)
                if kind == "create_all":
                    await conn.execute(text("CREATE EXTENSION IF NOT EXISTS citext"))
                    await conn.run_sync(dashtam_models.metadata.create_all)
                    await conn.execute(text(initial.APPEND_ONLY_FUNCTION))
                    await conn.execute(text(initial.APPEND_ONLY_TRIGGER))
                else:
                    await migrate.upgrade_to_head(conn, database=name)
            samples[kind].append(time.perf_counter() - started)
            await engine.dispose()
            await drop_database(url=settings.database_url, name=name)
    for kind, values in samples.items():
        print(f"  in-process {kind}: {_fmt(values)}", flush=True)
    return [
        (
            "schema from empty, in-process",
            statistics.median(samples["create_all"]),
            statistics.median(samples["migrations"]),
        )
    ]


def _as_a_command(layout: Layout, settings: TestSettings, times: int) -> tuple[str, float, float]:
    initial_path = migrate.script_directory().get_revision(migrate.initial_revision()).path
    commands = {
        "create_all": [sys.executable, "-c", CREATE_ALL_SCRIPT, initial_path],
        "migrations": [sys.executable, "-m", "dashtam_core.init_db"],
    }
    samples: dict[str, list[float]] = {kind: [] for kind in commands}
    for _ in range(times):
        for kind, argv in commands.items():
            name, url = asyncio.run(_empty_database(settings))
            env = {**apps.child_env(layout.test_env_file), "DATABASE_URL": url}
            started = time.perf_counter()
            result = subprocess.run(
                argv, env=env, cwd=layout.root, capture_output=True, check=False
            )
            samples[kind].append(time.perf_counter() - started)
            asyncio.run(drop_database(url=settings.database_url, name=name))
            if result.returncode != 0:
                raise SystemExit(f"{kind} failed: {result.stderr.decode()[-1000:]}")
    for kind, values in samples.items():
        print(f"  command {kind}: {_fmt(values)}", flush=True)
    return (
        "schema from empty, the command's wall clock",
        statistics.median(samples["create_all"]),
        statistics.median(samples["migrations"]),
    )


def _template(layout: Layout, times: int) -> tuple[str, None, float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "dashtam_core.init_test_db"],
            env=apps.child_env(layout.test_env_file),
            cwd=layout.root,
            capture_output=True,
            check=False,
        )
        samples.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"init-test-db failed: {result.stderr.decode()[-1000:]}")
    # The template's audit log goes back to its owner, as test-setup does.
    workflows.test_setup(layout)
    print(f"  init-test-db (template): {_fmt(samples)}", flush=True)
    return (
        "test template rebuilt by dashtam-init-test-db, wall clock",
        None,
        statistics.median(samples),
    )


def _fmt(samples: list[float]) -> str:
    return f"median {statistics.median(samples):.3f}s of " + ", ".join(f"{s:.3f}" for s in samples)
