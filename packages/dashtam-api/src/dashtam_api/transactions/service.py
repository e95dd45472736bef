"""Reading a person's transactions, newest first, by keyset ("cursor") pagination.

The cursor is the last row's (occurred_at, id), opaque to clients: a page is one range scan of
ix_transactions_user_id_occurred_at_id (or the account's index) however deep it is, and rows a
sync inserts meanwhile never shift a page (offsets would skip or repeat them).

The hot path is built for a table of millions (docs/performance.md): one statement that also
checks the person (and the account) behind the token, its SQL assembled from fixed fragments
(asyncpg prepares each distinct text once per connection), run on the reader's connection, and
its rows written straight to JSON, the shapes of schemas.py without validating them again.
"""

import base64
import binascii
import uuid
from datetime import UTC, datetime, time, timedelta

from pydantic_core import to_json

from dashtam_api.errors import ACCOUNT_GONE, BadRequest, NotFound, Unauthorized
from dashtam_api.transactions.schemas import TransactionQuery
from dashtam_core.database import Reader

COLUMNS = (
    "id",
    "account_id",
    "status",
    "occurred_at",
    "posted_at",
    "transacted_at",
    "settlement_date",
    "amount",
    "currency",
    "description",
    "payee",
    "memo",
    "kind",
    "institution_type",
    "symbol",
    "asset_type",
    "quantity",
    "price",
    "fees",
    "pending_external_id",
)
_SELECTED = ", ".join(f"t.{c}" for c in COLUMNS)
# asyncpg's own UUID type takes pydantic_core's slow path (three times the cost of the rest of
# a row): ids leave as the strings they are in JSON anyway.
_IDS = ("id", "account_id")


def _item(row) -> dict:
    item = {c: row[c] for c in COLUMNS}
    for c in _IDS:
        item[c] = str(item[c])
    return item


# One transaction of the person, and whether the person may still sign in: no row, they may not.
_ONE = f"""
SELECT {_SELECTED} FROM users u
  LEFT JOIN transactions t ON t.id = $2 AND t.user_id = u.id
 WHERE u.id = $1 AND u.is_active
"""  # noqa: S608 (fixed column names)


def encode_cursor(occurred_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{occurred_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, row_id = raw.split("|")
        occurred_at = datetime.fromisoformat(when)
        if occurred_at.tzinfo is None:
            raise ValueError("naive")
        return occurred_at, uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("The cursor is not one this API gave out.", parameter="cursor") from None


def _day_start(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


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
        where.append(f"t.occurred_at >= {arg(_day_start(query.from_))}")
    if query.to is not None:
        where.append(f"t.occurred_at < {arg(_day_start(query.to + timedelta(days=1)))}")
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
    limit = arg(query.limit + 1)
    owned = (
        "true"
        if account_id is None
        else "EXISTS (SELECT FROM accounts a WHERE a.id = $2 AND a.user_id = $1)"
    )
    # Fragments and $n placeholders only: every value travels as an argument.
    sql = f"""
WITH page AS (
    SELECT {_SELECTED} FROM transactions t
     WHERE {" AND ".join(where)}
     ORDER BY t.occurred_at DESC, t.id DESC
     LIMIT {limit}
)
SELECT page.*, {owned} AS owned FROM users u LEFT JOIN page ON true
 WHERE u.id = $1 AND u.is_active
 ORDER BY page.occurred_at DESC, page.id DESC
"""  # noqa: S608
    return sql, args


async def page(
    *,
    reader: Reader,
    user_id: uuid.UUID,
    query: TransactionQuery,
    account_id: uuid.UUID | None = None,
) -> bytes:
    """The page as the JSON of schemas.TransactionPage."""
    sql, args = page_query(user_id, query, account_id)
    rows = await reader.fetch(sql, *args)
    if not rows:
        raise Unauthorized(ACCOUNT_GONE)
    if not rows[0]["owned"]:
        raise NotFound("No such account.")
    if rows[0]["id"] is None:
        rows = []
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return to_json(
        {
            "items": [_item(row) for row in rows],
            "limit": query.limit,
            "next_cursor": encode_cursor(rows[-1]["occurred_at"], rows[-1]["id"]) if more else None,
        }
    )


async def get(*, reader: Reader, user_id: uuid.UUID, transaction_id: uuid.UUID) -> bytes:
    rows = await reader.fetch(_ONE, user_id, transaction_id)
    if not rows:
        raise Unauthorized(ACCOUNT_GONE)
    if rows[0]["id"] is None:
        raise NotFound("No such transaction.")
    return to_json(_item(rows[0]))
