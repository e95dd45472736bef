"""Each worker has its own database and Valkey index; each test its own rolled-back transaction.

The pairs below pass in either order (the suite runs in random order): one writes, the other
asserts that nothing is there.
"""

import pytest
from sqlalchemy import func, select, text

from dashtam_models import Provider, ProviderConnection, User
from tests.fixtures.environment import WORKER
from tests.fixtures.factories import create_connection, create_user


async def test_this_worker_uses_its_own_database(session):
    assert await session.scalar(text("SELECT current_database()")) == f"dashtam_test_{WORKER}"


async def test_the_worker_database_has_the_test_speed_options(session):
    assert await session.scalar(text("SHOW synchronous_commit")) == "off"


async def test_the_app_uses_the_worker_database(app):
    async with app.state.ctx.db.engine.connect() as conn:
        assert await conn.scalar(text("SELECT current_database()")) == f"dashtam_test_{WORKER}"


async def test_this_worker_uses_its_own_valkey_index(redis_client, test_settings):
    index = int(test_settings.REDIS_URL.rpartition("/")[2])
    assert index >= 1  # never the development index 0
    assert redis_client.connection_pool.connection_kwargs["db"] == index


async def test_writer_commits_a_user(session):
    await create_user(session, email="writer@example.com")
    await session.commit()  # releases a savepoint; the test's transaction is rolled back later
    assert await session.scalar(select(func.count()).select_from(User)) == 1


async def test_reader_sees_no_users(session):
    assert await session.scalar(select(func.count()).select_from(User)) == 0


async def test_writer_sets_a_valkey_key(redis_client):
    await redis_client.set("isolation-probe", "1")
    assert await redis_client.get("isolation-probe") == "1"


async def test_reader_sees_no_valkey_key(redis_client):
    assert await redis_client.get("isolation-probe") is None


async def test_factories_build_the_whole_chain(session):
    connection = await create_connection(session)
    provider = await session.get(Provider, connection.provider_id)
    user = await session.get(User, provider.user_id)
    assert connection.status == "pending"
    assert user.email.endswith("@example.com")
    assert await session.scalar(select(func.count()).select_from(ProviderConnection)) == 1


async def test_a_failed_statement_inside_a_savepoint_does_not_end_the_test_transaction(session):
    await create_user(session, email="dup@example.com")
    await session.commit()
    with pytest.raises(Exception, match="duplicate key"):
        async with session.begin_nested():
            await create_user(session, email="DUP@example.com")  # citext: the same address
    assert await session.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.commits
async def test_committed_rows_are_seen_by_other_connections(engine, session):
    await create_user(session, email="committed@example.com")
    await session.commit()
    async with engine.connect() as other:
        count = await other.scalar(text("SELECT count(*) FROM users"))
    assert count == 1


@pytest.mark.commits
async def test_committing_tests_start_from_empty_tables_too(engine, connection):
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM users")) == 0
