"""``dashtam-init-test-db``: rebuild the test schema from scratch, and never anything else.

Before touching anything it refuses (exit 2, a message starting ``SAFETY:``, nothing dropped)
unless ALL hold: ENVIRONMENT is ``testing``; the configured database name and the connected
``current_database()`` both end in ``_test`` or ``_test_<suffix>``; and it is not the development
database.
"""

import logging
import os
import time

from sqlalchemy import text

import dashtam_models
from dashtam_core.cli import CommandError, run
from dashtam_core.config import ConfigError, Settings, load_settings, peek_env_file
from dashtam_core.database import create_engine
from dashtam_core.init_db import SCHEMA_LOCK_KEY, create_schema, existing_tables
from dashtam_core.safety import (
    check_connected_database,
    check_test_database_config,
    is_test_database_name,
)
from dashtam_core.test_databases import TEST_DATABASE_OPTIONS

log = logging.getLogger("dashtam.init_test_db")

SAFETY_EXIT_CODE = 2


class SafetyError(CommandError):
    def __init__(self, reason: str):
        # The line starts with SAFETY: so scripts and people can tell a refusal from a failure.
        super().__init__(
            f"SAFETY: init-test-db refused, nothing was touched: {reason}",
            SAFETY_EXIT_CODE,
            prefixed=False,
        )


def _dev_database_name(settings: Settings) -> str:
    return getattr(settings, "DEV_DATABASE_NAME", "dashtam")


async def init_test_db(settings: Settings) -> dict:
    """Check, then drop and recreate the schema of the configured test database."""
    dev_name = _dev_database_name(settings)
    problem = check_test_database_config(
        environment=settings.ENVIRONMENT,
        database_url=settings.DATABASE_URL,
        dev_database_name=dev_name,
    )
    if problem:
        raise SafetyError(problem)

    started = time.perf_counter()
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            connected = await conn.scalar(text("SELECT current_database()"))
            problem = check_connected_database(
                configured=settings.database_name, connected=connected, dev_database_name=dev_name
            )
            if problem:
                raise SafetyError(problem)
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            for name, value in TEST_DATABASE_OPTIONS.items():
                # Identifiers cannot be bound; both come from our own constants and a checked name.
                await conn.execute(text(f'ALTER DATABASE "{connected}" SET {name} = {value}'))
            # Dropping the schema also removes tables and types that are no longer in the models.
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
            created = await create_schema(conn)
            present = await existing_tables(conn)
        missing = [t.name for t in dashtam_models.metadata.sorted_tables if t.name not in present]
        if missing:
            raise CommandError(f"schema incomplete after rebuild, missing: {', '.join(missing)}")
        # Worker clones left by a crashed run; DROP DATABASE cannot run inside a transaction.
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            leftovers = await drop_leftover_clones(conn, connected)
    finally:
        await engine.dispose()
    return {
        "database": connected,
        "tables": created,
        "options": TEST_DATABASE_OPTIONS,
        "leftovers": leftovers,
        "seconds": round(time.perf_counter() - started, 2),
    }


async def drop_leftover_clones(conn, template: str) -> list[str]:
    """Drop ``<template>_<suffix>`` databases of this role (each passes the safety rule)."""
    rows = await conn.execute(
        text(
            "SELECT datname FROM pg_database WHERE datdba = "
            "(SELECT oid FROM pg_roles WHERE rolname = current_user) AND datname LIKE :pattern"
        ),
        {"pattern": template.replace("_", r"\_") + r"\_%"},
    )
    names = [name for (name,) in rows if is_test_database_name(name) and name != template]
    for name in names:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return names


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
    summary = await init_test_db(settings)
    options = ", ".join(f"{k}={v}" for k, v in summary["options"].items())
    url = settings.database_url
    if summary["leftovers"]:
        log.info("dropped clones left by an earlier run: %s", ", ".join(summary["leftovers"]))
    log.info(
        "test database %s on %s:%s rebuilt in %.2fs: %d tables (%s); %s",
        summary["database"],
        url.host,
        url.port,
        summary["seconds"],
        len(summary["tables"]),
        ", ".join(summary["tables"]),
        options,
    )
    return 0


def main() -> None:
    run("init-test-db", _main)


if __name__ == "__main__":
    main()
