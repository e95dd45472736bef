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

from dashtam_api.days import Day, day_end, day_start, days_before
from dashtam_api.errors import ACCOUNT_GONE, NotFound, Unauthorized
from dashtam_core.database import Reader

Interval = Literal["day", "week", "month"]
MAX_PERIODS = 1000
STEP = {"day": "1 day", "week": "1 week", "month": "1 month"}


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


# The last snapshot of each period (DISTINCT ON walks the (account_id, as_of) unique index),
# beside the person's right to sign in and the account's owner: $1 person, $2 account, $3 unit,
# $4..$5 the bounds. No row at all: the person may not sign in; NULLs: nothing in the range.
BALANCES = """
WITH periods AS (
    SELECT DISTINCT ON (period)
           (date_trunc($3, b.as_of AT TIME ZONE 'UTC'))::date AS period,
           b.as_of, b.currency, b.current, b.available, b.cash, b.buying_power
      FROM balance_snapshots b
     WHERE b.account_id = $2 AND b.as_of >= $4 AND b.as_of < $5
     ORDER BY period, b.as_of DESC
)
SELECT periods.*, EXISTS (SELECT FROM accounts a WHERE a.id = $2 AND a.user_id = $1) AS owned
  FROM users u LEFT JOIN periods ON true
 WHERE u.id = $1 AND u.is_active
 ORDER BY periods.period
"""

# Per period and currency, each account's newest snapshot up to the period's end, from the
# accounts' closing days (balance_days, one row per account and day): one range of that table per
# account, each day's row tagged with its period and the last of each period kept; each such
# closing balance then covers its period and the ones after it up to the account's next (or
# its last open period), and the covered periods are summed. No periods x accounts grid, no
# index probe per period: the rows read grow with the accounts' days.
# $1 person, $2 unit, $3 step, $4..$5 the bounds.
NET_WORTH = """
WITH periods AS (
    SELECT (p AT TIME ZONE 'UTC')::date AS period,
           LEAST(p + CAST($3 AS text)::interval, $5) AS period_end
      FROM generate_series(
             date_trunc($2, $4::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
             $5::timestamptz - interval '1 microsecond',
             CAST($3 AS text)::interval) AS p
), opening AS (
    SELECT min(period) AS period FROM periods
), owned AS (
    -- Each account and its last period: the last that ends before it was closed.
    SELECT a.id, (SELECT max(p.period) FROM periods p
                   WHERE a.closed_at IS NULL OR a.closed_at >= p.period_end) AS last_period
      FROM accounts a WHERE a.user_id = $1
), days AS (
    -- The days inside the periods, and each account's last day before them (its opening value).
    -- (LATERAL: one range of the primary key per account, whatever the planner guesses.)
    SELECT a.id AS account_id, date_trunc($2, d.day::timestamp)::date AS period, d.day,
           d.currency, d.current
      FROM owned a, opening, LATERAL (
            SELECT d.day, d.currency, d.current FROM balance_days d
             WHERE d.account_id = a.id AND d.day >= opening.period
               AND d.day < ($5::timestamptz AT TIME ZONE 'UTC')::date) d
    UNION ALL
    SELECT a.id, opening.period, o.day, o.currency, o.current
      FROM owned a, opening, LATERAL (
            SELECT d.day, d.currency, d.current FROM balance_days d
             WHERE d.account_id = a.id AND d.day < opening.period
             ORDER BY d.day DESC LIMIT 1) o
), closing AS (
    SELECT DISTINCT ON (account_id, period) account_id, period, currency, current
      FROM days
     ORDER BY account_id, period, day DESC
), spans AS (
    SELECT account_id, period, currency, current,
           lead(period) OVER (PARTITION BY account_id ORDER BY period) AS next
      FROM closing
), covered AS (
    SELECT covered.p::date AS period, s.currency, s.current
      FROM spans s JOIN owned a ON a.id = s.account_id,
           generate_series(s.period::timestamp,
                           LEAST(coalesce(s.next - 1, a.last_period), a.last_period)::timestamp,
                           CAST($3 AS text)::interval) AS covered(p)
), totals AS (
    SELECT period, currency, sum(current) AS total, count(*) AS accounts
      FROM covered
     GROUP BY period, currency
)
SELECT totals.* FROM users u LEFT JOIN totals ON true
 WHERE u.id = $1 AND u.is_active
 ORDER BY totals.period, totals.currency
"""
BALANCE_FIELDS = ("period", "as_of", "currency", "current", "available", "cash", "buying_power")
NET_WORTH_FIELDS = ("period", "currency", "total", "accounts")


async def balances(
    *, reader: Reader, user_id: uuid.UUID, account_id: uuid.UUID, query: HistoryQuery
) -> bytes:
    """The account's balance history as the JSON of schemas.BalanceHistory."""
    start, stop, next_from = query.bounds()
    rows = await reader.fetch(BALANCES, user_id, account_id, query.interval, start, stop)
    if not rows:
        raise Unauthorized(ACCOUNT_GONE)
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
    rows = await reader.fetch(NET_WORTH, user_id, query.interval, STEP[query.interval], start, stop)
    if not rows:
        raise Unauthorized(ACCOUNT_GONE)
    items = [{f: row[f] for f in NET_WORTH_FIELDS} for row in rows if row["period"] is not None]
    return to_json({"interval": query.interval, "items": items, "next_from": next_from})
