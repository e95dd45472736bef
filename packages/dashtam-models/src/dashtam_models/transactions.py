"""Every cash and investment activity of an account, read once and reconciled (docs/transactions.md).

One row per real transaction. A pending transaction that posts *becomes* the posted one: the row
keeps its Dashtam id, takes the posted transaction's institution id, dates and amount, and keeps
the pending one's institution id in ``pending_external_id`` (so a late listing of the old
pending is recognised, never inserted again). A pending that the institution drops is
``cancelled``, not deleted: clients that saw it can tell why it is gone.
"""

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    Index,
    LargeBinary,
    Numeric,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from dashtam_models.base import created_at, foreign_key, one_of, updated_at, uuid_pk


class TransactionStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    CANCELLED = "cancelled"


class TransactionKind(StrEnum):
    """The institution's own type, normalized (``institution_type`` keeps theirs)."""

    TRADE = "trade"
    DIVIDEND = "dividend"
    INTEREST = "interest"
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    TRANSFER = "transfer"
    FEE = "fee"
    CARD = "card"
    OTHER = "other"


def _text(*, nullable: bool = True) -> str | None:
    return Field(default=None, sa_type=Text, nullable=nullable)


def _number() -> Decimal | None:
    return Field(default=None, sa_type=Numeric(asdecimal=True), nullable=True)


class Transaction(SQLModel, table=True):
    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint("account_id", "external_id"),
        CheckConstraint(one_of("status", TransactionStatus), name="status"),
        CheckConstraint(one_of("kind", TransactionKind), name="kind"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        # A person's transactions, newest first, paged by (occurred_at, id): the cursor is the
        # last row's pair, so a deep page costs what the first does.
        Index("ix_transactions_user_id_occurred_at_id", "user_id", "occurred_at", "id"),
        Index("ix_transactions_account_id_occurred_at_id", "account_id", "occurred_at", "id"),
        # "Was this pending already posted?" when a late listing shows it again.
        Index(
            "ix_transactions_account_id_pending_external_id",
            "account_id",
            "pending_external_id",
            postgresql_where=text("pending_external_id IS NOT NULL"),
        ),
        # An import's rows (its foreign key's ON DELETE), only the imported ones indexed.
        Index(
            "ix_transactions_import_id",
            "import_id",
            postgresql_where=text("import_id IS NOT NULL"),
        ),
        # The rows whose JSON is to be written again (item_json below).
        Index(
            "ix_transactions_account_id_item_json_missing",
            "account_id",
            postgresql_where=text("item_json IS NULL"),
        ),
    )

    id: uuid.UUID | None = uuid_pk()
    # Denormalised from the account, as accounts carry it: "my transactions" is one index range.
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE", index=False)
    account_id: uuid.UUID = foreign_key("accounts.id", ondelete="CASCADE", index=False)
    # The institution's id for it (Schwab: activityId); unique per account.
    external_id: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    # The institution's id of the pending transaction this posted one replaced.
    pending_external_id: str | None = _text()
    status: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    # When it happened for ordering and filtering: posted_at when posted, else transacted_at.
    occurred_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    posted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # When the person made it (a card swipe, a trade's date).
    transacted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    settlement_date: date | None = Field(default=None, sa_type=Date)
    # Signed: money into the account is positive, out of it negative.
    amount: Decimal = Field(sa_type=Numeric(asdecimal=True), nullable=False)
    currency: str = Field(
        default="USD", sa_type=Text, sa_column_kwargs={"server_default": "USD", "nullable": False}
    )
    description: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    payee: str | None = _text()
    memo: str | None = _text()
    institution_type: str | None = _text()
    kind: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    # Trades (and dividends in kind): the instrument, how much, at what price, what it cost.
    symbol: str | None = _text()
    asset_type: str | None = _text()
    quantity: Decimal | None = _number()
    price: Decimal | None = _number()
    fees: Decimal | None = _number()
    # A digest of the listing this row was last written from (sync/transactions.py): the same
    # entry listed again is recognised without sending it to the database. NULL: compare anew.
    fingerprint: bytes | None = Field(default=None, sa_type=LargeBinary)
    # The import that added it (NULL: read from the institution by a sync). A deleted import
    # record leaves its rows.
    import_id: uuid.UUID | None = foreign_key(
        "imports.id", ondelete="SET NULL", index=False, nullable=True
    )
    # The transaction's JSON exactly as the API serves it, written with the row by the sync
    # (dashtam_api/sync/transactions.py) so that a page is read, not composed. NULL: compose it
    # when read; a trigger (migration 9d4e2b7c1a68) sets it NULL whenever an UPDATE changes
    # the row without writing it, so it is never stale.
    item_json: str | None = _text()
    created_at: datetime | None = created_at()
    updated_at: datetime | None = updated_at()
