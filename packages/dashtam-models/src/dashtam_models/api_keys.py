"""Personal API keys: a Bearer credential for scripts and apps, limited to scopes, expiring.
Only the key's SHA-256 is kept (256 random bits: no slow hash is needed), and its first
characters, so that a person recognises it in the list."""

import uuid
from datetime import datetime

from sqlalchemy import ARRAY, DateTime, Text
from sqlmodel import Field, SQLModel

from dashtam_models.base import created_at, foreign_key, uuid_pk


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: uuid.UUID | None = uuid_pk()
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE")
    name: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    prefix: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    key_hash: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False, "unique": True})
    scopes: list[str] = Field(sa_type=ARRAY(Text), nullable=False)
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    last_used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime | None = created_at()
