"""What a sync reads from an institution: accounts, their balance snapshots and positions.

Money and quantities are NUMERIC without a fixed scale, Decimal in Python: a value keeps exactly
the digits the institution sent (never a float on the way). Account numbers are never stored
whole: the last four characters for display, and the institution's opaque id for its calls
(Schwab's hashValue).
"""

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Date, DateTime, Index, Numeric, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from dashtam_models.base import created_at, foreign_key, updated_at, uuid_pk

_CURRENCY = "currency ~ '^[A-Z]{3}$'"


def _currency() -> str:
    return Field(
        default="USD", sa_type=Text, sa_column_kwargs={"server_default": "USD", "nullable": False}
    )


def _money(*, nullable: bool) -> Decimal | None:
    return Field(default=None, sa_type=Numeric(asdecimal=True), nullable=nullable)


def _when(*, nullable: bool = False) -> datetime | None:
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=nullable)


class Account(SQLModel, table=True):
    """One account at an institution, as of its connection's latest sync."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("connection_id", "external_id"),
        CheckConstraint("number_last4 IS NULL OR char_length(number_last4) <= 4", name="last4"),
        CheckConstraint(_CURRENCY, name="currency"),
        # A person's accounts page by page (WHERE user_id ORDER BY created_at, id).
        Index("ix_accounts_user_id_created_at_id", "user_id", "created_at", "id"),
    )

    id: uuid.UUID | None = uuid_pk()
    # Denormalised from the connection's provider: "my accounts" and the 404 for anyone else's
    # are one indexed lookup.
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE", index=False)
    connection_id: uuid.UUID = foreign_key(
        "provider_connections.id", ondelete="CASCADE", index=False
    )
    # The institution's opaque id for the account (Schwab: hashValue), used in its API calls.
    external_id: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    account_type: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    name: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    number_last4: str | None = Field(default=None, sa_type=Text)
    currency: str = _currency()
    # When the institution last listed it (the as_of of this row).
    synced_at: datetime = _when()
    # Set when a sync no longer finds the account; its history stays.
    closed_at: datetime | None = _when(nullable=True)
    # The CSV mapping of its last CSV import (docs/imports.md): the next CSV without one uses it.
    import_mapping: dict | None = Field(default=None, sa_type=JSONB)
    created_at: datetime | None = created_at()
    updated_at: datetime | None = updated_at()


class BalanceSnapshot(SQLModel, table=True):
    """An account's balances at one sync; the history accumulates, the newest is current."""

    __tablename__ = "balance_snapshots"
    __table_args__ = (
        # One snapshot per sync; the unique index also serves "newest per account".
        UniqueConstraint("account_id", "as_of"),
        CheckConstraint(_CURRENCY, name="currency"),
    )

    id: uuid.UUID | None = uuid_pk()
    account_id: uuid.UUID = foreign_key("accounts.id", ondelete="CASCADE", index=False)
    as_of: datetime = _when()
    currency: str = _currency()
    # Total value (Schwab: liquidation value; a bank account: its current balance).
    current: Decimal = _money(nullable=False)
    available: Decimal | None = _money(nullable=True)
    cash: Decimal | None = _money(nullable=True)
    buying_power: Decimal | None = _money(nullable=True)
    created_at: datetime | None = created_at()


class BalanceDay(SQLModel, table=True):
    """An account's closing balance of each UTC day it has a snapshot: that day's newest.

    Kept by PostgreSQL itself (a statement trigger on balance_snapshots' inserts, migration
    e4b1d7a20c93), whoever writes the snapshots; snapshots are written once and never changed.
    Net worth reads a year of an account in one range of this table (365 rows) instead of
    probing the snapshots once per day (docs/performance.md).
    """

    __tablename__ = "balance_days"
    __table_args__ = (CheckConstraint(_CURRENCY, name="currency"),)

    account_id: uuid.UUID = foreign_key(
        "accounts.id", ondelete="CASCADE", index=False, primary_key=True
    )
    day: date = Field(primary_key=True, sa_type=Date)
    as_of: datetime = _when()
    currency: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    current: Decimal = _money(nullable=False)


class Position(SQLModel, table=True):
    """A holding in an account as of the latest sync (each sync replaces the account's set)."""

    __tablename__ = "positions"
    __table_args__ = (
        UniqueConstraint("account_id", "asset_type", "symbol"),
        CheckConstraint(_CURRENCY, name="currency"),
    )

    id: uuid.UUID | None = uuid_pk()
    account_id: uuid.UUID = foreign_key("accounts.id", ondelete="CASCADE", index=False)
    symbol: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    description: str | None = Field(default=None, sa_type=Text)
    asset_type: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    # Long minus short; fractional shares keep their digits.
    quantity: Decimal = _money(nullable=False)
    price: Decimal | None = _money(nullable=True)
    market_value: Decimal = _money(nullable=False)
    cost_basis: Decimal | None = _money(nullable=True)
    currency: str = _currency()
    as_of: datetime = _when()
    created_at: datetime | None = created_at()
