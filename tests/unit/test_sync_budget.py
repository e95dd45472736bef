"""sync/budget.py's rule, without a database: never more than the budget in any 24 hours, and
the loop's reads spread over the day."""

from datetime import UTC, datetime, timedelta

import pytest

from dashtam_api.sources.shapes import SourceError
from dashtam_api.sync import budget

NOW = datetime(2026, 12, 8, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_requests_older_than_a_day_no_longer_count():
    times = [NOW - 25 * HOUR, NOW - 23 * HOUR, NOW - HOUR]
    assert budget.recent(times, NOW) == [NOW - 23 * HOUR, NOW - HOUR]
    assert budget.left(times, NOW, 24) == 22


def test_a_request_fits_until_the_budget_is_spent_then_when_the_oldest_ages_out():
    spent = [NOW - (23 - i) * HOUR for i in range(23)]  # 23 in the last day
    assert budget.free_at(spent, NOW, 24) is None
    full = [*spent, NOW]
    assert budget.free_at(full, NOW, 24) == spent[0] + budget.DAY
    # Two more requests wait for the two oldest.
    assert budget.free_at(spent, NOW, 24, needed=2) == spent[0] + budget.DAY


def test_the_loop_waits_an_hour_after_the_last_request_a_person_does_not():
    last = [NOW - 10 * timedelta(minutes=1)]
    assert budget.next_at(last, NOW, 24) == last[0] + HOUR
    assert budget.gate(last, NOW, 24, loop=True).wait == last[0] + HOUR
    person = budget.gate(last, NOW, 24, loop=False)
    assert (person.wait, person.allowance) == (None, 23)
    assert budget.next_at([NOW - 2 * HOUR], NOW, 24) is None


async def test_the_allowance_refuses_the_request_past_it_before_it_leaves():
    allowance = budget.Allowance(2)
    await allowance(None)
    await allowance(None)
    with pytest.raises(SourceError) as refused:
        await allowance(None)
    assert (refused.value.error, allowance.sent) == ("over_budget", 2)
    unlimited = budget.Allowance(None)
    for _ in range(100):
        await unlimited(None)
    assert unlimited.sent == 100
