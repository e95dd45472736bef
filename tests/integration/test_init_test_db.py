"""The test-database guard: init-test-db, the clone step and the leftover sweep rebuild or drop only
this checkout's own test database and its clones, known by the marker the project wrote, never by
name alone. Every refused target is made by the test with rows in a table of its own, and still
holds every row afterwards."""

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest
from sqlalchemy.engine import make_url

from dashtam_core import migrate
from dashtam_core.config import Settings
from dashtam_core.init_test_db import SafetyError, init_test_db
from dashtam_core.test_database_guard import MARKER_TAG, clone_marker, template_marker
from dashtam_core.test_databases import CloneError, clone_database
from infra.layout import Layout
from infra.runtime import runtime_for
from tests.fixtures.environment import ROOT, TEST_ENV_FILE
from tests.helpers import (
    env_for,
    execute,
    fetch,
    marker_of,
    private_env_file,
    run_main,
    run_module,
)
from tests.migration_helpers import upgrade

ROWS = [("rent", "1200.00"), ("salary", "-5400.00"), ("tax", "310.15")]


class GuardSettings(Settings):
    """Settings as the CLI reads them (no TestSettings validation), with the dev name."""

    DEV_DATABASE_NAME: str = "dashtam"


async def with_rows(url: str, schema: str = "public") -> None:
    """Somebody else's data: a table of its own with rows (a lent database has them already)."""
    await execute(
        url,
        f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
        f'CREATE TABLE IF NOT EXISTS "{schema}".ledger (entry text PRIMARY KEY, amount numeric(12, 2))',
        *(
            f"INSERT INTO \"{schema}\".ledger VALUES ('{e}', {a}) ON CONFLICT DO NOTHING"
            for e, a in ROWS
        ),
    )


async def rows_in(url: str, schema: str = "public") -> list[tuple[str, str]]:
    rows = await fetch(url, f'SELECT entry, amount::text FROM "{schema}".ledger ORDER BY entry')
    return [tuple(r) for r in rows]


@dataclass
class Case:
    target: str  # the database DATABASE_URL names: {t} is the env file's test database
    comment: str | None  # its COMMENT ON DATABASE: {own} this project's id, {t} the template
    reason: str  # what the refusal must name
    settings: dict = field(default_factory=dict)
    schema: str = "public"  # where the foreign table with rows lives
    connect_to: str | None = None  # the database the connection really reaches
    dashtam_schema: bool = False  # also migrated to head (a real template someone added to)


TEMPLATE = template_marker("{own}")
CLONE = clone_marker("{own}", "{t}")
NOT_TEST = "is not a test database"
NOT_OURS = "neither the test database the env file names"
UNMARKED = "carries no Dashtam test-database marker"
ELSEWHERE = "marked for another Dashtam checkout"
FOREIGN = "holds tables that are not Dashtam's"

REFUSED = {
    # Names that fail the rule, whatever their marker.
    "contains-test": Case("latest_prod_{h}", TEMPLATE, NOT_TEST),
    "contest": Case("contest{h}", None, NOT_TEST),
    "suffix-testing": Case("x{h}_testing", TEMPLATE, NOT_TEST),
    "prefix-test": Case("test_{h}", None, NOT_TEST),
    "suffix-tests": Case("x{h}_tests", None, NOT_TEST),
    "clone-bad-suffix": Case("{t}_gw-1", CLONE, NOT_TEST),
    "dev-database": Case(
        "{t}", TEMPLATE, "is the development database", {"DEV_DATABASE_NAME": "{t}"}
    ),
    # Names that pass the rule, made by somebody else.
    "other-prefix": Case("other{h}_test", None, NOT_OURS),
    "other-app-suffix": Case("x{h}_dashtam_test", None, NOT_OURS),
    "clone-name-unmarked": Case("{t}_gw0", None, UNMARKED),
    "clone-name-foreign-comment": Case("{t}_main", "ledger of the billing app", UNMARKED),
    "template-name-unmarked": Case("{t}", None, UNMARKED),
    "template-name-foreign-comment": Case("{t}", "payroll, production copy", UNMARKED),
    "marked-for-another-project": Case("{t}", template_marker("0ther0project"), ELSEWHERE),
    "clone-of-another-project": Case("{t}_gw1", clone_marker("0ther0project", "{t}"), ELSEWHERE),
    "template-marked-as-clone": Case("{t}", clone_marker("{own}", "x{h}_test"), "is marked"),
    "clone-marked-as-template": Case("{t}_gw2", TEMPLATE, "is marked"),
    "clone-of-another-template": Case("{t}_gw3", clone_marker("{own}", "o{h}_test"), "is marked"),
    "clone-of-another-template-by-name": Case(
        "o{h}_test_gw0", clone_marker("{own}", "o{h}_test"), NOT_OURS
    ),
    "hand-made-copy-of-the-marker": Case("copy{h}_test", TEMPLATE, NOT_OURS),
    "marker-tag-without-project": Case("{t}", MARKER_TAG, ELSEWHERE),
    # Marked, but holding tables that are not Dashtam's.
    "template-with-foreign-table": Case("{t}", TEMPLATE, f"{FOREIGN}: public.ledger"),
    "foreign-table-in-own-schema": Case("{t}", TEMPLATE, "other.ledger", schema="other"),
    "clone-with-foreign-table": Case("{t}_gw4", CLONE, FOREIGN),
    "dashtam-schema-plus-foreign-table": Case("{t}", TEMPLATE, FOREIGN, dashtam_schema=True),
    # The configuration.
    "environment-development": Case(
        "{t}", TEMPLATE, "ENVIRONMENT is 'development'", {"ENVIRONMENT": "development"}
    ),
    "no-project-id": Case("{t}", TEMPLATE, "PROJECT_ID is not set", {"PROJECT_ID": ""}),
    "placeholder-project-id": Case(
        "{t}", TEMPLATE, "PROJECT_ID is not set", {"PROJECT_ID": "change-me"}
    ),
    # The URL says test; the connection reaches another database.
    "url-test-connected-prod": Case(
        "{t}", TEMPLATE, "connected database 'prod{h}' is not a test", connect_to="prod{h}"
    ),
    "url-test-connected-other-test": Case(
        "{t}", TEMPLATE, "differs from the configured", connect_to="other{h}_test"
    ),
}


def fill(text: str | None, *, t: str, h: str, own: str) -> str | None:
    return None if text is None else text.replace("{t}", t).replace("{h}", h).replace("{own}", own)


@pytest.mark.parametrize("case_id", sorted(REFUSED))
async def test_refused_targets_keep_every_row(
    scratch_databases, lent_databases, test_settings, case_id
):
    case = REFUSED[case_id]
    h = uuid.uuid4().hex[:8]
    own = test_settings.PROJECT_ID
    template = f"t{h}_test"
    target = fill(case.target, t=template, h=h, own=own)
    comment = fill(case.comment, t=template, h=h, own=own)
    lent: list[tuple[int, str]] = []
    try:
        if case.schema == "public" and not case.dashtam_schema:
            url = await lent_databases.lend(0, target, comment=comment)
            lent.append((0, target))
        else:
            url = await scratch_databases.create(target, comment=comment)
        await _refused_and_untouched(case, url, lent_databases, lent, template, h, own)
    finally:
        for index, name in reversed(lent):
            await lent_databases.give_back(index, name)


async def _refused_and_untouched(case, url, lent_databases, lent, template, h, own) -> None:
    if case.dashtam_schema:
        await upgrade(url)
    await with_rows(url, case.schema)
    touched = [url]
    connect_url = url
    if case.connect_to:
        name = fill(case.connect_to, t=template, h=h, own=own)
        elsewhere = await lent_databases.lend(1, name, comment=None)
        lent.append((1, name))
        await with_rows(elsewhere)
        touched.append(elsewhere)
        # asyncpg takes connect arguments from the URL's query: the name in the path is a lie.
        connect_url = f"{url}?database={name}"
    settings = GuardSettings(
        _env_file=TEST_ENV_FILE,
        DATABASE_URL=connect_url,
        **{k: fill(v, t=template, h=h, own=own) for k, v in case.settings.items()},
    )

    with pytest.raises(SafetyError) as refused:
        await init_test_db(settings, template=template)

    message = str(refused.value)
    assert message.startswith("SAFETY: init-test-db refused, nothing was touched:")
    assert fill(case.reason, t=template, h=h, own=own) in message
    assert "inv test-setup" in message
    assert refused.value.code == 2
    for database_url in touched:
        assert await rows_in(database_url, case.schema if database_url == url else "public") == ROWS
    if case.dashtam_schema:
        assert await fetch(url, "SELECT version_num FROM alembic_version")


async def marked_template(scratch_databases, project_id: str) -> tuple[str, str]:
    """A test database of this project's (as the bootstrap makes one), at head, with a user."""
    name = f"t{uuid.uuid4().hex[:8]}_test"
    url = await scratch_databases.create(name, comment=template_marker(project_id))
    await upgrade(url)
    await execute(url, "INSERT INTO users (email) VALUES ('left@over.example')")
    return name, url


async def test_the_marked_test_database_is_rebuilt_by_the_migrations(
    scratch_databases, test_settings
):
    name, url = await marked_template(scratch_databases, test_settings.PROJECT_ID)
    await execute(url, "UPDATE alembic_version SET version_num = 'not-a-revision'")

    summary = await init_test_db(
        GuardSettings(_env_file=TEST_ENV_FILE, DATABASE_URL=url), template=name
    )

    assert summary["database"] == name
    assert summary["revision"] == migrate.head()
    assert await fetch(url, "SELECT * FROM users") == []
    assert [r["version_num"] for r in await fetch(url, "SELECT * FROM alembic_version")] == [
        migrate.head()
    ]
    assert (await fetch(url, "SHOW synchronous_commit"))[0][0] == "off"


async def test_a_marked_clone_is_rebuilt_and_the_sweep_drops_only_marked_clones(
    scratch_databases, test_settings
):
    own = test_settings.PROJECT_ID
    name, url = await marked_template(scratch_databases, own)
    clone = await scratch_databases.create(f"{name}_gw5", comment=clone_marker(own, name))
    await upgrade(clone)
    await execute(clone, "INSERT INTO users (email) VALUES ('in@clone.example')")
    summary = await init_test_db(
        GuardSettings(_env_file=TEST_ENV_FILE, DATABASE_URL=clone), template=name
    )
    assert summary["database"] == f"{name}_gw5"
    assert summary["leftovers"] == []  # only a run on the template sweeps
    assert await fetch(clone, "SELECT * FROM users") == []

    leftovers = {f"{name}_gw8": clone_marker(own, name), f"{name}_main": clone_marker(own, name)}
    kept = {
        f"{name}_gw9": None,
        f"{name}_gw7": clone_marker(own, f"o{name}"),
        f"{name}_gw6": clone_marker("0ther0project", name),
        f"{name}x": clone_marker(own, name),
    }
    for database, comment in {**leftovers, **kept}.items():
        await with_rows(await scratch_databases.create(database, comment=comment))

    summary = await init_test_db(
        GuardSettings(_env_file=TEST_ENV_FILE, DATABASE_URL=url), template=name
    )
    assert sorted(summary["leftovers"]) == sorted([*leftovers, f"{name}_gw5"])
    names = {r["datname"] for r in await fetch(url, "SELECT datname FROM pg_database")}
    assert not names & {*leftovers, f"{name}_gw5"}
    for database in kept:
        assert await rows_in(scratch_databases.url_for(database)) == ROWS


async def test_the_sweep_waits_out_a_session_force_may_not_end(scratch_databases, test_settings):
    """An autovacuum worker visiting a leftover clone is a session DROP DATABASE ... WITH
    (FORCE) may not end for the test role ("permission denied to terminate process"); it is
    gone a moment later. A superuser's session stands in for it here, closed after 0.5 s."""
    own = test_settings.PROJECT_ID
    name, url = await marked_template(scratch_databases, own)
    leftover = f"{name}_gw3"
    await scratch_databases.create(leftover, comment=clone_marker(own, name))
    visitor = await runtime_for(Layout(root=ROOT)).superuser_connect(
        make_url(url).port, database=leftover
    )
    closing = asyncio.get_running_loop().call_later(
        0.5, lambda: asyncio.ensure_future(visitor.close())
    )
    try:
        summary = await init_test_db(
            GuardSettings(_env_file=TEST_ENV_FILE, DATABASE_URL=url), template=name
        )
    finally:
        closing.cancel()
        if not visitor.is_closed():
            await visitor.close()
    assert summary["leftovers"] == [leftover]


async def test_the_cli_takes_the_test_database_from_the_env_file(
    scratch_databases, test_settings, tmp_path
):
    name, url = await marked_template(scratch_databases, test_settings.PROJECT_ID)
    env_file = private_env_file(tmp_path, url)
    result = run_module(
        "dashtam_core.init_test_db", {"DASHTAM_ENV_FILE": str(env_file), "DATABASE_URL": None}
    )
    assert result.returncode == 0, result.stderr
    assert f"test database {name} " in result.stdout
    assert "rebuilt by the migrations" in result.stdout

    # The same database is refused when the env file names another one.
    other_env = private_env_file(tmp_path, scratch_databases.url_for("dashtam_test"))
    result = run_main(
        "dashtam_core.init_test_db", {"DASHTAM_ENV_FILE": str(other_env), "DATABASE_URL": url}
    )
    assert result.returncode == 2
    assert result.stderr.startswith("SAFETY:")
    assert NOT_OURS in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("target", "comment", "reason"),
    [("{t}", None, UNMARKED), ("{t}_gw0", None, UNMARKED), ("{t}", TEMPLATE, FOREIGN)],
)
async def test_cli_refusals_are_exit_2_one_line_and_keep_the_rows(
    scratch_databases, test_settings, tmp_path, target, comment, reason
):
    h = uuid.uuid4().hex[:8]
    template, own = f"t{h}_test", test_settings.PROJECT_ID
    url = await scratch_databases.create(
        fill(target, t=template, h=h, own=own), comment=fill(comment, t=template, h=h, own=own)
    )
    await with_rows(url)
    env_file = private_env_file(tmp_path, scratch_databases.url_for(template))
    result = run_main(
        "dashtam_core.init_test_db", {**env_for(url), "DASHTAM_ENV_FILE": str(env_file)}
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("SAFETY:")
    assert reason in result.stderr
    assert "inv test-setup" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert await rows_in(url) == ROWS


async def test_the_clone_step_refuses_what_is_not_marked_and_marks_what_it_makes(
    scratch_databases, test_settings
):
    own = test_settings.PROJECT_ID
    h = uuid.uuid4().hex[:8]
    await scratch_databases.create(f"u{h}_test")
    with pytest.raises(CloneError, match=UNMARKED):
        await clone_database(
            template_url=test_settings.database_url.set(database=f"u{h}_test"),
            name=f"u{h}_test_gw0",
            environment="testing",
            dev_database_name="dashtam",
            project_id=own,
        )

    name, url = await marked_template(scratch_databases, own)
    squatter = await scratch_databases.create(f"{name}_gw0")
    await with_rows(squatter)
    with pytest.raises(CloneError, match=f"refusing to replace '{name}_gw0'.*{UNMARKED}"):
        await clone_database(
            template_url=test_settings.database_url.set(database=name),
            name=f"{name}_gw0",
            environment="testing",
            dev_database_name="dashtam",
            project_id=own,
        )
    assert await rows_in(squatter) == ROWS

    made = await clone_database(
        template_url=test_settings.database_url.set(database=name),
        name=f"{name}_gw1",
        environment="testing",
        dev_database_name="dashtam",
        project_id=own,
    )
    scratch_databases.created.append(f"{name}_gw1")
    assert await marker_of(url, made.database) == clone_marker(own, name)
    # CREATE DATABASE ... TEMPLATE copied the schema, and the users row with it.
    assert [
        r["email"]
        for r in await fetch(made.render_as_string(hide_password=False), "SELECT email FROM users")
    ] == ["left@over.example"]
