"""Files a person imported into an account: what each import found and how it ended."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, Index, Integer, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from dashtam_models.base import created_at, foreign_key, one_of, uuid_pk


class ImportStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # nothing of the file was kept (errors says why)


def _count() -> int:
    return Field(
        default=0, sa_type=Integer, sa_column_kwargs={"server_default": "0", "nullable": False}
    )


class Import(SQLModel, table=True):
    """One file imported into one account. An import is one transaction: it ends ``done``
    with every row it added, or ``failed`` with none (its ``errors`` name the lines)."""

    __tablename__ = "imports"
    __table_args__ = (
        CheckConstraint(one_of("status", ImportStatus), name="status"),
        # An account's imports newest first.
        Index("ix_imports_account_id_created_at_id", "account_id", "created_at", "id"),
    )

    id: uuid.UUID | None = uuid_pk()
    # Denormalised from the account, as accounts carry it: the 404 for anyone else's is one
    # lookup.
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE", index=False)
    account_id: uuid.UUID = foreign_key("accounts.id", ondelete="CASCADE", index=False)
    status: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    format: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    filename: str | None = Field(default=None, sa_type=Text)
    added: int = _count()
    updated: int = _count()
    duplicates: int = _count()
    skipped: int = _count()
    # [{"line": n, "message": "..."}], the first IMPORT_MAX_ERRORS of them.
    errors: list = Field(
        default_factory=list,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": "[]", "nullable": False},
    )
    created_at: datetime | None = created_at()
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
