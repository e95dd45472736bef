"""Refresh tokens: stored only as a SHA-256 hash, looked up by it, rotated within a family."""

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Text, Uuid
from sqlmodel import Field, SQLModel

from dashtam_models.base import created_at, foreign_key, uuid_pk


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_tokens"

    id: uuid.UUID | None = uuid_pk()
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE")
    # Every token issued from one login shares a family; reuse of a rotated token revokes it all.
    family_id: uuid.UUID = Field(sa_type=Uuid, sa_column_kwargs={"nullable": False, "index": True})
    token_hash: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False, "unique": True})
    expires_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"nullable": False}
    )
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    user_agent: str | None = Field(default=None, sa_type=Text)
    created_at: datetime | None = created_at()
