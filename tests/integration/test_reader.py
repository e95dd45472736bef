"""The reader's connections (dashtam_core.database.PoolReader): at most DB_POOL_SIZE, reused,
ended when a read may have left one mid-exchange, counted for the metric, and closed by
close(). Its outage behaviour (a cut connection, a bug of ours) is in test_outages.py."""

import asyncio

import asyncpg
import pytest

from dashtam_core.database import Database

PID = "SELECT pg_backend_pid()"


@pytest.fixture
async def small_db(test_settings):
    db = Database.from_settings(test_settings.model_copy(update={"DB_POOL_SIZE": 2}))
    yield db
    await db.dispose()


async def test_reads_share_at_most_the_pools_size_of_connections(small_db):
    reader = small_db.reader
    assert reader.connections() == (0, 0)  # nothing opened before the first read

    rows = await asyncio.gather(
        *(reader.fetch("SELECT pg_backend_pid(), pg_sleep(0.05)") for _ in range(6))
    )

    assert len({row[0][0] for row in rows}) == 2
    assert reader.connections() == (0, 2)
    # One after another, a read takes the connection the last one gave back.
    first = (await reader.fetch(PID))[0][0]
    assert (await reader.fetch(PID))[0][0] == first


async def test_a_cancelled_read_ends_its_connection(small_db):
    """Cancelled mid-statement, the connection's protocol is in an unknown state: it is never
    handed to the next read."""
    reader = small_db.reader
    before = (await reader.fetch(PID))[0][0]
    slow = asyncio.create_task(reader.fetch("SELECT pg_backend_pid(), pg_sleep(30)"))
    await asyncio.sleep(0.2)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow

    assert reader.connections() == (0, 0)
    assert (await reader.fetch(PID))[0][0] != before


async def test_a_refused_statement_keeps_its_connection(small_db):
    reader = small_db.reader
    before = (await reader.fetch(PID))[0][0]
    with pytest.raises(asyncpg.UndefinedTableError):
        await reader.fetch("SELECT * FROM no_such_table")
    assert (await reader.fetch(PID))[0][0] == before
    assert reader.connections() == (0, 1)


async def test_close_ends_the_connections_and_a_later_read_opens_new_ones(small_db):
    reader = small_db.reader
    before = (await reader.fetch(PID))[0][0]
    slow = asyncio.create_task(reader.fetch("SELECT pg_backend_pid(), pg_sleep(0.3)"))
    await asyncio.sleep(0.1)

    await reader.close()
    assert reader.connections() == (1, 0)  # the read under way keeps its connection
    assert (await slow)[0][0] == before  # and finishes on it
    assert reader.connections() == (0, 0)  # which is then ended, not kept

    assert (await reader.fetch(PID))[0][0] != before
