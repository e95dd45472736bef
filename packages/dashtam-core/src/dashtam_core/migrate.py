"""Alembic, the one way a Dashtam schema is built: on one connection, in one transaction.

Every caller (init-db, init-test-db, ``dashtam-migrate``) opens the connection, takes the schema
advisory lock and hands the connection to Alembic (``config.attributes["connection"]``), so the
lock, the checks and the migrations share one transaction: a failure leaves the database as it
was, never half-migrated. The revisions live in ``dashtam_core/migrations/versions``.
"""

import json
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

import dashtam_models
from dashtam_core.cli import CommandError
from dashtam_core.schema_catalog import VERSION_TABLE, describe, differences, restrict

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# What the initial revision builds, frozen as a catalog (tests keep it true to the revision):
# a database made by create_all before migrations existed must match it to be adopted.
INITIAL_SCHEMA_FILE = MIGRATIONS_DIR / "initial_schema.json"
# Arbitrary but fixed: every initializer and migration run of this schema agrees on it.
SCHEMA_LOCK_KEY = 0x44A5_47A0

# Dated file names, so `ls versions/` reads as a history.
FILE_TEMPLATE = "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s"


class _QuietAlembic(logging.Filter):
    """Keep Alembic's "Running upgrade a -> b" lines; drop its start-up chatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl", "Will assume"))


logging.getLogger("alembic.runtime.migration").addFilter(_QuietAlembic())
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


class MigrationError(CommandError):
    """A database the migrations must not or cannot touch; the message is one line."""


def _include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    # Only our schema; other schemas in the database are not Dashtam's to autogenerate about.
    return name in (None, "public") if type_ == "schema" else True


# How Alembic compares the models with a database: the same for autogenerate and the drift check.
CONTEXT_OPTIONS = {
    "target_metadata": dashtam_models.metadata,
    "compare_type": True,
    "compare_server_default": True,
    "include_name": _include_name,
}


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", FILE_TEMPLATE)
    config.set_main_option("truncate_slug_length", "40")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def script_directory() -> ScriptDirectory:
    """The revisions, read once per process (each question about them used to re-read all)."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise MigrationError(
            f"the migrations have {len(heads)} heads ({', '.join(heads)}): two revisions share "
            "a parent; set one's down_revision to the other (see docs/migrations.md)"
        )
    return heads[0]


def initial_revision() -> str:
    return script_directory().get_base()


def revisions_between(older: str, newer: str) -> list[str]:
    """The revisions an upgrade from ``older`` to ``newer`` runs."""
    return [s.revision for s in script_directory().iterate_revisions(newer, older)]


def describe_revision(revision: str | None) -> str:
    if revision is None:
        return "an empty schema (no revision)"
    script = script_directory().get_revision(revision)
    return f"{revision} ({script.doc})" if script is not None else revision


async def lock(conn: AsyncConnection) -> None:
    """Serialise schema changes: held until the surrounding transaction ends."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})


async def current_revision(conn: AsyncConnection) -> str | None:
    """The database's revision, or None when it has none (no version table, or an empty one)."""
    if not await conn.scalar(text(f"SELECT to_regclass('public.{VERSION_TABLE}') IS NOT NULL")):
        return None
    heads = await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_heads())
    if len(heads) > 1:
        raise MigrationError(f"the database is at several revisions at once: {', '.join(heads)}")
    return heads[0] if heads else None


def check_known(revision: str | None, database: str) -> None:
    known = {script.revision for script in script_directory().walk_revisions()}
    if revision is not None and revision not in known:
        raise MigrationError(
            f"database {database} is at revision {revision!r}, which this code does not know "
            "(migrated by a newer checkout?): run that code, or start over with `inv clean`"
        )


async def _run(conn: AsyncConnection, operation, *args) -> None:
    await conn.run_sync(lambda sync: operation(alembic_config(sync), *args))


def dashtam_table_names() -> set[str]:
    """Every table a Dashtam schema may hold: the models', retired ones, and Alembic's own."""
    models = {t.name for t in dashtam_models.metadata.sorted_tables}
    return models | set(dashtam_models.RETIRED_TABLES) | {VERSION_TABLE}


async def dashtam_tables_present(conn: AsyncConnection) -> set[str]:
    """Dashtam's tables (not Alembic's) that the connected database holds in ``public``."""
    rows = await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    ours = dashtam_table_names() - {VERSION_TABLE}
    return {name for (name,) in rows if name in ours}


async def adoption_problems(conn: AsyncConnection) -> list[str]:
    """How this pre-migrations database differs from what the initial revision builds."""
    expected = json.loads(INITIAL_SCHEMA_FILE.read_text())
    actual = restrict(await describe(conn), set(expected["tables"]))
    return differences(expected, actual)


@dataclass(frozen=True)
class Outcome:
    database: str
    before: str | None
    after: str
    adopted: bool = False

    def summary(self) -> str:
        if self.adopted:
            return (
                f"database {self.database}: adopted (built before migrations, it matches the "
                f"initial revision and was stamped {self.before}); now at head {self.after}"
            )
        if self.before == self.after:
            return (
                f"database {self.database}: at head {describe_revision(self.after)}, nothing to do"
            )
        start = self.before or "an empty schema"
        return f"database {self.database}: upgraded from {start} to head {describe_revision(self.after)}"


async def upgrade_to_head(conn: AsyncConnection, *, database: str) -> Outcome:
    """Bring the database to head; the caller holds the lock inside an open transaction.

    A database without migration history but with Dashtam's tables (built by ``create_all``
    before migrations existed) is adopted: compared with the initial revision, stamped, then
    upgraded. One that differs is refused untouched, and so is one at an unknown revision.
    """
    target = head()
    before = await current_revision(conn)
    check_known(before, database)
    adopted = False
    if before is None and await dashtam_tables_present(conn):
        problems = await adoption_problems(conn)
        if problems:
            raise MigrationError(
                f"database {database} holds Dashtam tables but no migration history, and they "
                f"differ from the initial revision ({'; '.join(problems)}): nothing was changed"
            )
        before = initial_revision()
        await _run(conn, command.stamp, before)
        adopted = True
    if before != target:
        await _run(conn, command.upgrade, target)
    return Outcome(database=database, before=before, after=target, adopted=adopted)


async def upgrade(conn: AsyncConnection, revision: str) -> tuple[str | None, str | None]:
    before = await current_revision(conn)
    await _run(conn, command.upgrade, revision)
    return before, await current_revision(conn)


async def downgrade(conn: AsyncConnection, revision: str) -> tuple[str | None, str | None]:
    before = await current_revision(conn)
    await _run(conn, command.downgrade, revision)
    return before, await current_revision(conn)


async def pending_operations(conn: AsyncConnection, metadata: MetaData | None = None) -> list:
    """What autogenerate would write for this database: empty when the models match it."""
    metadata = dashtam_models.metadata if metadata is None else metadata

    def compare(sync: Connection) -> list:
        context = MigrationContext.configure(
            sync, opts={**CONTEXT_OPTIONS, "target_metadata": metadata}
        )
        # Quietly: the caller reports the differences (autogenerate logs each one again).
        compare_log = logging.getLogger("alembic.autogenerate.compare")
        level = compare_log.level
        compare_log.setLevel(logging.WARNING)
        try:
            return compare_metadata(context, metadata)
        finally:
            compare_log.setLevel(level)

    return await conn.run_sync(compare)
