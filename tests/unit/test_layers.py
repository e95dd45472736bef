"""The layers of dashtam-api: router -> service -> queries -> database (docs/architecture.md).

Only a queries module (``<domain>/queries.py``, or ``<name>_queries.py`` at the package root
for what has no domain folder) builds or runs a statement. Every other module is read with
``ast`` and may not:

- import SQLAlchemy's statement builders (anything of ``sqlalchemy`` but its exceptions and
  ``sqlalchemy.ext.asyncio``'s types);
- call ``select()``, ``insert()``, ``update()``, ``delete()``, ``text()``;
- call ``.execute(...)`` with a statement (a Valkey pipeline's ``pipe.execute()`` takes none),
  ``.fetch()`` and its kin, ``.scalar()``, ``.scalars()``, ``.stream(statement, ...)`` (an
  HTTP client's ``.stream("POST", url)`` and a request's body, ``.stream()``, are no
  statement), ``.get(Model, id)``;
- hold SQL in a string (docstrings may talk about SQL; comments are not strings).

ORM unit-of-work on loaded objects (attributes, ``session.add``, ``flush``, ``delete``) stays
in the services. And the one commit rule (unit_of_work.py): nothing commits a session it did not
open itself. The request's session is committed by its dependency alone; a job commits the
sessions it opens (``async with ctx.sessions() as session``), once per unit of work.
"""

import ast
import re
from pathlib import Path

import pytest

import dashtam_api

PACKAGE = Path(dashtam_api.__file__).parent

ALLOWED_SQLALCHEMY = {"sqlalchemy.exc", "sqlalchemy.ext.asyncio"}
BUILDERS = {"select", "insert", "update", "delete", "text"}
RUNNERS = {
    "execute",
    "executemany",
    "fetch",
    "fetchrow",
    "fetchval",
    "fetchmany",
    "fetchall",
    "fetchone",
    "scalar",
    "scalars",
    "stream_scalars",
    "copy_records_to_table",
}
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
SQL = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b"
    r"|\bSELECT\s+(?:\d|\*|set_config|count|pg_|now\b|EXISTS)"
    r"|\bINSERT\s+INTO\b"
    r"|\bUPDATE\s+\w+(?:\s+\w+)?\s+SET\b"
    r"|\bDELETE\s+FROM\b"
    r"|\bON\s+CONFLICT\b"
    r"|\bWHERE\b[\s\S]*(?:=|\bIS\b|\bIN\b|\bANY\b)"
    r"|\bAND\s+\w+\.\w+\s*(?:=|<|>|IS\b)"
    r"|[=<>]\s*\$\d+\b"
    r"|::(?:text|uuid|date|numeric|timestamptz|bigint|integer|int|bytea)\b"
)


def is_queries_module(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return name == "queries.py" or name.endswith("_queries.py")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string expressions standing as statements (docstrings and the like)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant | ast.JoinedStr)
    }


def _text_of(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def violations(source: str, relative: str = "<snippet>") -> list[str]:
    """What in ``source`` builds or runs a statement, or holds SQL, one line each."""
    tree = ast.parse(source)
    found: list[str] = []
    from_sqlalchemy: set[str] = set()
    models: set[str] = set()
    modules: set[str] = set()

    def say(node: ast.AST, what: str) -> None:
        found.append(f"{relative}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules.add((alias.asname or alias.name).split(".")[0])
                if (
                    alias.name.split(".")[0] == "sqlalchemy"
                    and alias.name not in ALLOWED_SQLALCHEMY
                ):
                    say(node, f"imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                bound = alias.asname or alias.name
                if node.module.split(".")[0] == "sqlalchemy":
                    from_sqlalchemy.add(bound)
                    if node.module not in ALLOWED_SQLALCHEMY:
                        say(node, f"imports {alias.name} from {node.module}")
                elif node.module.split(".")[0] == "dashtam_models":
                    models.add(bound)
                else:
                    modules.add(bound)

    skipped = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in BUILDERS and func.id in from_sqlalchemy:
                say(node, f"builds a statement: {func.id}()")
            elif isinstance(func, ast.Attribute):
                receiver = func.value
                if isinstance(receiver, ast.Name) and receiver.id in modules | from_sqlalchemy:
                    if receiver.id in from_sqlalchemy and func.attr in BUILDERS:
                        say(node, f"builds a statement: {receiver.id}.{func.attr}()")
                    continue  # a module's function (refresh.refresh(...), queries.page(...))
                first = node.args[0] if node.args else None
                if func.attr in RUNNERS and (func.attr != "execute" or node.args):
                    say(node, f"runs a statement: .{func.attr}()")
                elif func.attr == "stream" and not (
                    first is None
                    or (isinstance(first, ast.Constant) and first.value in HTTP_METHODS)
                ):
                    say(node, "runs a statement: .stream()")
                elif func.attr == "get" and isinstance(first, ast.Name) and first.id in models:
                    say(node, f"loads a row: .get({first.id}, ...)")
        elif isinstance(node, ast.Constant | ast.JoinedStr) and id(node) not in skipped:
            text = _text_of(node)
            if text is not None and SQL.search(text):
                say(node, f"holds SQL: {text.strip()[:60]!r}")
    return found


def _modules() -> list[tuple[str, Path]]:
    return sorted((path.relative_to(PACKAGE).as_posix(), path) for path in PACKAGE.rglob("*.py"))


def test_only_the_queries_modules_build_or_run_statements():
    found = [
        line
        for relative, path in _modules()
        if not is_queries_module(relative)
        for line in violations(path.read_text(), relative)
    ]
    assert found == [], "\n".join(found)


OPENERS = {"sessions", "sessionmaker"}  # ctx.sessions(), db.sessionmaker(): a session of one's own


def foreign_commits(source: str, relative: str = "<snippet>") -> list[str]:
    """Each ``.commit()`` in ``source`` on a session its function did not open itself."""
    found: list[str] = []

    def visit(node: ast.AST, opened: frozenset[str]) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            opened = opened | _opened_in(node)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "commit"
            and not (isinstance(node.func.value, ast.Name) and node.func.value.id in opened)
        ):
            found.append(f"{relative}:{node.lineno}: commits a session it did not open")
        for child in ast.iter_child_nodes(node):
            visit(child, opened)

    visit(ast.parse(source), frozenset())
    return found


def _opened_in(function: ast.AST) -> frozenset[str]:
    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.AsyncWith):
            for item in node.items:
                call, bound = item.context_expr, item.optional_vars
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr in OPENERS
                    and isinstance(bound, ast.Name)
                ):
                    names.add(bound.id)
    return frozenset(names)


def test_nothing_commits_a_session_it_did_not_open():
    """Routers and services never commit the request's session (its dependency does, through
    unit_of_work.commit); a job commits the sessions it opens."""
    found = [
        line
        for relative, path in _modules()
        if relative != "unit_of_work.py"
        for line in foreign_commits(path.read_text(), relative)
    ]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    ("source", "foreign"),
    [
        ("async def f(session):\n    await session.commit()", True),
        ("async def f(self):\n    await self.session.commit()", True),
        ("async def f(ctx):\n    async with ctx.sessions() as s:\n        await s.commit()", False),
        (
            "async def f(ctx, session):\n    async with ctx.sessions() as s:\n"
            "        await session.commit()",
            True,
        ),
        (
            "async def f(db):\n    async with db.sessionmaker() as s:\n        await s.commit()",
            False,
        ),
    ],
)
def test_the_commit_check_tells_whose_session_it_is(source, foreign):
    assert bool(foreign_commits(source)) is foreign


@pytest.mark.parametrize(
    "source",
    [
        "from sqlalchemy import select",
        "import sqlalchemy as sa",
        "from sqlalchemy.dialects.postgresql import insert",
        "from sqlalchemy.orm import aliased",
        "from sqlalchemy import func as f\nf.count()",
        "async def f(session):\n    await session.execute(QUERY, {'id': 1})",
        "async def f(session):\n    return await session.scalar(QUERY)",
        "async def f(session):\n    return (await session.scalars(QUERY)).all()",
        "async def f(reader):\n    return await reader.fetch(SQL, 1)",
        "async def f(conn):\n    return await conn.fetchrow(SQL, 1)",
        "async def f(conn):\n    return await conn.fetchval(SQL)",
        "def f(reader):\n    return reader.stream(SQL, 1, batch=10)",
        "from dashtam_models import User\nasync def f(s, i):\n    return await s.get(User, i)",
        "ONE = 'SELECT id FROM users WHERE id = $1'",
        "ONE = f'SELECT {COLUMNS} FROM transactions t {LATERAL}'",
        "X = 'UPDATE transactions SET item_json = NULL'",
        "X = 'DELETE FROM sync_runs'",
        "X = 'INSERT INTO users (email) VALUES ($1)'",
        "X = 't.user_id = $1'",
        "X = 'AND t.status = 1'",
        "X = 'SELECT 1'",
        "def f():\n    return g('x.amount::text')",
    ],
)
def test_the_checker_sees_a_statement(source):
    assert violations(source) != []


@pytest.mark.parametrize(
    "source",
    [
        '"""Docstrings may say SELECT id FROM users WHERE id = $1."""',
        'def f():\n    """One statement: SELECT ... FOR UPDATE."""',
        "from sqlalchemy.exc import IntegrityError",
        "from sqlalchemy.ext.asyncio import AsyncSession",
        "async def f(pipe):\n    await pipe.execute()",
        "async def f(client):\n    return await client.fetch_token(url, code=code)",
        "def f(d, k):\n    return d.get(k)",
        "from dashtam_models import ConnectionStatus\ndef f(a, s):\n"
        "    return a.get(ConnectionStatus(s))",
        "async def f(self):\n    async with self.pool.stream('POST', url) as r:\n        pass",
        "async def f(request):\n    async for chunk in request.stream():\n        pass",
        "from dashtam_api.connections import refresh\nasync def f(c, s, i):\n"
        "    return await refresh.refresh(c, s, i)",
        "from dashtam_api.accounts import queries\nasync def f(s):\n"
        "    return await queries.accounts_page(s, user_id=1, limit=1, offset=0)",
        "X = 'Select a provider from the list, then connect it.'",
        "X = 'The account behind this token no longer exists.'",
        "async def f(session):\n    session.add(x)\n    await session.flush()\n"
        "    await session.delete(x)\n    await session.commit()",
    ],
)
def test_the_checker_lets_the_rest_be(source):
    assert violations(source) == []


def test_no_router_imports_a_router():
    """Routers share through deps.py and the services, never through each other (main.py,
    which mounts them all, is no router)."""
    found = []
    for relative, path in _modules():
        if not relative.endswith("router.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                # A router module (auth.router, auth.admin_router), or one imported from its
                # package; routing.api_router is the routers' factory, not a router.
                modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                if any(_is_router_module(m) for m in modules):
                    found.append(f"{relative}: imports {node.module}")
    assert found == [], "\n".join(found)


def _is_router_module(dotted: str) -> bool:
    last = dotted.rsplit(".", 1)[-1]
    return last == "router" or (last.endswith("_router") and "routing" not in dotted)
