"""The fault drill (infra/faults.py) on a Dashtam of its own, never the shared servers: steady
load while its PostgreSQL restarts, its Valkey restarts, the sandbox institution fails and then
answers late, and the API is stopped. No answer outside what each phase allows (no 500 above
all), every acknowledged write in the database afterwards, an audit row for every acknowledged
refresh, every connection still active, and the API healthy again by itself after each fault.

`inv bench faults` runs the same drill with more load and prints the table."""

import collections

import pytest

from infra import faults, private_project


@pytest.fixture
def drill(tmp_path):
    with private_project.project(tmp_path) as runtime:
        # Light load (a pause between requests): what is checked here is what happens to the
        # requests, not how many the machine can take.
        yield faults.run(runtime, clients=2, phase_seconds=2, pause=0.1)


def test_restarts_outages_and_a_stop_lose_nothing_and_answer_no_500(drill):
    report = drill
    print("\n".join(report.table()))
    assert report.problems() == []
    assert report.acknowledged_writes > 0
    assert report.writes_found == report.acknowledged_writes
    assert report.acknowledged_refreshes > 0
    # The drill met the faults it names: our outages answered 503, the institution's 502/504
    # (each only where its phase allows, checked above), the stop refused what came after it.
    answers = sum((phase.answers for phase in report.phases.values()), collections.Counter())
    assert answers["503"] > 0
    assert answers["502"] + answers["504"] > 0
    assert answers["refused"] > 0
    for name, phase in report.phases.items():
        if name != "graceful stop":
            assert phase.recovered_seconds is not None, name
