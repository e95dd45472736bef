"""Per-worker test databases: clones of the test template, made and dropped safely.

The template (``dashtam_test``) is built once per run by init-test-db; every pytest-xdist worker
then clones it with ``CREATE DATABASE ... TEMPLATE`` (Django's ``--parallel`` does the same), which
copies files instead of replaying DDL. Every name passes the init-test-db safety rule first, the
template must carry this project's template marker, a leftover clone is replaced only when it
carries this project's clone marker, and each new clone is marked as one (comments are not
copied by TEMPLATE).
"""

import asyncio

import asyncpg
from sqlalchemy.engine import URL

from dashtam_core.test_database_guard import (
    check_connected_database,
    check_marker,
    check_target,
    clone_marker,
    comment_on_database,
    read_markers,
    template_marker,
)

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
    *, template_url: URL, name: str, environment: str, dev_database_name: str, project_id: str
) -> URL:
    """Create ``name`` from the template (replacing a leftover), mark and check it, return its URL."""
    template = template_url.database
    problem = check_target(
        environment=environment,
        target=name,
        template=template,
        dev_database_name=dev_database_name,
        project_id=project_id,
    )
    if problem:
        raise CloneError(f"SAFETY: refusing to create clone {name!r}: {problem}")
    url = template_url.set(database=name)
    marker = clone_marker(project_id, template)
    conn = await maintenance_connection(template_url)
    try:
        found = await read_markers(conn, names=[template, name])
        problem = check_marker(
            name=template,
            comment=found[template].marker if template in found else None,
            expected=template_marker(project_id),
            project_id=project_id,
        )
        if problem:
            raise CloneError(f"SAFETY: refusing to clone {template!r}: {problem}")
        if name in found:
            problem = check_marker(
                name=name, comment=found[name].marker, expected=marker, project_id=project_id
            )
            if problem:
                raise CloneError(f"SAFETY: refusing to replace {name!r}: {problem}")
            await force_drop(conn, name)
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        await conn.execute(comment_on_database(name, marker))
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


async def drop_database(*, url: URL, name: str, patience: float = 5.0) -> None:
    conn = await maintenance_connection(url)
    try:
        await force_drop(conn, name, patience=patience)
    finally:
        await conn.close()


async def force_drop(conn: asyncpg.Connection, name: str, *, patience: float = 5.0) -> None:
    """DROP DATABASE ... WITH (FORCE), as the test role.

    FORCE ends the sessions the role may end; an autovacuum worker that has just started on a
    fresh database is not one of them (PostgreSQL 18 reserves that for
    pg_signal_autovacuum_worker), and the drop fails until it finishes: a moment later on a
    small database, longer after a benchmark's million rows (its callers wait longer).
    """
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(0.2)
