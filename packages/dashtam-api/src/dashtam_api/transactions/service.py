"""Reading a person's transactions, newest first, by keyset ("cursor") pagination.

The cursor is the last row's (occurred_at, id) (dashtam_api/cursors.py): a page is one range
scan of ix_transactions_user_id_occurred_at_id (or the account's index) however deep it is.
The statement and the items' JSON come from PostgreSQL (transactions/queries.py); Python wraps
the page around them.
"""

import uuid

from pydantic_core import to_json

from dashtam_api.cursors import encode_cursor
from dashtam_api.errors import NotFound
from dashtam_api.transactions import queries
from dashtam_api.transactions.schemas import TransactionQuery
from dashtam_core.database import Reader


async def page(
    *,
    reader: Reader,
    user_id: uuid.UUID,
    query: TransactionQuery,
    account_id: uuid.UUID | None = None,
) -> bytes:
    """The page as the JSON of schemas.TransactionPage."""
    row = await queries.page_row(reader, user_id=user_id, query=query, account_id=account_id)
    if not row["owned"]:
        raise NotFound("No such account.")
    items = row["items"].split(b"\x1e")[: query.limit] if row["n"] else []
    more = row["n"] > query.limit
    cursor = encode_cursor(row["last_occurred_at"], row["last_id"]) if more else None
    return b"".join(
        (
            b'{"items":[',
            b",".join(items),
            b'],"limit":',
            str(query.limit).encode(),
            b',"next_cursor":',
            to_json(cursor),
            b"}",
        )
    )


async def get(*, reader: Reader, user_id: uuid.UUID, transaction_id: uuid.UUID) -> bytes:
    item = await queries.transaction_item(reader, user_id=user_id, transaction_id=transaction_id)
    if item is None:
        raise NotFound("No such transaction.")
    return item
