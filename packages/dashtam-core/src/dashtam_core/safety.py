"""The rule that keeps the test initializer away from every database that is not a test one.

"The name contains 'test'" is too weak (``latest_prod`` and ``contest`` contain it), so a test
database name must *end* in ``_test`` or ``_test_<suffix>`` (e.g. ``dashtam_test_gw0``).
"""

import re

from sqlalchemy.engine import make_url

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
