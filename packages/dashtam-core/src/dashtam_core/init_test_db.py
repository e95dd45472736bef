"""``dashtam-init-test-db``: rebuild the test schema by running the migrations, and never anything else.

Before touching anything it refuses (exit 2, a line starting ``SAFETY:``, nothing dropped) unless
ALL hold: ENVIRONMENT is ``testing``; the env file gives a PROJECT_ID; the database is the test
database the env file names or one of its ``<name>_<worker>`` clones, and its name passes the
test-name rule and is not the development database; the connected ``current_database()`` is that
database; it carries the marker this project wrote when it created it (test_database_guard.py); and it holds
no table that is not Dashtam's or Alembic's. The leftover sweep drops only clones marked as
clones of this template by this project.
"""

import logging
import os
import time

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from dashtam_core import migrate
from dashtam_core.cli import CommandError, run
from dashtam_core.config import ConfigError, Settings, load_settings, peek_env_file
from dashtam_core.database import create_engine
from dashtam_core.test_database_guard import (
    FIX,
    RELATIONS_QUERY,
    check_connected_database,
    check_marker,
    check_target,
    expected_marker,
    foreign_tables,
    marked_test_databases,
    read_markers,
)
from dashtam_core.test_databases import TEST_DATABASE_OPTIONS, force_drop

log = logging.getLogger("dashtam.init_test_db")

SAFETY_EXIT_CODE = 2


class SafetyError(CommandError):
    def __init__(self, reason: str):
        # The line starts with SAFETY: so scripts and people can tell a refusal from a failure.
        super().__init__(
            f"SAFETY: init-test-db refused, nothing was touched: {reason}; {FIX}",
            SAFETY_EXIT_CODE,
            prefixed=False,
        )


def _dev_database_name(settings: Settings) -> str:
    return getattr(settings, "DEV_DATABASE_NAME", "dashtam")


async def check_database(
    conn: AsyncConnection, *, target: str, expected: str, project_id: str, dev_database_name: str
) -> None:
    """Refuse unless the connected database is ``target``, carries ``expected`` and holds only
    Dashtam's tables."""
    driver = (await conn.get_raw_connection()).driver_connection
    connected = await driver.fetchval("SELECT current_database()")
    database = (await read_markers(driver, names=[connected])).get(connected)
    comment = database.marker if database else None
    problem = check_connected_database(
        configured=target, connected=connected, dev_database_name=dev_database_name
    ) or check_marker(name=connected, comment=comment, expected=expected, project_id=project_id)
    if problem:
        raise SafetyError(problem)
    relations = [(schema, name) for schema, name in await conn.execute(text(RELATIONS_QUERY))]
    foreign = foreign_tables(relations, migrate.dashtam_table_names())
    if foreign:
        listed = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise SafetyError(f"database {connected!r} holds tables that are not Dashtam's: {listed}")


async def init_test_db(settings: Settings, *, template: str) -> dict:
    """Check, then drop the schema of the test database and migrate it from empty to head.

    ``template`` is the test database the env file names; the target (``DATABASE_URL`` in
    effect) must be it or one of its clones.
    """
    dev_name = _dev_database_name(settings)
    target, project_id = settings.database_name, settings.PROJECT_ID
    problem = check_target(
        environment=settings.ENVIRONMENT,
        target=target,
        template=template,
        dev_database_name=dev_name,
        project_id=project_id,
    )
    if problem:
        raise SafetyError(problem)
    expected = expected_marker(target=target, template=template, project_id=project_id)

    started = time.perf_counter()
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await check_database(
                conn,
                target=target,
                expected=expected,
                project_id=project_id,
                dev_database_name=dev_name,
            )
            await migrate.lock(conn)
            for name, value in TEST_DATABASE_OPTIONS.items():
                # Identifiers cannot be bound; both come from our own constants and a checked name.
                await conn.execute(text(f'ALTER DATABASE "{target}" SET {name} = {value}'))
            # Dropping the schema also removes tables and types that are no longer in the models.
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
            outcome = await migrate.upgrade_to_head(conn, database=target)
            tables = sorted(await migrate.dashtam_tables_present(conn))
        leftovers = []
        if target == template:
            # Worker clones left by a crashed run; DROP DATABASE cannot run inside a transaction.
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                leftovers = await drop_leftover_clones(conn, template, project_id)
    finally:
        await engine.dispose()
    return {
        "database": target,
        "revision": outcome.after,
        "tables": tables,
        "options": TEST_DATABASE_OPTIONS,
        "leftovers": leftovers,
        "seconds": round(time.perf_counter() - started, 2),
    }


async def drop_leftover_clones(conn: AsyncConnection, template: str, project_id: str) -> list[str]:
    """Drop this role's databases marked as this project's clones of ``template``, only those."""
    driver = (await conn.get_raw_connection()).driver_connection
    role = await driver.fetchval("SELECT current_user")
    owned = await read_markers(driver, owner=role)
    names = [
        name
        for name in marked_test_databases(owned.values(), template=template, project_id=project_id)
        if name != template
    ]
    # force_drop waits out an autovacuum worker visiting a clone, which FORCE may not end for
    # the test role (seen: "permission denied to terminate process" on a fresh clone's sweep).
    for name in names:
        await force_drop(driver, name)
    return names


def template_name() -> str:
    """The test database the env file names (the process environment may point elsewhere)."""
    url = peek_env_file("DATABASE_URL")
    try:
        name = make_url(url).database if url else None
    except Exception:
        name = None
    if not name:
        raise SafetyError("the test env file names no database in DATABASE_URL")
    return name


async def _main() -> int:
    # Plain Settings, not TestSettings: a wrong configuration must end in a SAFETY refusal
    # (exit 2), not in a validation error.
    try:
        settings = load_settings(Settings)
    except ConfigError:
        environment = os.environ.get("ENVIRONMENT") or peek_env_file("ENVIRONMENT")
        if environment != "testing":
            raise SafetyError(f"ENVIRONMENT is {environment!r}, not 'testing'") from None
        raise
    summary = await init_test_db(settings, template=template_name())
    options = ", ".join(f"{k}={v}" for k, v in summary["options"].items())
    url = settings.database_url
    if summary["leftovers"]:
        log.info("dropped clones left by an earlier run: %s", ", ".join(summary["leftovers"]))
    log.info(
        "test database %s on %s:%s rebuilt by the migrations in %.2fs: at head %s, %d tables "
        "(%s); %s",
        summary["database"],
        url.host,
        url.port,
        summary["seconds"],
        summary["revision"],
        len(summary["tables"]),
        ", ".join(summary["tables"]),
        options,
    )
    return 0


def main() -> None:
    run("init-test-db", _main)


if __name__ == "__main__":
    main()
