"""Accounts as the API shows them. Money is a Decimal, and a string in JSON: never a float."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dashtam_api.storable_text import CleanText


class BalanceOut(BaseModel):
    as_of: datetime
    currency: str
    current: Decimal = Field(description="Total value (a decimal string).")
    available: Decimal | None
    cash: Decimal | None
    buying_power: Decimal | None


class AccountOut(BaseModel):
    id: uuid.UUID
    provider_id: uuid.UUID
    name: str
    account_type: str
    number_masked: str | None = Field(description="Only the last four characters are kept.")
    currency: str
    synced_at: datetime
    closed_at: datetime | None
    balance: BalanceOut | None


class CreateAccount(BaseModel):
    """A manual account: no institution feeds it; its transactions come from imported files."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Credit union checking",
                    "account_type": "checking",
                    "currency": "USD",
                    "opening_balance": "1250.00",
                }
            ]
        },
    )

    name: CleanText = Field(min_length=1, max_length=100)
    account_type: CleanText = Field(
        min_length=1,
        max_length=40,
        description="As you name it: checking, savings, credit_card, brokerage, loan, ...",
    )
    currency: str = Field(pattern="^[A-Z]{3}$", description="ISO 4217, e.g. USD, EUR.")
    # A decimal string, as the API writes money (a JSON number would be a float on the way).
    opening_balance: str | None = Field(
        default=None,
        pattern=r"^-?[0-9]{1,18}(\.[0-9]{1,10})?$",
        description="Its balance now, a decimal string; none: its files will say.",
        examples=["1250.00"],
    )
    provider_id: uuid.UUID | None = Field(
        default=None,
        description="A provider of kind file to hold it; none: your 'Manual accounts' "
        "provider (made the first time).",
    )


class AccountPage(BaseModel):
    items: list[AccountOut]
    total: int
    limit: int
    offset: int


class PositionOut(BaseModel):
    symbol: str
    description: str | None
    asset_type: str
    quantity: Decimal
    price: Decimal | None
    market_value: Decimal
    cost_basis: Decimal | None
    currency: str
    as_of: datetime


class PositionList(BaseModel):
    account_id: uuid.UUID
    as_of: datetime | None
    items: list[PositionOut]


class TransactionCounts(BaseModel):
    added: int = Field(description="Transactions new to Dashtam.")
    modified: int = Field(description="Changed ones, and pendings that posted.")
    removed: int = Field(description="Pendings the institution dropped: now cancelled.")


class SyncOut(BaseModel):
    provider_id: uuid.UUID
    synced_at: datetime
    accounts: int
    positions: int
    transactions: TransactionCounts
    refreshed: bool = Field(description="Whether the access token was refreshed on the way.")
    run_id: uuid.UUID = Field(description="This sync in GET /providers/{id}/sync-runs.")


class BalancePoint(BaseModel):
    period: date = Field(description="The period's first day (UTC).")
    as_of: datetime = Field(description="The snapshot: the period's last.")
    currency: str
    current: Decimal
    available: Decimal | None
    cash: Decimal | None
    buying_power: Decimal | None


class BalanceHistory(BaseModel):
    account_id: uuid.UUID
    interval: Literal["day", "week", "month"]
    items: list[BalancePoint]
    next_from: date | None = Field(
        description="More periods follow (a series is served 1,000 periods at a time): ask "
        "again with this as `from`, the rest unchanged; null on the last page."
    )


class NetWorthPoint(BaseModel):
    period: date = Field(description="The period's first day (UTC).")
    currency: str
    total: Decimal = Field(description="The accounts in this currency at the period's end.")
    accounts: int = Field(description="How many accounts the total adds up.")


class NetWorth(BaseModel):
    interval: Literal["day", "week", "month"]
    items: list[NetWorthPoint]
    next_from: date | None = Field(
        description="More periods follow (a series is served 1,000 periods at a time): ask "
        "again with this as `from`, the rest unchanged; null on the last page."
    )
