"""The migrations against the real server: no drift from the models, reversible to the catalog,
rows kept across every revision, and the frozen description of the initial revision kept true."""

import json

from sqlalchemy import Column, MetaData, Text

import dashtam_models
from dashtam_core import migrate
from tests.helpers import env_for, execute, fetch, run_main, run_module
from tests.migration_helpers import catalog_of, downgrade, migrated, on, upgrade


async def test_autogenerate_finds_nothing_to_do_against_a_database_at_head(scratch_databases):
    url = await migrated(scratch_databases)
    assert await on(url, migrate.pending_operations) == []
    result = run_module("dashtam_core.migrate_cli", env_for(url), args=["check"])
    assert result.returncode == 0, result.stderr
    assert "the models match head" in result.stdout


async def test_the_drift_check_fails_when_a_model_changes_without_a_revision(scratch_databases):
    url = await migrated(scratch_databases)
    changed = MetaData(naming_convention=dashtam_models.metadata.naming_convention)
    for table in dashtam_models.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["users"].append_column(Column("nickname", Text, nullable=True))
    operations = await on(url, lambda conn: migrate.pending_operations(conn, changed))
    assert [op[0] for op in operations] == ["add_column"]
    assert operations[0][3].name == "nickname"


async def test_upgrade_downgrade_upgrade_gives_the_same_schema(scratch_databases):
    url = await migrated(scratch_databases)
    at_head = await catalog_of(url)
    assert set(at_head["tables"]) == {t.name for t in dashtam_models.metadata.sorted_tables}

    assert await downgrade(url, "base") == (migrate.head(), None)
    emptied = await catalog_of(url)
    assert emptied["tables"] == {}
    assert emptied["functions"] == emptied["triggers"] == emptied["extensions"] == []

    assert await upgrade(url) == (None, migrate.head())
    assert await catalog_of(url) == at_head


async def test_each_revision_down_and_up_again_gives_the_same_schema(scratch_databases):
    url = await scratch_databases.create()
    oldest_first = [s.revision for s in migrate.script_directory().walk_revisions()][::-1]
    assert len(oldest_first) >= 2
    for revision, previous in zip(oldest_first, [None, *oldest_first[:-1]], strict=True):
        assert await upgrade(url, revision) == (previous, revision)
        at_revision = await catalog_of(url)
        assert await downgrade(url, "-1") == (revision, previous)
        assert await upgrade(url, revision) == (previous, revision)
        assert await catalog_of(url) == at_revision


async def test_rows_survive_the_upgrade_from_the_previous_revision(scratch_databases):
    head = migrate.head()
    previous = migrate.script_directory().get_revision(head).down_revision
    url = await migrated(scratch_databases, previous)
    await execute(
        url,
        "INSERT INTO users (email) VALUES ('ann@example.com'), ('bo@example.com')",
        "INSERT INTO providers (user_id, provider_key, alias) "
        "SELECT id, 'sandbox', 'bank of ' || email FROM users",
        "INSERT INTO provider_audit_logs (user_id, action) SELECT id, 'connected' FROM users",
    )
    query = (
        "SELECT u.email, p.alias, a.action FROM users u JOIN providers p ON p.user_id = u.id "
        "JOIN provider_audit_logs a ON a.user_id = u.id ORDER BY u.email"
    )
    before = [tuple(r) for r in await fetch(url, query)]
    assert len(before) == 2

    result = run_main("dashtam_core.init_db", env_for(url))
    assert result.returncode == 0, result.stderr
    assert f"upgraded from {previous} to head {head}" in result.stdout
    assert [tuple(r) for r in await fetch(url, query)] == before
    # What the revision did is there, on the same rows.
    indexes = {r["indexname"] for r in await fetch(url, "SELECT indexname FROM pg_indexes")}
    assert "ix_providers_user_id_created_at_id" in indexes

    await downgrade(url, previous)
    assert [tuple(r) for r in await fetch(url, query)] == before


async def test_the_frozen_initial_schema_is_what_the_initial_revision_builds(scratch_databases):
    url = await migrated(scratch_databases, migrate.initial_revision())
    frozen = json.loads(migrate.INITIAL_SCHEMA_FILE.read_text())
    assert await catalog_of(url) == frozen


async def test_migrate_cli_errors_are_one_line(scratch_databases):
    url = await migrated(scratch_databases, migrate.initial_revision())
    unknown = run_main("dashtam_core.migrate_cli", env_for(url), args=["downgrade", "zzz"])
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "migrate: Can't locate revision identified by 'zzz'"

    behind = run_main("dashtam_core.migrate_cli", env_for(url), args=["revision", "x"])
    assert behind.returncode == 1
    assert "not head" in behind.stderr
    assert len(behind.stderr.strip().splitlines()) == 1

    current = run_main("dashtam_core.migrate_cli", env_for(url), args=["current"])
    assert current.returncode == 0
    assert "revision(s) behind head" in current.stdout
    history = run_main("dashtam_core.migrate_cli", env_for(url), args=["history"])
    assert history.returncode == 0
    oldest_first = history.stdout.splitlines()
    assert oldest_first[0].startswith(migrate.initial_revision())
    assert oldest_first[0].endswith("<- current")
    assert oldest_first[-1].startswith(migrate.head())

    empty = await scratch_databases.create()
    nothing = run_main("dashtam_core.migrate_cli", env_for(empty), args=["downgrade", "base"])
    assert nothing.returncode == 1
    assert "has no revision to downgrade from" in nothing.stderr
