"""Console scripts turn database failures into one line without secrets."""

import asyncpg
import pytest

from dashtam_core.cli import CommandError, describe_db_error, run


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)"),
            "cannot reach PostgreSQL",
        ),
        (asyncpg.InvalidPasswordError("password authentication failed"), "refused the password"),
        (asyncpg.InvalidCatalogNameError('database "x_test" does not exist'), "does not exist"),
        (TimeoutError(), "did not answer in time"),
        (ValueError("odd\nsecond line"), "database error: ValueError: odd"),
    ],
)
def test_database_errors_are_described_in_one_line(error, expected):
    message = describe_db_error(error)
    assert expected in message
    assert "\n" not in message


def test_run_prints_one_line_and_exits_with_the_code(capsys):
    async def failing():
        raise CommandError("it broke", code=7)

    with pytest.raises(SystemExit) as exit_info:
        run("tool", failing)
    assert exit_info.value.code == 7
    assert capsys.readouterr().err == "tool: it broke\n"


def test_run_reports_an_os_error_without_a_traceback(capsys):
    async def refused():
        raise ConnectionRefusedError(111, "Connect call failed")

    with pytest.raises(SystemExit) as exit_info:
        run("tool", refused)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("tool: cannot reach PostgreSQL")
    assert "Traceback" not in err
