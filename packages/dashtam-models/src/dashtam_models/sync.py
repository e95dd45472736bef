"""Every sync on record: who asked for it, when it ran, how it ended and what it counted."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, Index, Integer, Text
from sqlmodel import Field, SQLModel

from dashtam_models.base import foreign_key, one_of, uuid_pk


class SyncTrigger(StrEnum):
    SCHEDULE = "schedule"  # the background loop, once per SYNC_INTERVAL_SECONDS
    MANUAL = "manual"  # POST /providers/{id}/sync
    CONNECT = "connect"  # the first sync of a connection, right after it was made


class SyncStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class SyncRun(SQLModel, table=True):
    """One sync of a connection. Started in the transaction that claims the connection, ended
    in the one that writes the result or gives the claim back; a run left ``running`` by a
    process that died is ended ``failed`` (``abandoned``) by the next claim of its connection."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        CheckConstraint(one_of("trigger", SyncTrigger), name="trigger"),
        CheckConstraint(one_of("status", SyncStatus), name="status"),
        # A connection's runs newest first, by keyset; the pruning by age.
        Index("ix_sync_runs_connection_id_started_at_id", "connection_id", "started_at", "id"),
        Index("ix_sync_runs_started_at", "started_at"),
    )

    id: uuid.UUID | None = uuid_pk()
    connection_id: uuid.UUID = foreign_key(
        "provider_connections.id", ondelete="CASCADE", index=False
    )
    trigger: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    status: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    started_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # What a successful run wrote (NULL until it ends, and on failure).
    accounts: int | None = Field(default=None, sa_type=Integer)
    positions: int | None = Field(default=None, sa_type=Integer)
    transactions_added: int | None = Field(default=None, sa_type=Integer)
    transactions_modified: int | None = Field(default=None, sa_type=Integer)
    transactions_removed: int | None = Field(default=None, sa_type=Integer)
    # A failure: its kind (the institution's OAuth/API error code, or ours: abandoned,
    # cut_short, refresh_failed, unsupported) and a detail written for people, never a secret.
    error: str | None = Field(default=None, sa_type=Text)
    error_detail: str | None = Field(default=None, sa_type=Text)
