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

from dashtam_api.accounts import queries
from dashtam_api.errors import BadRequest, NotFound
from dashtam_core.database import Reader

Interval = Literal["day", "week", "month"]
MAX_PERIODS = 1000


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


BALANCE_FIELDS = ("period", "as_of", "currency", "current", "available", "cash", "buying_power")
NET_WORTH_FIELDS = ("period", "currency", "total", "accounts")


async def balances(
    *, reader: Reader, user_id: uuid.UUID, account_id: uuid.UUID, query: HistoryQuery
) -> bytes:
    """The account's balance history as the JSON of schemas.BalanceHistory."""
    start, stop = query.bounds()
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
    return to_json({"account_id": account_id, "interval": query.interval, "items": items})


async def net_worth(*, reader: Reader, user_id: uuid.UUID, query: HistoryQuery) -> bytes:
    """Net worth as the JSON of schemas.NetWorth."""
    start, stop = query.bounds()
    rows = await queries.net_worth_rows(
        reader, user_id=user_id, interval=query.interval, start=start, stop=stop
    )
    items = [{f: row[f] for f in NET_WORTH_FIELDS} for row in rows if row["period"] is not None]
    return to_json({"interval": query.interval, "items": items})
