"""The guard that keeps the test initializer (and every step that drops or rebuilds a test
database: the clone step, the leftover sweep, `inv test-clean`) away from every database that is
not this project's test database.

"The name contains 'test'" is too weak (``latest_prod`` and ``contest`` contain it), so a test
database name must *end* in ``_test`` or ``_test_<suffix>`` (e.g. ``dashtam_test_gw0``); and a
name is only a convention, so the database must also carry the marker this project wrote when it
made it (``read_markers`` is the one place that reads markers, ``marked_test_databases`` the one
place that decides which databases carry theirs).
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    import asyncpg

TEST_DATABASE_NAME = re.compile(r"^[A-Za-z0-9_]*[A-Za-z0-9]_test(_[A-Za-z0-9]+)?$")


def is_test_database_name(name: str | None) -> bool:
    return bool(name) and TEST_DATABASE_NAME.fullmatch(name) is not None


def check_test_database_config(
    *, environment: str | None, database_url: str, dev_database_name: str
) -> str | None:
    """What is wrong with pointing the test initializer at this configuration, or None."""
    if environment != "testing":
        return f"ENVIRONMENT is {environment!r}, not 'testing'"
    try:
        configured = make_url(database_url).database
    except Exception:
        return "DATABASE_URL is not a database URL"
    if not is_test_database_name(configured):
        return (
            f"configured database {configured!r} is not a test database "
            "(its name must end in _test or _test_<suffix>)"
        )
    if configured == dev_database_name:
        return f"configured database {configured!r} is the development database"
    return None


def check_connected_database(
    *, configured: str | None, connected: str | None, dev_database_name: str
) -> str | None:
    """What is wrong with the database we actually reached, or None."""
    if not is_test_database_name(connected):
        return f"connected database {connected!r} is not a test database"
    if connected != configured:
        return f"connected database {connected!r} differs from the configured {configured!r}"
    if connected == dev_database_name:
        return f"connected database {connected!r} is the development database"
    return None


# --- Markers: a name is a convention, a marker is proof -------------------------------------
#
# The project writes a COMMENT ON DATABASE when it creates a test database: the bootstrap for
# the template (dashtam_test), the clone step for each worker clone. The comment holds a fixed tag
# and the checkout's PROJECT_ID (a random value `inv setup` writes into env/.env.test), so a
# database another application made, or another checkout's, never carries it. CREATE DATABASE
# ... TEMPLATE does not copy comments: a clone is marked by the step that makes it, as a clone.

MARKER_TAG = "dashtam-test-database v1"
_PLACEHOLDERS = ("", "change-me")


def template_marker(project_id: str) -> str:
    return f"{MARKER_TAG} project={project_id} template"


def clone_marker(project_id: str, template: str) -> str:
    return f"{MARKER_TAG} project={project_id} clone-of={template}"


FIX = "get a proper test database with `inv test-setup`"


def check_project_id(project_id: str | None) -> str | None:
    if (project_id or "").strip().lower() in _PLACEHOLDERS:
        return "PROJECT_ID is not set in the test env file (run `inv setup`, which adds it)"
    return None


def expected_marker(*, target: str, template: str, project_id: str) -> str | None:
    """The marker ``target`` must carry: the template's, or a clone's of that template.

    None when ``target`` is neither the test database named in the env file nor one of its
    ``<template>_<suffix>`` clones.
    """
    if target == template:
        return template_marker(project_id)
    suffix = target.removeprefix(f"{template}_")
    if suffix != target and suffix.isalnum() and suffix.isascii():
        return clone_marker(project_id, template)
    return None


def check_target(
    *, environment: str | None, target: str, template: str, dev_database_name: str, project_id: str
) -> str | None:
    """What is wrong with rebuilding ``target`` (before connecting), or None."""
    if environment != "testing":
        return f"ENVIRONMENT is {environment!r}, not 'testing'"
    problem = check_project_id(project_id)
    if problem:
        return problem
    if not is_test_database_name(target):
        return (
            f"database {target!r} is not a test database "
            "(its name must end in _test or _test_<suffix>)"
        )
    if target == dev_database_name:
        return f"database {target!r} is the development database"
    if expected_marker(target=target, template=template, project_id=project_id) is None:
        return (
            f"database {target!r} is neither the test database the env file names "
            f"({template!r}) nor one of its clones ({template}_<worker>)"
        )
    return None


def check_marker(*, name: str, comment: str | None, expected: str, project_id: str) -> str | None:
    """What is wrong with the marker ``name`` carries, or None."""
    if comment == expected:
        return None
    if not comment or not comment.startswith(MARKER_TAG):
        return f"database {name!r} carries no Dashtam test-database marker: this project did not create it"
    if f"project={project_id} " not in f"{comment} ":
        return f"database {name!r} is marked for another Dashtam checkout (different PROJECT_ID)"
    return f"database {name!r} is marked {comment.removeprefix(MARKER_TAG).strip()!r}, not {expected.removeprefix(MARKER_TAG).strip()!r}"


@dataclass(frozen=True)
class DatabaseMarker:
    """A database as the shared catalog describes it: its owner and its marker (the COMMENT ON
    DATABASE, None when it has none)."""

    name: str
    owner: str
    marker: str | None


# The one statement that reads the markers, for every caller (the clone step, init-test-db, the
# leftover sweep, `inv test-clean`, the bootstrap that marks an older test database).
MARKERS_QUERY = """
    SELECT d.datname, r.rolname, shobj_description(d.oid, 'pg_database')
      FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
     WHERE ($1::text[] IS NULL OR d.datname = ANY($1::text[]))
       AND ($2::text IS NULL OR r.rolname = $2)
"""


async def read_markers(
    conn: "asyncpg.Connection", *, names: Iterable[str] | None = None, owner: str | None = None
) -> dict[str, DatabaseMarker]:
    """The databases named in ``names`` (all when None) that ``owner`` owns (anyone's when
    None), by name; a name that is not there is not in the answer."""
    rows = await conn.fetch(MARKERS_QUERY, None if names is None else list(names), owner)
    return {name: DatabaseMarker(name, owner_, marker) for name, owner_, marker in rows}


def marked_test_databases(
    databases: Iterable[DatabaseMarker], *, template: str, project_id: str
) -> list[str]:
    """Those of ``databases`` marked as this project's test databases: the template carrying
    the template's marker, a ``<template>_<suffix>`` clone carrying a clone's of it."""
    return [
        database.name
        for database in databases
        if database.marker is not None
        and database.marker
        == expected_marker(target=database.name, template=template, project_id=project_id)
    ]


def comment_on_database(name: str, comment: str) -> str:
    """The COMMENT ON DATABASE statement (utility statements take no bound parameters)."""
    return f"COMMENT ON DATABASE \"{name}\" IS '{comment.replace(chr(39), chr(39) * 2)}'"


# Every relation outside the system schemas, as (schema, name): a table of someone else's
# anywhere in a database makes it not a test database to rebuild.
RELATIONS_QUERY = """
    SELECT n.nspname, c.relname
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
"""


def foreign_tables(tables: list[tuple[str, str]], dashtam_tables: set[str]) -> list[str]:
    """Tables (schema, name) that are neither Dashtam's nor Alembic's, as schema.name."""
    return sorted(
        f"{schema}.{name}"
        for schema, name in tables
        if schema != "public" or name not in dashtam_tables
    )
