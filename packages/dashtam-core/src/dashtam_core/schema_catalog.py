"""A database schema as plain data, read from PostgreSQL's catalogs, so two schemas can be compared.

Adoption uses it (is this database, built before migrations existed, exactly what the initial
revision builds?) and so do the migration tests (upgrade, downgrade, upgrade again: the same
schema?). It covers what a migration can change in the ``public`` schema: tables, columns with
their types, nullability and defaults, constraints, indexes, triggers, functions, sequences,
enum and domain types, and the extensions. Owners and privileges are not schema (the bootstrap
and after_schema.sql set them), and neither is Alembic's own version table.
"""

import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

VERSION_TABLE = "alembic_version"
SCHEMA = "public"

# Bound as :schema and :version_table. Objects that belong to an extension (citext's functions
# and operators, deptype 'e' in pg_depend) are the extension's, not the schema's.

_QUERIES = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') AND c.relname <> :version_table
           AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY c.relname, a.attnum""",
    "constraints": """
        SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
          FROM pg_constraint k
          JOIN pg_class c ON c.oid = k.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = :schema AND c.relname <> :version_table
         ORDER BY 1, 2""",
    "indexes": """
        SELECT t.relname, i.relname, pg_get_indexdef(x.indexrelid)
          FROM pg_index x
          JOIN pg_class i ON i.oid = x.indexrelid
          JOIN pg_class t ON t.oid = x.indrelid
          JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = :schema AND t.relname <> :version_table
         ORDER BY 1, 2""",
    "triggers": """
        SELECT c.relname, g.tgname, pg_get_triggerdef(g.oid)
          FROM pg_trigger g
          JOIN pg_class c ON c.oid = g.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = :schema AND NOT g.tgisinternal
         ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
          FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = :schema AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
         ORDER BY 1, 2""",
    "sequences": """
        SELECT c.relname, '', ''
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = :schema AND c.relkind = 'S'
         ORDER BY 1""",
    "types": """
        SELECT t.typname, t.typtype::text, format_type(t.typbasetype, t.typtypmod)
               || coalesce(' ' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                     FROM pg_enum e WHERE e.enumtypid = t.oid), '')
          FROM pg_type t
          JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = :schema AND t.typtype IN ('e', 'd')
           AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')
         ORDER BY 1""",
    "extensions": "SELECT extname, '', '' FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1",
}

_SPACE = re.compile(r"\s+")
_SINGULAR = {
    "constraints": "constraint",
    "indexes": "index",
    "triggers": "trigger",
    "functions": "function",
    "sequences": "sequence",
    "types": "type",
    "extensions": "extension",
}


def _normalise(definition: str | None) -> str | None:
    # A function's source keeps its author's indentation; the schema is the same without it.
    return _SPACE.sub(" ", definition).strip() if definition else definition


async def describe(conn: AsyncConnection) -> dict:
    """The schema of the connected database (``public``) as JSON-ready data."""
    catalog: dict = {"tables": {}}
    for kind, query in _QUERIES.items():
        params = {"schema": SCHEMA, "version_table": VERSION_TABLE}
        rows = (await conn.execute(text(query), params)).all()
        if kind == "columns":
            for table, column, type_, not_null, default in rows:
                catalog["tables"].setdefault(table, []).append(
                    [column, type_, bool(not_null), default]
                )
        elif kind in ("constraints", "indexes", "triggers", "functions"):
            catalog[kind] = sorted(
                [owner, name, _normalise(definition)] for owner, name, definition in rows
            )
        else:
            catalog[kind] = sorted([name, *rest] for name, *rest in rows)
    return catalog


def restrict(catalog: dict, tables: set[str]) -> dict:
    """Only what belongs to ``tables`` (and the schema-wide objects), for a partial comparison."""
    return {
        "tables": {t: c for t, c in catalog["tables"].items() if t in tables},
        "constraints": [c for c in catalog["constraints"] if c[0] in tables],
        "indexes": [i for i in catalog["indexes"] if i[0] in tables],
        "triggers": [t for t in catalog["triggers"] if t[0] in tables],
        **{k: catalog[k] for k in ("functions", "sequences", "types", "extensions")},
    }


def differences(expected: dict, actual: dict, limit: int = 3) -> list[str]:
    """Short human descriptions of how ``actual`` differs from ``expected`` (empty: the same)."""
    found: list[str] = []
    for table in sorted(expected["tables"].keys() - actual["tables"].keys()):
        found.append(f"table {table} is missing")
    for table in sorted(actual["tables"].keys() - expected["tables"].keys()):
        found.append(f"table {table} is not expected")
    for table in sorted(expected["tables"].keys() & actual["tables"].keys()):
        want = {c[0]: c for c in expected["tables"][table]}
        have = {c[0]: c for c in actual["tables"][table]}
        for column in sorted(want.keys() - have.keys()):
            found.append(f"column {table}.{column} is missing")
        for column in sorted(have.keys() - want.keys()):
            found.append(f"column {table}.{column} is not expected")
        for column in sorted(want.keys() & have.keys()):
            if list(want[column]) != list(have[column]):
                found.append(
                    f"column {table}.{column} is {have[column][1:]}, not {want[column][1:]}"
                )
    for kind, singular in _SINGULAR.items():
        want_items = {tuple(x) for x in expected.get(kind, [])}
        have_items = {tuple(x) for x in actual.get(kind, [])}
        for item in sorted(want_items - have_items):
            found.append(f"{singular} {' '.join(filter(None, item[:2]))} is missing or differs")
        for item in sorted(have_items - want_items):
            name = " ".join(filter(None, item[:2]))
            if not any(name == " ".join(filter(None, w[:2])) for w in want_items):
                found.append(f"{singular} {name} is not expected")
    return found[:limit] if limit else found
