"""Helpers for the migration tests: databases at a given revision, and their catalogs."""

from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from dashtam_core import migrate
from dashtam_core.schema_catalog import describe

# What dashtam-init-db built with create_all before migrations existed (frozen DDL).
LEGACY_SCHEMA = (Path(__file__).parent / "fixtures" / "sql" / "legacy_create_all.sql").read_text()


async def on(url: str, work, *, lock: bool = True):
    """Run ``work(conn)`` in one transaction on the database ``url`` names (schema-locked)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            if lock:
                await migrate.lock(conn)
            return await work(conn)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head"):
    return await on(url, lambda conn: migrate.upgrade(conn, revision))


async def downgrade(url: str, revision: str):
    return await on(url, lambda conn: migrate.downgrade(conn, revision))


async def migrated(scratch_databases, revision: str = "head") -> str:
    """A new scratch database upgraded from empty to ``revision``; returns its URL."""
    url = await scratch_databases.create()
    await upgrade(url, revision)
    return url


async def catalog_of(url: str) -> dict:
    return await on(url, describe, lock=False)
