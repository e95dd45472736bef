"""init-test-db refuses wrong configurations before it connects to anything."""

import pytest

from tests.helpers import run_main

# The port is closed: had the command tried to connect, it would fail with exit 1, not 2.
CLOSED = "postgresql+asyncpg://dashtam_test_user:pw@127.0.0.1:9/"


@pytest.mark.parametrize(
    ("environment", "database"),
    [
        ("development", "dashtam_test"),
        ("production", "dashtam_test"),
        ("testing", "dashtam"),
        ("testing", "latest_prod"),
        ("testing", "contest"),
    ],
)
def test_refusal_is_exit_2_with_a_safety_line(tmp_path, environment, database):
    env_file = tmp_path / ".env"
    env_file.write_text(f"ENVIRONMENT={environment}\nDATABASE_URL={CLOSED}{database}\n")
    result = run_main(
        "dashtam_core.init_test_db",
        {"DASHTAM_ENV_FILE": str(env_file), "ENVIRONMENT": None, "DATABASE_URL": None},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("SAFETY:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_production_with_placeholders_is_still_a_safety_refusal(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"ENVIRONMENT=production\nSECRET_KEY=change-me\nDATABASE_URL={CLOSED}dashtam_test\n"
    )
    result = run_main(
        "dashtam_core.init_test_db",
        {"DASHTAM_ENV_FILE": str(env_file), "ENVIRONMENT": None, "DATABASE_URL": None},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("SAFETY:")


def test_unreachable_server_is_one_line_and_exit_1(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"ENVIRONMENT=testing\nPROJECT_ID=p1\nDATABASE_URL={CLOSED}dashtam_test\n")
    result = run_main(
        "dashtam_core.init_test_db",
        {"DASHTAM_ENV_FILE": str(env_file), "ENVIRONMENT": None, "DATABASE_URL": None},
    )
    assert result.returncode == 1
    assert "cannot reach PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr
    assert "pw@" not in result.stderr
