"""Neither environment's role can open the other's database; neither is a superuser."""

import asyncpg
import pytest

from infra.envfiles import read_credentials
from tests.fixtures.environment import DEV_ENV_FILE, TEST_ENV_FILE


@pytest.fixture(scope="module")
def dev():
    return read_credentials(DEV_ENV_FILE)


@pytest.fixture(scope="module")
def test_creds():
    return read_credentials(TEST_ENV_FILE)


def connect(creds, database: str, password: str | None = None):
    return asyncpg.connect(
        host=creds.db_host,
        port=creds.db_port,
        user=creds.db_user,
        password=password or creds.db_password,
        database=database,
        timeout=5,
    )


async def test_dev_role_cannot_connect_to_the_test_database(dev, test_creds):
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await connect(dev, test_creds.db_name)


async def test_test_role_cannot_connect_to_the_dev_database(dev, test_creds):
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await connect(test_creds, dev.db_name)


async def test_dev_role_cannot_connect_to_the_maintenance_database(dev):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await connect(dev, "postgres")


async def test_dev_role_cannot_connect_to_a_worker_clone(dev, test_settings):
    # Clones inherit no CONNECT for PUBLIC: the development role stays out of them too.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await connect(dev, test_settings.database_name)


async def test_wrong_password_is_refused(test_creds):
    with pytest.raises(asyncpg.InvalidPasswordError):
        await connect(test_creds, test_creds.db_name, password="not-the-password")


async def test_roles_are_not_superusers_and_only_tests_may_create_databases(dev, test_creds):
    conn = await connect(test_creds, test_creds.db_name)
    try:
        rows = await conn.fetch(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
            "WHERE rolname = ANY($1::text[])",
            [dev.db_user, test_creds.db_user],
        )
        owner = await conn.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    roles = {r["rolname"]: r for r in rows}
    for role in (dev.db_user, test_creds.db_user):
        assert roles[role]["rolsuper"] is False
        assert roles[role]["rolcreaterole"] is False
    assert roles[dev.db_user]["rolcreatedb"] is False
    assert roles[test_creds.db_user]["rolcreatedb"] is True
    assert owner == test_creds.db_user


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE security_audit_logs SET action = 'x'",
        "DELETE FROM security_audit_logs",
        "ALTER TABLE security_audit_logs DISABLE TRIGGER security_audit_logs_append_only",
        "UPDATE provider_audit_logs SET action = 'x'",
        "DELETE FROM provider_audit_logs",
        "ALTER TABLE provider_audit_logs DISABLE TRIGGER provider_audit_logs_append_only",
        # DROP TABLE is refused in development, where the schema belongs to the audit owner; the
        # test role owns its schema to rebuild it every run (see test_local_runtime.py).
        "CREATE OR REPLACE FUNCTION provider_audit_logs_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    ],
)
async def test_the_application_role_can_only_read_and_append_the_audit_log(session, statement):
    from sqlalchemy import text

    table = "security_audit_logs" if "security" in statement else "provider_audit_logs"
    await session.execute(text(f"INSERT INTO {table} (action, details) VALUES ('probe', '{{}}')"))
    assert await session.scalar(text(f"SELECT count(*) FROM {table}")) == 1
    with pytest.raises(Exception, match=r"permission denied|must be owner"):
        async with session.begin_nested():
            await session.execute(text(statement))


async def test_deleting_a_user_keeps_the_audit_rows_with_a_null_reference(session):
    from sqlalchemy import select, text

    from dashtam_models import ProviderAuditLog
    from tests.fixtures.factories import create_connection

    connection = await create_connection(session)
    await session.execute(
        text("INSERT INTO provider_audit_logs (action, connection_id) VALUES ('connected', :c)"),
        {"c": connection.id},
    )
    await session.execute(text("DELETE FROM users"))
    rows = (
        await session.execute(select(ProviderAuditLog.action, ProviderAuditLog.connection_id))
    ).all()
    assert rows == [("connected", None)]
