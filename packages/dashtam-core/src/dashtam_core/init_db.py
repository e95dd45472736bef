"""``dashtam-init-db``: create what the schema needs, idempotently and safely in parallel.

Runs are serialised by a transaction-scoped PostgreSQL advisory lock, so two at the same moment
both succeed: the second finds everything in place and creates nothing.
"""

import logging

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

import dashtam_models
from dashtam_core.cli import run
from dashtam_core.config import Settings, load_settings
from dashtam_core.database import create_engine
from dashtam_models.audit import APPEND_ONLY_STATEMENTS

log = logging.getLogger("dashtam.init_db")

# Arbitrary but fixed: every initializer of this schema agrees on it.
SCHEMA_LOCK_KEY = 0x44A5_47A0
EXTENSIONS = ("citext",)


async def existing_tables(conn: AsyncConnection) -> set[str]:
    return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def create_schema(conn: AsyncConnection) -> list[str]:
    """Enable extensions and create missing tables on ``conn``; returns the tables created."""
    for extension in EXTENSIONS:
        await conn.execute(text(f"CREATE EXTENSION IF NOT EXISTS {extension}"))
    before = await existing_tables(conn)
    await conn.run_sync(dashtam_models.metadata.create_all, checkfirst=True)
    owns_audit_log = await conn.scalar(
        text(
            "SELECT tableowner = current_user FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename = 'provider_audit_logs'"
        )
    )
    if owns_audit_log:
        # Until the bootstrap hands the table to its own owner (infra/postgres/after_schema.sql).
        for statement in APPEND_ONLY_STATEMENTS:
            await conn.exec_driver_sql(statement)
    return [t.name for t in dashtam_models.metadata.sorted_tables if t.name not in before]


async def init_db(settings: Settings) -> list[str]:
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            created = await create_schema(conn)
    finally:
        await engine.dispose()
    return created


async def _main() -> int:
    settings = load_settings()
    created = await init_db(settings)
    tables = [t.name for t in dashtam_models.metadata.sorted_tables]
    if created:
        log.info("database %s: created %s", settings.database_name, ", ".join(created))
    else:
        log.info(
            "database %s: all %d tables present, nothing to do", settings.database_name, len(tables)
        )
    return 0


def main() -> None:
    run("init-db", _main)


if __name__ == "__main__":
    main()
