"""What every suite shares. Tests run in the isolated test environment (env/.env.test), each
xdist worker on its own clone of the test database; nothing here opens the development one.

The fixtures live in tests/fixtures/ (database, app, servers), helpers in tests/helpers.py;
this file wires them in, marks the suites and checks the servers once before a run.
"""

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.environment import ROOT, template_settings
from tests.fixtures.preflight import preflight_problem

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.app",
    "tests.fixtures.servers",
    "tests.fixtures.institution",
    "tests.fixtures.receiver",
    "tests.fixtures.smtp",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "commits: the test's writes are really committed; tables are truncated after"
    )
    # Once, in the controller (or the only process of a serial run), before any worker starts.
    if hasattr(config, "workerinput") or _only_unit_tests(config):
        return
    problem = preflight_problem(template_settings())
    if problem:
        pytest.exit(problem, returncode=3)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # The run is over in this process (the controller or an xdist worker): what it made is
    # frozen out of the collector's sight, so that the interpreter's collections at exit do
    # not walk all of it. ~1.5 s of CPU per pytest process after collection alone; each of a
    # parallel run's processes paid it. Atexit handlers (coverage's) still run.
    gc.freeze()


def _only_unit_tests(config: pytest.Config) -> bool:
    paths = [a.split("::")[0] for a in config.args if not a.startswith("-")]
    unit = ROOT / "tests" / "unit"
    return bool(paths) and all(Path(p).resolve().is_relative_to(unit) for p in paths)


def _suite(item: pytest.Item) -> str:
    return Path(item.fspath).relative_to(ROOT / "tests").parts[0]


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    # Before the other plugins' hooks: the markers. xdist's worker turns a test's xdist_group
    # into a suffix of its id in its own hook of this name, so the group has to be there first.
    for item in items:
        suite = _suite(item)
        if suite in ("integration", "api", "e2e", "faults", "browser"):
            item.add_marker(getattr(pytest.mark, suite))
        if item.get_closest_marker("commits") and "connection" not in getattr(
            item, "fixturenames", ()
        ):
            # What such a test commits is truncated when its `connection` fixture ends: without
            # it, its rows stay and another test meets them (an audit row too many, someone
            # else's token).
            raise pytest.UsageError(
                f"{item.nodeid} is marked commits but does not request `connection`"
            )
        if "live_servers" in getattr(item, "fixturenames", ()):
            # One xdist worker runs every test on the real HTTPS servers (with --dist
            # loadgroup, as `inv test --parallel` runs): the servers start once per run, not
            # once per worker (test_the_live_server_tests_share_one_worker).
            item.add_marker(pytest.mark.xdist_group("live-servers"))
    yield
    # After them (pytest-randomly's shuffle): the fault drill first. It runs for a fixed ~20 s
    # of phases, mostly waiting; started first, the other tests run beside it instead of after
    # it (xdist deals tests out in this order).
    items.sort(key=lambda item: _suite(item) != "faults")
