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
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.errors import BadRequest, NotFound
from dashtam_models import User

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


# The last snapshot of each period (DISTINCT ON walks the (account_id, as_of) unique index).
BALANCES = text(
    """
    SELECT DISTINCT ON (period)
           (date_trunc(:unit, as_of AT TIME ZONE 'UTC'))::date AS period,
           as_of, currency, current, available, cash, buying_power
      FROM balance_snapshots
     WHERE account_id = :account_id AND as_of >= :start AND as_of < :stop
     ORDER BY period, as_of DESC
    """
)

# Per period and currency, each account's newest snapshot up to the period's end: one index
# probe (balance_snapshots' (account_id, as_of) key, backwards) per account and period.
NET_WORTH = text(
    """
    WITH periods AS (
        SELECT p AS period_start,
               LEAST(p + CAST(CAST(:step AS text) AS interval), CAST(:stop AS timestamptz)) AS period_end
          FROM generate_series(
                 date_trunc(:unit, CAST(:start AS timestamptz) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                 CAST(:stop AS timestamptz) - interval '1 microsecond',
                 CAST(CAST(:step AS text) AS interval)) AS p
    )
    SELECT (periods.period_start AT TIME ZONE 'UTC')::date AS period,
           s.currency, sum(s.current) AS total, count(*) AS accounts
      FROM periods
      JOIN accounts a ON a.user_id = :user_id
                     AND (a.closed_at IS NULL OR a.closed_at >= periods.period_end)
      JOIN LATERAL (
            SELECT b.currency, b.current FROM balance_snapshots b
             WHERE b.account_id = a.id AND b.as_of < periods.period_end
             ORDER BY b.as_of DESC LIMIT 1) s ON true
     GROUP BY periods.period_start, s.currency
     ORDER BY periods.period_start, s.currency
    """
)


async def balances(
    *, session: AsyncSession, user: User, account_id: uuid.UUID, query: HistoryQuery
) -> dict:
    owned = await session.execute(
        text("SELECT 1 FROM accounts WHERE id = :id AND user_id = :user_id"),
        {"id": account_id, "user_id": user.id},
    )
    if owned.first() is None:
        raise NotFound("No such account.")
    start, stop = query.bounds()
    rows = await session.execute(
        BALANCES,
        {"unit": query.interval, "account_id": account_id, "start": start, "stop": stop},
    )
    return {
        "account_id": account_id,
        "interval": query.interval,
        "items": [row._asdict() for row in rows],
    }


async def net_worth(*, session: AsyncSession, user: User, query: HistoryQuery) -> dict:
    start, stop = query.bounds()
    rows = await session.execute(
        NET_WORTH,
        {
            "unit": query.interval,
            "step": STEP[query.interval],
            "start": start,
            "stop": stop,
            "user_id": user.id,
        },
    )
    return {"interval": query.interval, "items": [row._asdict() for row in rows]}
