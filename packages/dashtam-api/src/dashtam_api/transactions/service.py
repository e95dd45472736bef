"""Reading a person's transactions, newest first, by keyset ("cursor") pagination.

The cursor is the last row's (occurred_at, id), opaque to clients: a page is one range scan of
ix_transactions_user_id_occurred_at_id (or the account's index) however deep it is, and rows a
sync inserts meanwhile never shift a page (offsets would skip or repeat them).
"""

import base64
import binascii
import uuid
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.errors import BadRequest, NotFound
from dashtam_api.transactions.schemas import TransactionQuery
from dashtam_models import Account, Transaction, User

OUT_COLUMNS = (
    Transaction.id,
    Transaction.account_id,
    Transaction.status,
    Transaction.occurred_at,
    Transaction.posted_at,
    Transaction.transacted_at,
    Transaction.settlement_date,
    Transaction.amount,
    Transaction.currency,
    Transaction.description,
    Transaction.payee,
    Transaction.memo,
    Transaction.kind,
    Transaction.institution_type,
    Transaction.symbol,
    Transaction.asset_type,
    Transaction.quantity,
    Transaction.price,
    Transaction.fees,
    Transaction.pending_external_id,
)


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


async def page(
    *,
    session: AsyncSession,
    user: User,
    query: TransactionQuery,
    account_id: uuid.UUID | None = None,
) -> dict:
    if account_id is not None:
        owned = await session.scalar(
            select(Account.id).where(Account.id == account_id, Account.user_id == user.id)
        )
        if owned is None:
            raise NotFound("No such account.")
    where = [Transaction.user_id == user.id]
    if account_id is not None:
        where.append(Transaction.account_id == account_id)
    if query.from_ is not None:
        where.append(Transaction.occurred_at >= _day_start(query.from_))
    if query.to is not None:
        where.append(Transaction.occurred_at < _day_start(query.to + timedelta(days=1)))
    if query.status is not None:
        where.append(Transaction.status == query.status)
    if query.kind is not None:
        where.append(Transaction.kind == query.kind)
    if query.symbol is not None:
        where.append(Transaction.symbol == query.symbol.upper())
    if query.q is not None:
        pattern = "%" + query.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(or_(Transaction.description.ilike(pattern), Transaction.payee.ilike(pattern)))
    if query.cursor is not None:
        after = decode_cursor(query.cursor)
        where.append(tuple_(Transaction.occurred_at, Transaction.id) < after)
    rows = (
        await session.execute(
            select(*OUT_COLUMNS)
            .where(*where)
            .order_by(Transaction.occurred_at.desc(), Transaction.id.desc())
            .limit(query.limit + 1)
        )
    ).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return {
        "items": [row._asdict() for row in rows],
        "limit": query.limit,
        "next_cursor": encode_cursor(rows[-1].occurred_at, rows[-1].id) if more else None,
    }


async def get(*, session: AsyncSession, user: User, transaction_id: uuid.UUID) -> dict:
    row = (
        await session.execute(
            select(*OUT_COLUMNS).where(
                Transaction.id == transaction_id, Transaction.user_id == user.id
            )
        )
    ).first()
    if row is None:
        raise NotFound("No such transaction.")
    return row._asdict()
