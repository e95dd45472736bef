"""Per-worker test databases: clones of the test template, made and dropped safely.

The template (``dashtam_test``) is built once per run by init-test-db; every pytest-xdist worker
then clones it with ``CREATE DATABASE ... TEMPLATE`` (Django's ``--parallel`` does the same), which
copies files instead of replaying DDL. Every name passes the init-test-db safety rule first.
"""

import asyncpg
from sqlalchemy.engine import URL

from dashtam_core.safety import check_connected_database, check_test_database_config

# Durability is worth nothing in a database rebuilt for every run; speed is. ALTER DATABASE
# settings are not copied by CREATE DATABASE ... TEMPLATE, so every clone gets them again.
TEST_DATABASE_OPTIONS = {"synchronous_commit": "off"}

# The test role may connect here (and only here besides its own databases) to create and drop
# clones: nobody may be connected to a template while it is copied.
MAINTENANCE_DATABASE = "postgres"


class CloneError(Exception):
    """A clone that could not be made or checked; the message is one line."""


def clone_name(template: str, worker: str) -> str:
    """``dashtam_test`` + ``gw0`` -> ``dashtam_test_gw0`` (a serial run is worker ``main``)."""
    return f"{template}_{worker}"


def _connect_params(url: URL, database: str) -> dict:
    return {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": database,
        "timeout": 10,
    }


async def maintenance_connection(url: URL) -> asyncpg.Connection:
    return await asyncpg.connect(**_connect_params(url, MAINTENANCE_DATABASE))


async def clone_database(
    *, template_url: URL, name: str, environment: str, dev_database_name: str
) -> URL:
    """Create ``name`` from the template (replacing a leftover), check it, return its URL."""
    url = template_url.set(database=name)
    problem = check_test_database_config(
        environment=environment,
        database_url=url.render_as_string(hide_password=False),
        dev_database_name=dev_database_name,
    )
    if problem:
        raise CloneError(f"SAFETY: refusing to create clone {name!r}: {problem}")
    conn = await maintenance_connection(template_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_url.database}"')
        # New databases grant CONNECT to PUBLIC; clones are for the test role alone.
        await conn.execute(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
        for option, value in TEST_DATABASE_OPTIONS.items():
            await conn.execute(f'ALTER DATABASE "{name}" SET {option} = {value}')
    finally:
        await conn.close()
    clone = await asyncpg.connect(**_connect_params(url, name))
    try:
        connected = await clone.fetchval("SELECT current_database()")
    finally:
        await clone.close()
    problem = check_connected_database(
        configured=name, connected=connected, dev_database_name=dev_database_name
    )
    if problem:
        raise CloneError(f"SAFETY: clone check failed: {problem}")
    return url


async def drop_database(*, url: URL, name: str) -> None:
    conn = await maintenance_connection(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
