"""The init-test-db safety rule: what it refuses, what it accepts."""

import pytest

from dashtam_core.test_database_guard import (
    MARKER_TAG,
    check_connected_database,
    check_marker,
    check_project_id,
    check_target,
    check_test_database_config,
    clone_marker,
    expected_marker,
    foreign_tables,
    is_test_database_name,
    template_marker,
)

DEV = "dashtam"


def url(
    database: str, *, user: str = "dashtam_test_user", password: str = "pw", host: str = "127.0.0.1"
) -> str:
    return f"postgresql+asyncpg://{user}:{password}@{host}:55432/{database}"


# (environment, database_url, dev database name, why it must be refused)
REFUSED_CONFIGS = [
    ("development", url("dashtam_test"), DEV, "wrong ENVIRONMENT"),
    ("production", url("dashtam_test"), DEV, "production"),
    ("staging", url("dashtam_test"), DEV, "staging"),
    (None, url("dashtam_test"), DEV, "ENVIRONMENT unset"),
    ("Testing", url("dashtam_test"), DEV, "ENVIRONMENT case differs"),
    ("testing", url("dashtam"), DEV, "the development database"),
    ("testing", url("latest_prod"), DEV, "contains 'test' but is prod"),
    ("testing", url("contest"), DEV, "contains 'test'"),
    ("testing", url("test"), DEV, "bare 'test'"),
    ("testing", url("testdb"), DEV, "starts with test"),
    ("testing", url("dashtam_testing"), DEV, "_testing is not _test"),
    ("testing", url("dashtam_test_"), DEV, "empty suffix"),
    ("testing", url("dashtam_test_a_b"), DEV, "suffix with an underscore"),
    ("testing", url("_test"), DEV, "nothing before _test"),
    ("testing", url("test_dashtam"), DEV, "test as a prefix"),
    ("testing", url("dashtam", password="my_test"), DEV, "test only in the password"),
    ("testing", url("dashtam", host="test-db.internal"), DEV, "test only in the host"),
    ("testing", url("dashtam", user="dashtam_test_user"), DEV, "test only in the user"),
    ("testing", url("postgres"), DEV, "the maintenance database"),
    ("testing", url("dashtam_test"), "dashtam_test", "dev name is the test name"),
    ("testing", "not a url", DEV, "unparseable URL"),
    ("testing", "postgresql+asyncpg://u:p@h:1", DEV, "no database in the URL"),
]


@pytest.mark.parametrize(
    ("environment", "database_url", "dev", "why"),
    REFUSED_CONFIGS,
    ids=[c[3] for c in REFUSED_CONFIGS],
)
def test_refused_configurations(environment, database_url, dev, why):
    assert (
        check_test_database_config(
            environment=environment, database_url=database_url, dev_database_name=dev
        )
        is not None
    )


def test_there_are_at_least_fifteen_refused_configurations():
    assert len(REFUSED_CONFIGS) >= 15


ACCEPTED = ["dashtam_test", "dashtam_test_gw0", "dashtam_test_gw12", "other_test", "a_test_x1"]


@pytest.mark.parametrize("database", ACCEPTED)
def test_accepted_configurations(database):
    assert (
        check_test_database_config(
            environment="testing", database_url=url(database), dev_database_name=DEV
        )
        is None
    )


# (configured, connected, why): the URL says test, the server says otherwise.
REFUSED_CONNECTIONS = [
    ("dashtam_test", "dashtam", "connected to the dev database"),
    ("dashtam_test", "latest_prod", "connected to a prod database"),
    ("dashtam_test", None, "no current_database()"),
    ("dashtam_test", "dashtam_test_gw0", "connected to another test database"),
    ("dashtam_test", "contest", "connected name contains test only"),
]


@pytest.mark.parametrize(
    ("configured", "connected", "why"), REFUSED_CONNECTIONS, ids=[c[2] for c in REFUSED_CONNECTIONS]
)
def test_refused_connected_databases(configured, connected, why):
    assert (
        check_connected_database(configured=configured, connected=connected, dev_database_name=DEV)
        is not None
    )


def test_accepted_connected_database():
    assert (
        check_connected_database(
            configured="dashtam_test_gw1", connected="dashtam_test_gw1", dev_database_name=DEV
        )
        is None
    )


def test_connected_database_equal_to_dev_name_is_refused():
    assert (
        check_connected_database(
            configured="x_test", connected="x_test", dev_database_name="x_test"
        )
        is not None
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dashtam_test", True),
        ("dashtam_test_gw3", True),
        ("latest_prod", False),
        ("", False),
        (None, False),
        ("dashtam_test_gw3_x", False),
    ],
)
def test_is_test_database_name(name, expected):
    assert is_test_database_name(name) is expected


# --- markers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("dashtam_test", template_marker("p1")),
        ("dashtam_test_gw0", clone_marker("p1", "dashtam_test")),
        ("dashtam_test_main", clone_marker("p1", "dashtam_test")),
        ("dashtam_testx", None),
        ("dashtam_test_gw-1", None),
        ("dashtam_test_", None),
        ("other_test", None),
        ("other_test_gw0", None),
    ],
)
def test_expected_marker_is_the_template_or_one_of_its_clones(target, expected):
    assert expected_marker(target=target, template="dashtam_test", project_id="p1") == expected


def test_markers_name_the_project_and_the_template():
    assert template_marker("p1") == f"{MARKER_TAG} project=p1 template"
    assert clone_marker("p1", "dashtam_test") == f"{MARKER_TAG} project=p1 clone-of=dashtam_test"
    assert template_marker("p1") != template_marker("p2")


@pytest.mark.parametrize(
    ("comment", "reason"),
    [
        (None, "carries no Dashtam test-database marker"),
        ("", "carries no Dashtam test-database marker"),
        ("billing app", "carries no Dashtam test-database marker"),
        (template_marker("p2"), "another Dashtam checkout"),
        (template_marker("p10"), "another Dashtam checkout"),  # p1 is a prefix of p10
        (clone_marker("p1", "dashtam_test"), "is marked"),
    ],
)
def test_a_wrong_marker_is_named(comment, reason):
    problem = check_marker(
        name="dashtam_test", comment=comment, expected=template_marker("p1"), project_id="p1"
    )
    assert reason in problem


def test_the_right_marker_passes():
    marker = template_marker("p1")
    assert check_marker(name="x_test", comment=marker, expected=marker, project_id="p1") is None


@pytest.mark.parametrize("project_id", ["", "  ", "change-me", "CHANGE-ME", None])
def test_a_missing_project_id_is_refused(project_id):
    assert "PROJECT_ID" in check_project_id(project_id)


def test_foreign_tables_are_everything_but_dashtam_tables_in_public():
    tables = [("public", "users"), ("public", "ledger"), ("other", "users"), ("public", "x")]
    assert foreign_tables(tables, {"users", "x"}) == ["other.users", "public.ledger"]


def test_check_target_checks_the_configuration_before_any_connection():
    args = {"template": "dashtam_test", "dev_database_name": "dashtam", "project_id": "p1"}
    assert check_target(environment="testing", target="dashtam_test_gw0", **args) is None
    assert "ENVIRONMENT" in check_target(environment="production", target="dashtam_test", **args)
    assert "neither" in check_target(environment="testing", target="x_test", **args)
    assert "not a test database" in check_target(environment="testing", target="dashtam", **args)
