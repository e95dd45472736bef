"""Balance history: an account's balances per day, week or month, and a person's net worth.

Periods are UTC days, ISO weeks (from Monday) and calendar months. An account's balance in a
period is its last snapshot in it (``balances``); net worth sums, per currency, each account's
newest snapshot up to the end of each period, so an account synced less often than the interval
counts with the balance it last had (never an exchange rate Dashtam would have to invent). An
account counts from its first snapshot until it was closed.
"""

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import to_json

from dashtam_api.errors import ACCOUNT_GONE, BadRequest, NotFound, Unauthorized
from dashtam_core.database import Reader

Interval = Literal["day", "week", "month"]
MAX_PERIODS = 1000
STEP = {"day": "1 day", "week": "1 week", "month": "1 month"}


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: date | None = Field(
        None, alias="from", description="First day (UTC); default: 30 periods back."
    )
    to: date | None = Field(None, description="Last day (UTC); default: today.")
    interval: Interval = "day"

    @model_validator(mode="after")
    def _ordered(self) -> "HistoryQuery":
        if self.from_ and self.to and self.from_ > self.to:
            raise ValueError("`from` is after `to`")
        return self

    def bounds(self) -> tuple[datetime, datetime]:
        """[start of the first period, end of the last day) in UTC; BadRequest past MAX_PERIODS."""
        last = self.to or datetime.now(UTC).date()
        first = self.from_ or last - timedelta(
            days={"day": 29, "week": 7 * 29, "month": 31 * 29}[self.interval]
        )
        span_days = (last - first).days
        periods = {"day": span_days, "week": span_days // 7, "month": span_days // 28}[
            self.interval
        ]
        if periods + 1 > MAX_PERIODS:
            raise BadRequest(
                f"At most {MAX_PERIODS} periods per request: narrow `from`..`to` or widen `interval`.",
                parameter="from",
            )
        start = datetime.combine(first, time.min, tzinfo=UTC)
        return start, datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC)


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
    start, stop = query.bounds()
    rows = await reader.fetch(BALANCES, user_id, account_id, query.interval, start, stop)
    if not rows:
        raise Unauthorized(ACCOUNT_GONE)
    if not rows[0]["owned"]:
        raise NotFound("No such account.")
    items = [{f: row[f] for f in BALANCE_FIELDS} for row in rows if row["period"] is not None]
    return to_json({"account_id": account_id, "interval": query.interval, "items": items})


async def net_worth(*, reader: Reader, user_id: uuid.UUID, query: HistoryQuery) -> bytes:
    """Net worth as the JSON of schemas.NetWorth."""
    start, stop = query.bounds()
    rows = await reader.fetch(NET_WORTH, user_id, query.interval, STEP[query.interval], start, stop)
    if not rows:
        raise Unauthorized(ACCOUNT_GONE)
    items = [{f: row[f] for f in NET_WORTH_FIELDS} for row in rows if row["period"] is not None]
    return to_json({"interval": query.interval, "items": items})
