"""``dashtam-init-db``: bring the database to the newest migration, idempotently and safely.

Runs are serialised by a transaction-scoped PostgreSQL advisory lock and everything happens in
that one transaction, so two at the same moment both succeed (the second finds the schema at head)
and a failure leaves the database as it was. A database built by ``create_all`` before migrations
existed is adopted; one at a revision this code does not know is refused (see migrate.py).
"""

import logging

from dashtam_core import migrate
from dashtam_core.cli import run
from dashtam_core.config import Settings, load_settings
from dashtam_core.database import create_engine

log = logging.getLogger("dashtam.init_db")


async def init_db(settings: Settings) -> migrate.Outcome:
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await migrate.lock(conn)
            return await migrate.upgrade_to_head(conn, database=settings.database_name)
    finally:
        await engine.dispose()


async def _main() -> int:
    outcome = await init_db(load_settings())
    log.info(outcome.summary())
    return 0


def main() -> None:
    run("init-db", _main)


if __name__ == "__main__":
    main()
