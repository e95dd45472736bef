"""The statements of an export (exports/service.py): the person's account, its transactions
streamed from a server-side cursor in batches, its positions."""

import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg

from dashtam_api.ownership_queries import ACTIVE_PERSON, PERSON, rows_of_active_person
from dashtam_core.database import Reader

_ROWS = """
SELECT t.id, t.occurred_at, t.posted_at, t.status, t.amount::text AS amount, t.currency,
       t.description, t.payee, t.memo, t.kind, t.institution_type, t.symbol, t.asset_type,
       t.quantity::text AS quantity, t.price::text AS price, t.fees::text AS fees
  FROM transactions t
 WHERE t.user_id = $1 AND t.account_id = $2 AND t.occurred_at >= $3 AND t.occurred_at < $4
       {status}
 ORDER BY t.occurred_at, t.id
"""

_ACCOUNT = f"""
SELECT a.id, a.name, a.account_type, a.currency, a.number_last4, p.provider_key,
       b.current, b.available, b.cash, b.as_of,
       (SELECT count(*) FROM positions x WHERE x.account_id = a.id) AS positions
  FROM {PERSON}
  LEFT JOIN accounts a ON a.id = $2 AND a.user_id = u.id
  LEFT JOIN provider_connections c ON c.id = a.connection_id
  LEFT JOIN providers p ON p.id = c.provider_id
  LEFT JOIN LATERAL (SELECT * FROM balance_snapshots s WHERE s.account_id = a.id
                      ORDER BY s.as_of DESC LIMIT 1) b ON true
 WHERE {ACTIVE_PERSON}
"""  # noqa: S608 (fixed fragments)

_POSITIONS = """
SELECT symbol, description, asset_type, quantity::text AS quantity, price::text AS price,
       market_value::text AS market_value, currency, as_of
  FROM positions WHERE account_id = $1 ORDER BY symbol
"""


async def account_row(
    reader: Reader, *, user_id: uuid.UUID, account_id: uuid.UUID
) -> asyncpg.Record:
    """The account with its provider, newest balance and number of positions (``id`` NULL: not
    the person's); Unauthorized when the person may not sign in."""
    return (await rows_of_active_person(reader, _ACCOUNT, user_id, account_id))[0]


def transaction_batches(
    reader: Reader,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    start: datetime,
    end: datetime,
    posted_only: bool,
    batch: int,
) -> AsyncIterator[list[asyncpg.Record]]:
    """The account's transactions in [start, end), oldest first, ``batch`` rows at a time (money
    and quantities as the decimal text stored)."""
    status = "AND t.status = 'posted'" if posted_only else ""
    query = _ROWS.format(status=status)  # a fixed fragment, never a value
    return reader.stream(query, user_id, account_id, start, end, batch=batch)


async def position_rows(reader: Reader, *, account_id: uuid.UUID) -> list[asyncpg.Record]:
    """The account's positions by symbol (numbers as the decimal text stored)."""
    return await reader.fetch(_POSITIONS, account_id)
