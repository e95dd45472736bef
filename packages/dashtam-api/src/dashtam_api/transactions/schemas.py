"""Transactions as the API shows them: money as decimal strings, newest first, by cursor."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dashtam_api.cursors import Cursor
from dashtam_api.days import Day
from dashtam_api.storable_text import CleanText
from dashtam_models import TransactionKind, TransactionStatus

Status = Literal[tuple(s.value for s in TransactionStatus)]
Kind = Literal[tuple(k.value for k in TransactionKind)]


class TransactionQuery(BaseModel):
    """The query of a transactions list; an unknown parameter is refused (422)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Day | None = Field(None, alias="from", description="On or after this day (UTC).")
    to: Day | None = Field(
        None, description="On or before this day (UTC). Before `from`: nothing matches."
    )
    status: Status | None = None
    kind: Kind | None = None
    symbol: CleanText | None = Field(None, min_length=1, max_length=32)
    q: CleanText | None = Field(
        None, min_length=1, max_length=100, description="Text in the description or payee."
    )
    limit: int = Field(50, ge=1, le=200, description="Items per page.")
    cursor: Cursor = None


class TransactionOut(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    status: Status
    occurred_at: datetime = Field(description="posted_at when posted, else transacted_at.")
    posted_at: datetime | None
    transacted_at: datetime | None
    settlement_date: date | None
    amount: Decimal = Field(description="Signed: money into the account is positive.")
    currency: str
    description: str
    payee: str | None
    memo: str | None
    kind: Kind
    institution_type: str | None
    symbol: str | None
    asset_type: str | None
    quantity: Decimal | None
    price: Decimal | None
    fees: Decimal | None
    pending_external_id: str | None = Field(
        description="The institution's id of the pending transaction this one completed."
    )
    import_id: uuid.UUID | None = Field(
        description="The file import that added it (GET /api/v1/imports/{id}); null: read "
        "from the institution by a sync."
    )


class TransactionPage(BaseModel):
    items: list[TransactionOut]
    limit: int
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )
