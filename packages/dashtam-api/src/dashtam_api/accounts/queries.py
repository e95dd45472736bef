"""The statements of a person's accounts: each with its newest balance, its positions, and its
balance history (accounts/history.py says what a period's balance and net worth are).

The page of accounts and the positions go through the request's session (the person was
checked by deps.CurrentUserDep); one account, its balances and net worth are single
statements on the reader that check the person themselves (ownership_queries)."""

import uuid

import asyncpg
from sqlalchemy import func, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from dashtam_api.ownership_queries import ACTIVE_PERSON, PERSON, rows_of_active_person
from dashtam_core.database import Reader
from dashtam_models import Account, BalanceSnapshot, Position, ProviderConnection

_latest = (
    select(BalanceSnapshot)
    .where(BalanceSnapshot.account_id == Account.id)
    .order_by(BalanceSnapshot.as_of.desc())
    .limit(1)
    .lateral("latest_balance")
)
LatestBalance = aliased(BalanceSnapshot, _latest)


def _accounts_query(user_id: uuid.UUID):
    return (
        select(Account, ProviderConnection.provider_id, LatestBalance)
        .join(ProviderConnection, ProviderConnection.id == Account.connection_id)
        .outerjoin(LatestBalance, true())
        .where(Account.user_id == user_id)
    )


async def accounts_page(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    limit: int,
    offset: int,
    connection_id: uuid.UUID | None = None,
) -> list:
    """Rows of (account, provider id, newest balance, total) of the person's accounts (of one
    connection, or all), oldest first: the total is a window count, taken before LIMIT."""
    query = _accounts_query(user_id).add_columns(func.count().over().label("total"))
    if connection_id is not None:
        query = query.where(Account.connection_id == connection_id)
    return (
        await session.execute(
            query.order_by(Account.created_at, Account.id).limit(limit).offset(offset)
        )
    ).all()


async def accounts_count(
    session: AsyncSession, *, user_id: uuid.UUID, connection_id: uuid.UUID | None = None
) -> int:
    """How many accounts the person has (of one connection, or all)."""
    where = [Account.user_id == user_id]
    if connection_id is not None:
        where.append(Account.connection_id == connection_id)
    return await session.scalar(select(func.count()).select_from(Account).where(*where))


async def account_for_owner(
    session: AsyncSession, *, user_id: uuid.UUID, account_id: uuid.UUID
) -> tuple[Account, uuid.UUID, BalanceSnapshot | None] | None:
    """The person's account with its provider's id and newest balance; None for anyone else's."""
    return (await session.execute(_accounts_query(user_id).where(Account.id == account_id))).first()


async def positions_of(session: AsyncSession, *, account_id: uuid.UUID) -> list[Position]:
    """The account's positions, the largest first."""
    return list(
        (
            await session.scalars(
                select(Position)
                .where(Position.account_id == account_id)
                .order_by(Position.market_value.desc(), Position.symbol)
            )
        ).all()
    )


# One account of the person with its newest balance, and the person's right to sign in (no
# row: they have none), in one statement on the reader (docs/performance.md: the hot path).
_ONE = f"""
SELECT a.id, c.provider_id, a.name, a.account_type, a.number_last4, a.currency, a.synced_at,
       a.closed_at, b.as_of, b.currency AS balance_currency, b.current, b.available, b.cash,
       b.buying_power
  FROM {PERSON}
  LEFT JOIN accounts a ON a.id = $2 AND a.user_id = u.id
  LEFT JOIN provider_connections c ON c.id = a.connection_id
  LEFT JOIN LATERAL (
        SELECT as_of, currency, current, available, cash, buying_power FROM balance_snapshots
         WHERE account_id = a.id ORDER BY as_of DESC LIMIT 1) b ON true
 WHERE {ACTIVE_PERSON}
"""  # noqa: S608 (fixed fragments)


async def account_row(
    reader: Reader, *, user_id: uuid.UUID, account_id: uuid.UUID
) -> asyncpg.Record:
    """The account's row with its newest balance (``id`` NULL: not the person's); Unauthorized
    when the person may not sign in."""
    return (await rows_of_active_person(reader, _ONE, user_id, account_id))[0]


# The last snapshot of each period (DISTINCT ON walks the (account_id, as_of) unique index),
# beside the person's right to sign in and the account's owner: $1 person, $2 account, $3 unit,
# $4..$5 the bounds. No row at all: the person may not sign in; NULLs: nothing in the range.
BALANCES = f"""
WITH periods AS (
    SELECT DISTINCT ON (period)
           (date_trunc($3, b.as_of AT TIME ZONE 'UTC'))::date AS period,
           b.as_of, b.currency, b.current, b.available, b.cash, b.buying_power
      FROM balance_snapshots b
     WHERE b.account_id = $2 AND b.as_of >= $4 AND b.as_of < $5
     ORDER BY period, b.as_of DESC
)
SELECT periods.*, EXISTS (SELECT FROM accounts a WHERE a.id = $2 AND a.user_id = $1) AS owned
  FROM {PERSON} LEFT JOIN periods ON true
 WHERE {ACTIVE_PERSON}
 ORDER BY periods.period
"""  # noqa: S608 (fixed fragments)

# Per period and currency, each account's newest snapshot up to the period's end, from the
# accounts' closing days (balance_days, one row per account and day): one range of that table per
# account, each day's row tagged with its period and the last of each period kept; each such
# closing balance then covers its period and the ones after it up to the account's next (or
# its last open period), and the covered periods are summed. No periods x accounts grid, no
# index probe per period: the rows read grow with the accounts' days.
# $1 person, $2 unit, $3 step, $4..$5 the bounds.
NET_WORTH = f"""
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
SELECT totals.* FROM {PERSON} LEFT JOIN totals ON true
 WHERE {ACTIVE_PERSON}
 ORDER BY totals.period, totals.currency
"""  # noqa: S608 (fixed fragments)
# The interval of each period's unit ($3 of NET_WORTH).
STEP = {"day": "1 day", "week": "1 week", "month": "1 month"}


async def balance_rows(
    reader: Reader,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    interval: str,
    start,
    stop,
) -> list[asyncpg.Record]:
    """BALANCES' rows (``owned`` false: not the person's account); Unauthorized when the person
    may not sign in."""
    return await rows_of_active_person(reader, BALANCES, user_id, account_id, interval, start, stop)


async def net_worth_rows(
    reader: Reader, *, user_id: uuid.UUID, interval: str, start, stop
) -> list[asyncpg.Record]:
    """NET_WORTH's rows; Unauthorized when the person may not sign in."""
    return await rows_of_active_person(
        reader, NET_WORTH, user_id, interval, STEP[interval], start, stop
    )
