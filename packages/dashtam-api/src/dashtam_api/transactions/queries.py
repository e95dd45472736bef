"""The statements of a person's transactions, and the item's JSON as PostgreSQL writes it.

The item is declared once, as schemas.TransactionOut: each of its fields is the column of the
same name, in the JSON form of the field's type (``item_fields``). The page, one transaction,
the sync's stored copy (sync/queries.py) and the bench's seed all take the item from here; the
migration that first wrote it keeps a frozen copy (tests/unit/test_item_json.py holds the two
equal).

The hot path is built for a table of millions (docs/performance.md): one statement that also
checks the person (and the account) behind the token (ownership_queries), its SQL assembled from
fixed fragments (asyncpg prepares each distinct text once per connection), run on the reader's
connection. The page's JSON comes from PostgreSQL (each item the JSON the row keeps, else
row_to_json of the columns in the API's forms; the items joined) and Python wraps it: decoding
20 columns a row into Python objects and encoding them again took twice the time of everything
else in a request (a page of 50: ~500 -> ~900 req/s on one worker).
tests/api/test_transactions.py holds every item to the JSON pydantic writes for
schemas.TransactionOut.
"""

import types
import typing
import uuid
from datetime import datetime
from decimal import Decimal

import asyncpg

from dashtam_api.cursors import decode_cursor
from dashtam_api.days import day_end, day_start
from dashtam_api.ownership_queries import ACTIVE_PERSON, PERSON, rows_of_active_person
from dashtam_api.transactions.schemas import TransactionOut, TransactionQuery
from dashtam_core.database import Reader


def _rfc3339(column: str) -> str:
    """A timestamp in UTC with a Z, as pydantic writes it, but for a fraction of a second: only
    its significant digits (.12Z, where pydantic writes .120000Z; the same instant). ISO text
    with a T put in: a third of the cost of to_char, which took a third of the page's time in
    PostgreSQL. Institutions give whole seconds."""
    return f"overlay(({column} AT TIME ZONE 'UTC')::text placing 'T' from 11) || 'Z'"


def _types(annotation) -> set:
    """The types a field's annotation allows (``Decimal | None``: Decimal and None)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return set(typing.get_args(annotation))
    return {annotation}


def _json_value(column: str, annotation) -> str:
    """``column`` as the JSON value a field of this type is in the API: timestamps as RFC 3339
    text, money and quantities as decimal strings (never JSON numbers), the rest (ids, text,
    ISO dates) as row_to_json writes them."""
    allowed = _types(annotation)
    if datetime in allowed:
        return _rfc3339(column)
    if Decimal in allowed:
        return f"{column}::text"
    return column


def item_fields(row: str) -> dict[str, str]:
    """schemas.TransactionOut's fields in order, each as the JSON value it is in the API, taken
    from the column of its name in ``row`` (an alias)."""
    return {
        name: _json_value(f"{row}.{name}", field.annotation)
        for name, field in TransactionOut.model_fields.items()
    }


def item_lateral(row: str) -> str:
    """A FROM item ``item`` holding the API's fields of ``row``: ``row_to_json(item)::text`` is
    the transaction's JSON as the API serves it."""
    columns = ", ".join(f"{sql} AS {name}" for name, sql in item_fields(row).items())
    return f"CROSS JOIN LATERAL (SELECT {columns}) item"


# The item as served: the JSON the row keeps (transactions.item_json, written with the row by
# the sync; docs/performance.md), else written now. Each page of 50 took PostgreSQL ~460 us
# to write; the stored copy is read as it is. NULL whenever the row was changed without it
# (a trigger sees to that), so never stale.
ITEM = "coalesce(t.item_json, row_to_json(item)::text)"
_ITEM = item_lateral("t")

# One transaction of the person (its JSON as UTF-8 bytes: asyncpg hands bytea over as it is),
# and whether the person may still sign in: no row, they may not.
_ONE = f"""
SELECT t.id, convert_to({ITEM}, 'UTF8') AS item FROM {PERSON}
  LEFT JOIN transactions t ON t.id = $2 AND t.user_id = u.id
  {_ITEM}
 WHERE {ACTIVE_PERSON}
"""  # noqa: S608 (fixed fragments)


def _like(text: str) -> str:
    """``text`` anywhere, its own % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def page_query(
    user_id: uuid.UUID, query: TransactionQuery, account_id: uuid.UUID | None = None
) -> tuple[str, list]:
    """The page's statement and arguments: the filters, the keyset after the cursor, newest
    first, one row more than the page (to know whether there is a next one); beside them, the
    person's right to sign in (no row at all: they have none) and, for an account's page,
    whether the account is theirs (``owned``)."""
    args: list = [user_id]

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    where = ["t.user_id = $1"]
    if account_id is not None:
        where.append(f"t.account_id = {arg(account_id)}")
    if query.from_ is not None:
        where.append(f"t.occurred_at >= {arg(day_start(query.from_))}")
    if query.to is not None:
        where.append(f"t.occurred_at < {arg(day_end(query.to))}")
    symbol = query.symbol.upper() if query.symbol is not None else None
    for column, value in (("status", query.status), ("kind", query.kind), ("symbol", symbol)):
        if value is not None:
            where.append(f"t.{column} = {arg(value)}")
    if query.q is not None:
        pattern = arg(_like(query.q))
        where.append(f"(t.description ILIKE {pattern} OR t.payee ILIKE {pattern})")
    if query.cursor is not None:
        occurred_at, row_id = decode_cursor(query.cursor)
        where.append(f"(t.occurred_at, t.id) < ({arg(occurred_at)}, {arg(row_id)})")
    limit = arg(query.limit)
    owned = (
        "true"
        if account_id is None
        else "EXISTS (SELECT FROM accounts a WHERE a.id = $2 AND a.user_id = $1)"
    )
    # Fragments and $n placeholders only: every value travels as an argument. One row comes
    # back, whatever the page's size: the items' JSON, separated by an ASCII record
    # separator (never in JSON text: row_to_json escapes control characters), one item more
    # than the page when there is more; the keyset of the page's last row for the next cursor.
    # No row: the person may not sign in. (A window and CTEs cost PostgreSQL an eighth more.)
    sql = f"""
SELECT convert_to(string_agg(page.item, E'\\x1e' ORDER BY page.occurred_at DESC, page.id DESC),
                  'UTF8') AS items,
       count(page.id) AS n,
       (array_agg(page.occurred_at ORDER BY page.occurred_at DESC, page.id DESC))[{limit}]
           AS last_occurred_at,
       (array_agg(page.id ORDER BY page.occurred_at DESC, page.id DESC))[{limit}] AS last_id,
       {owned} AS owned
  FROM {PERSON} LEFT JOIN LATERAL (
       SELECT t.occurred_at, t.id, {ITEM} AS item FROM transactions t {_ITEM}
        WHERE {" AND ".join(where)}
        ORDER BY t.occurred_at DESC, t.id DESC
        LIMIT {limit} + 1) page ON true
 WHERE {ACTIVE_PERSON}
 GROUP BY u.id
"""  # noqa: S608
    return sql, args


async def page_row(
    reader: Reader,
    *,
    user_id: uuid.UUID,
    query: TransactionQuery,
    account_id: uuid.UUID | None = None,
) -> asyncpg.Record:
    """The page's one row (``page_query``); Unauthorized when the person may not sign in."""
    sql, args = page_query(user_id, query, account_id)
    (row,) = await rows_of_active_person(reader, sql, *args)
    return row


async def transaction_item(
    reader: Reader, *, user_id: uuid.UUID, transaction_id: uuid.UUID
) -> bytes | None:
    """The person's transaction as its JSON (UTF-8), None when it is not theirs; Unauthorized
    when the person may not sign in."""
    rows = await rows_of_active_person(reader, _ONE, user_id, transaction_id)
    return None if rows[0]["id"] is None else rows[0]["item"]
