"""Balance history: an account's balances per day, week or month, and a person's net worth.

Periods are UTC days, ISO weeks (from Monday) and calendar months. An account's balance in a
period is its last snapshot in it (``balances``); net worth sums, per currency, each account's
newest snapshot up to the end of each period, so an account synced less often than the interval
counts with the balance it last had (never an exchange rate Dashtam would have to invent). An
account counts from its first snapshot until it was closed.

A long series comes in pages of MAX_PERIODS periods, oldest first: ``next_from`` is where the
next one starts (the same query with ``from`` set to it), null on the last. ``to`` before
``from`` is an empty range: no periods.
"""

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from dashtam_api.accounts import queries
from dashtam_api.days import Day, day_end, day_start, days_before
from dashtam_api.errors import NotFound
from dashtam_core.database import Reader

Interval = Literal["day", "week", "month"]
MAX_PERIODS = 1000


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Day | None = Field(
        None, alias="from", description="First day (UTC); default: 30 periods back."
    )
    to: Day | None = Field(
        None, description="Last day (UTC); default: today. Before `from`: no periods."
    )
    interval: Interval = "day"

    def bounds(self) -> tuple[datetime, datetime, date | None]:
        """[start of the first period, end of the page) in UTC, and the first day of the next
        page when the periods from ``from`` to ``to`` are more than MAX_PERIODS."""
        last = self.to or datetime.now(UTC).date()
        first = self.from_ or days_before(
            last, {"day": 29, "week": 7 * 29, "month": 31 * 29}[self.interval]
        )
        if first > last:  # an empty range: no period at all (not even the one `from` is in)
            empty = day_start(_period_start(first, self.interval))
            return empty, empty, None
        following = _periods_later(_period_start(first, self.interval), self.interval)
        if following is not None and following <= last:
            return day_start(first), day_start(following), following
        return day_start(first), day_end(last), None


def _period_start(day: date, interval: Interval) -> date:
    """The first day of the period ``day`` is in (as PostgreSQL's date_trunc has it)."""
    if interval == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1) if interval == "month" else day


def _periods_later(start: date, interval: Interval) -> date | None:
    """The first day MAX_PERIODS periods after ``start`` (a period's first day); None past
    the last day there is."""
    if interval == "month":
        years, month = divmod(start.month - 1 + MAX_PERIODS, 12)
        year = start.year + years
        return date(year, month + 1, 1) if year <= date.max.year else None
    days = MAX_PERIODS * (7 if interval == "week" else 1)
    return start + timedelta(days=days) if (date.max - start).days >= days else None


BALANCE_FIELDS = ("period", "as_of", "currency", "current", "available", "cash", "buying_power")
NET_WORTH_FIELDS = ("period", "currency", "total", "accounts")


async def balances(
    *, reader: Reader, user_id: uuid.UUID, account_id: uuid.UUID, query: HistoryQuery
) -> bytes:
    """The account's balance history as the JSON of schemas.BalanceHistory."""
    start, stop, next_from = query.bounds()
    rows = await queries.balance_rows(
        reader,
        user_id=user_id,
        account_id=account_id,
        interval=query.interval,
        start=start,
        stop=stop,
    )
    if not rows[0]["owned"]:
        raise NotFound("No such account.")
    items = [{f: row[f] for f in BALANCE_FIELDS} for row in rows if row["period"] is not None]
    return to_json(
        {
            "account_id": account_id,
            "interval": query.interval,
            "items": items,
            "next_from": next_from,
        }
    )


async def net_worth(*, reader: Reader, user_id: uuid.UUID, query: HistoryQuery) -> bytes:
    """Net worth as the JSON of schemas.NetWorth."""
    start, stop, next_from = query.bounds()
    rows = await queries.net_worth_rows(
        reader, user_id=user_id, interval=query.interval, start=start, stop=stop
    )
    items = [{f: row[f] for f in NET_WORTH_FIELDS} for row in rows if row["period"] is not None]
    return to_json({"interval": query.interval, "items": items, "next_from": next_from})
