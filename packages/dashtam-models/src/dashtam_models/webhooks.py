"""Webhooks: the endpoints people register, the outbox of deliveries, and every attempt made.

An event becomes one ``webhook_deliveries`` row per subscribed endpoint, written by the database
function ``webhook_emit`` inside the transaction of the change that causes it (connection status
changes and finished sync runs call it from triggers), so a rollback sends nothing and a commit
is never lost. Dispatchers claim due rows with ``FOR UPDATE SKIP LOCKED``.
"""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from dashtam_models.base import created_at, foreign_key, one_of, updated_at, uuid_pk


class WebhookEvent(StrEnum):
    CONNECTION_ACTIVE = "connection.active"
    CONNECTION_REAUTH_REQUIRED = "connection.reauth_required"
    CONNECTION_EXPIRED = "connection.expired"
    CONNECTION_ERROR = "connection.error"
    CONNECTION_REVOKED = "connection.revoked"
    SYNC_SUCCEEDED = "sync.succeeded"
    SYNC_FAILED = "sync.failed"
    WEBHOOK_TEST = "webhook.test"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # due at next_attempt_at (or being sent under a lease until then)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # retried for WEBHOOK_RETRY_HOURS, or its endpoint was disabled


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoints"

    id: uuid.UUID | None = uuid_pk()
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE")
    url: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    events: list[str] = Field(sa_type=ARRAY(Text), sa_column_kwargs={"nullable": False})
    description: str | None = Field(default=None, sa_type=Text)
    # The signing secret, sealed by the vault (context webhook_endpoints:<id>:secret).
    secret_encrypted: bytes = Field(sa_type=LargeBinary, sa_column_kwargs={"nullable": False})
    key_id: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    enabled: bool = Field(
        default=True, sa_type=Boolean, sa_column_kwargs={"server_default": "true"}
    )
    # Why the endpoint stopped (a 410, a day of failures, or its owner), for people to read.
    disabled_reason: str | None = Field(default=None, sa_type=Text)
    disabled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # The first failed attempt since the last success: a day of failures disables the endpoint.
    failing_since: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime | None = created_at()
    updated_at: datetime | None = updated_at()


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: the outbox row a dispatcher claims until it is delivered."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(one_of("status", DeliveryStatus), name="status"),
        UniqueConstraint("endpoint_id", "event_id"),
        # The dispatchers' question, "what is due?", answered from a small index.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_created_at", "created_at"),
    )

    id: uuid.UUID | None = uuid_pk()
    endpoint_id: uuid.UUID = foreign_key("webhook_endpoints.id", ondelete="CASCADE", index=False)
    # The event's id, the same for every endpoint it goes to: the `webhook-id` header.
    event_id: uuid.UUID = Field(sa_column_kwargs={"nullable": False})
    event_type: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    # The body sent, byte for byte the same on every attempt: {"type", "timestamp", "data"}.
    payload: dict = Field(sa_type=JSONB, sa_column_kwargs={"nullable": False})
    status: str = Field(
        default=DeliveryStatus.PENDING.value,
        sa_type=Text,
        sa_column_kwargs={"server_default": DeliveryStatus.PENDING.value, "nullable": False},
    )
    attempts: int = Field(
        default=0, sa_type=Integer, sa_column_kwargs={"server_default": "0", "nullable": False}
    )
    next_attempt_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime | None = created_at()
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_error: str | None = Field(default=None, sa_type=Text)


class WebhookAttempt(SQLModel, table=True):
    """One POST of a delivery: what the receiver answered (or why nothing was), and how fast."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (
        # An endpoint's attempts newest first, by keyset.
        Index(
            "ix_webhook_attempts_endpoint_id_attempted_at_id",
            "endpoint_id",
            "attempted_at",
            "id",
        ),
    )

    id: uuid.UUID | None = uuid_pk()
    delivery_id: uuid.UUID = foreign_key("webhook_deliveries.id", ondelete="CASCADE")
    endpoint_id: uuid.UUID = foreign_key("webhook_endpoints.id", ondelete="CASCADE", index=False)
    attempt: int = Field(sa_type=Integer, sa_column_kwargs={"nullable": False})
    attempted_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    status_code: int | None = Field(default=None, sa_type=Integer)
    duration_ms: int = Field(sa_type=Integer, sa_column_kwargs={"nullable": False})
    # NULL when the receiver answered 2xx; else what went wrong (never a secret).
    error: str | None = Field(default=None, sa_type=Text)
