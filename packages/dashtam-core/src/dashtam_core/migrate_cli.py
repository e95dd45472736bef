"""``dashtam-migrate``: the migrations of the database the settings name (the tasks' backend).

    dashtam-migrate upgrade [REVISION]     to head (adopting a pre-migrations database) or REVISION
    dashtam-migrate downgrade REVISION     e.g. -1, a revision id, or base
    dashtam-migrate current                where the database is, and whether that is head
    dashtam-migrate history                every revision, oldest first, the current one marked
    dashtam-migrate revision MESSAGE       autogenerate a revision from the models into versions/
    dashtam-migrate check                  exit 1 if the models differ from a database at head

Each command runs in one transaction under the schema lock: it finishes whole or not at all.
"""

import argparse
import logging
import sys

import asyncpg
from alembic import command
from alembic.util.exc import CommandError as AlembicCommandError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from dashtam_core import migrate
from dashtam_core.cli import CommandError, run
from dashtam_core.config import Settings, load_settings
from dashtam_core.database import create_engine

log = logging.getLogger("dashtam.migrate")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dashtam-migrate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="upgrade to head (default) or to REVISION")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="downgrade to REVISION (-1, an id, or base)")
    down.add_argument("revision")
    sub.add_parser("current", help="the database's revision")
    sub.add_parser("history", help="every revision, oldest first")
    rev = sub.add_parser("revision", help="autogenerate a new revision from the models")
    rev.add_argument("message")
    rev.add_argument("--empty", action="store_true", help="write one even without model changes")
    sub.add_parser("check", help="fail if the models differ from the database")
    return parser


async def _in_transaction(settings: Settings, work):
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await migrate.lock(conn)
            return await work(conn)
    except AlembicCommandError as exc:
        # "Can't locate revision identified by 'x'", "Destination base is not a valid ..."
        raise CommandError(str(exc).splitlines()[0]) from None
    finally:
        await engine.dispose()


async def _require_head(conn: AsyncConnection, database: str) -> str:
    current, target = await migrate.current_revision(conn), migrate.head()
    if current != target:
        raise CommandError(
            f"database {database} is at {current or 'no revision'}, not head {target}: "
            "run `inv migrate` first, so the new revision holds only your model changes"
        )
    return current


async def upgrade(settings: Settings, revision: str) -> None:
    database = settings.database_name

    async def work(conn: AsyncConnection) -> str:
        if revision == "head":
            return (await migrate.upgrade_to_head(conn, database=database)).summary()
        before, after = await migrate.upgrade(conn, revision)
        return f"database {database}: {before or 'empty'} -> {migrate.describe_revision(after)}"

    log.info(await _in_transaction(settings, work))


async def downgrade(settings: Settings, revision: str) -> None:
    database = settings.database_name

    async def work(conn: AsyncConnection) -> str:
        if await migrate.current_revision(conn) is None:
            raise CommandError(f"database {database} has no revision to downgrade from")
        try:
            before, after = await migrate.downgrade(conn, revision)
        except DBAPIError as exc:
            if not isinstance(exc.orig.__cause__, asyncpg.InsufficientPrivilegeError):
                raise
            raise CommandError(
                f"the downgrade needs to drop something the application's role does not own "
                f"({str(exc.orig.__cause__).splitlines()[0]}): the audit log belongs to "
                "dashtam_audit_owner, which keeps it append-only. Nothing was changed; to start "
                "the dev database over, `inv clean`"
            ) from None
        return (
            f"database {database}: downgraded from {before} to {migrate.describe_revision(after)}"
        )

    log.info(await _in_transaction(settings, work))


async def current(settings: Settings) -> None:
    database = settings.database_name

    async def work(conn: AsyncConnection) -> str:
        revision = await migrate.current_revision(conn)
        migrate.check_known(revision, database)
        target = migrate.head()
        if revision == target:
            where = "head"
        elif revision is None:
            where = "no revision yet: run `inv migrate`"
        else:
            behind = migrate.revisions_between(revision, target)
            where = f"{len(behind)} revision(s) behind head {target}: run `inv migrate`"
        return f"database {database}: {migrate.describe_revision(revision)}, {where}"

    print(await _in_transaction(settings, work))


async def history(settings: Settings) -> None:
    async def work(conn: AsyncConnection) -> str | None:
        return await migrate.current_revision(conn)

    revision = await _in_transaction(settings, work)
    for script in reversed(list(migrate.script_directory().walk_revisions())):
        mark = "  <- current" if script.revision == revision else ""
        print(f"{script.revision}  {script.doc}  ({script.path.rsplit('/', 1)[-1]}){mark}")


async def revision(settings: Settings, message: str, empty: bool) -> None:
    database = settings.database_name

    async def work(conn: AsyncConnection) -> str:
        await _require_head(conn, database)
        operations = await migrate.pending_operations(conn)
        if not operations and not empty:
            raise CommandError(
                "the models match the database: nothing to write (--empty for a revision "
                "you fill in by hand, e.g. a data migration)"
            )

        def write(sync) -> str:
            script = command.revision(
                migrate.alembic_config(sync), message=message, autogenerate=not empty
            )
            return script.path

        path = await conn.run_sync(write)
        return f"wrote {path} ({len(operations)} change(s)); read it, then `inv migrate`"

    print(await _in_transaction(settings, work))


async def check(settings: Settings) -> int:
    database = settings.database_name

    async def work(conn: AsyncConnection) -> list:
        await _require_head(conn, database)
        return await migrate.pending_operations(conn)

    operations = await _in_transaction(settings, work)
    if operations:
        print(f"the models differ from database {database} at head:", file=sys.stderr)
        for operation in operations:
            print(f"  {operation}", file=sys.stderr)
        return 1
    print(f"database {database}: the models match head")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)

    async def _main() -> int | None:
        settings = load_settings()
        match args.command:
            case "upgrade":
                await upgrade(settings, args.revision)
            case "downgrade":
                await downgrade(settings, args.revision)
            case "current":
                await current(settings)
            case "history":
                await history(settings)
            case "revision":
                await revision(settings, args.message, args.empty)
            case "check":
                return await check(settings)
        return 0

    run("migrate", _main)


if __name__ == "__main__":
    main()
