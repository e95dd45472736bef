"""SimpleFIN: Dashtam serving a person's accounts to the budgeting apps that read the SimpleFIN
protocol (dashtam_api/simplefin/). A setup token is a one-time claim, short-lived; claiming it
makes an access (HTTP Basic credentials in an access URL), read-only, until revoked. Only
SHA-256 hashes of the setup token and of the access password are kept."""

import uuid
from datetime import datetime

from sqlalchemy import ARRAY, DateTime, Text, Uuid
from sqlmodel import Field, SQLModel

from dashtam_models.base import created_at, foreign_key, uuid_pk


def _accounts() -> list[uuid.UUID] | None:
    # NULL: every account of the person, those added later included.
    return Field(default=None, sa_type=ARRAY(Uuid), nullable=True)


def _when(*, nullable: bool = True) -> datetime | None:
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=nullable)


class SimplefinSetupToken(SQLModel, table=True):
    __tablename__ = "simplefin_setup_tokens"

    id: uuid.UUID | None = uuid_pk()
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE")
    token_hash: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False, "unique": True})
    label: str = Field(default="", sa_type=Text, sa_column_kwargs={"server_default": ""})
    account_ids: list[uuid.UUID] | None = _accounts()
    expires_at: datetime = _when(nullable=False)
    claimed_at: datetime | None = _when()
    created_at: datetime | None = created_at()


class SimplefinAccess(SQLModel, table=True):
    """One app's read access. ``username`` is the public half of its credentials (looked up),
    the password only as its SHA-256 (256 random bits: no slow hash is needed)."""

    __tablename__ = "simplefin_access"

    id: uuid.UUID | None = uuid_pk()
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE")
    setup_token_id: uuid.UUID | None = foreign_key(
        "simplefin_setup_tokens.id", ondelete="SET NULL", nullable=True, index=False
    )
    label: str = Field(default="", sa_type=Text, sa_column_kwargs={"server_default": ""})
    username: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False, "unique": True})
    secret_hash: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    account_ids: list[uuid.UUID] | None = _accounts()
    claimed_ip: str | None = Field(default=None, sa_type=Text)
    last_used_at: datetime | None = _when()
    last_used_ip: str | None = Field(default=None, sa_type=Text)
    revoked_at: datetime | None = _when()
    created_at: datetime | None = created_at()
