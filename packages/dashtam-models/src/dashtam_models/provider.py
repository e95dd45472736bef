"""A person's financial institutions, their OAuth connection and its (encrypted) tokens."""

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    ARRAY,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from dashtam_models.base import created_at, foreign_key, updated_at, uuid_pk


class ConnectionStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"
    ERROR = "error"


_STATUSES = ", ".join(f"'{s.value}'" for s in ConnectionStatus)


class Provider(SQLModel, table=True):
    """One institution a user added, under an alias of their choosing."""

    __tablename__ = "providers"
    __table_args__ = (
        UniqueConstraint("user_id", "alias", name="uq_providers_user_alias"),
        # A person's providers page by page (WHERE user_id ORDER BY created_at, id) straight from
        # the index; user_id leads, so it also serves the foreign key's lookups.
        Index("ix_providers_user_id_created_at_id", "user_id", "created_at", "id"),
    )

    id: uuid.UUID | None = uuid_pk()
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE", index=False)
    # Which kind of institution: "sandbox", "schwab" or a configured generic OAuth2 key.
    provider_key: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    alias: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    created_at: datetime | None = created_at()
    updated_at: datetime | None = updated_at()


class ProviderConnection(SQLModel, table=True):
    """The OAuth connection state of one provider (exactly one per provider)."""

    __tablename__ = "provider_connections"
    __table_args__ = (
        # Named "ck_provider_connections_status" by the naming convention (dashtam_models.base).
        CheckConstraint(f"status IN ({_STATUSES})", name="status"),
        # A Plaid webhook names its item: which connection holds it.
        Index(
            "ix_provider_connections_source_item",
            text("(source_state ->> 'item_id')"),
            postgresql_where=text("source_state ? 'item_id'"),
        ),
    )

    id: uuid.UUID | None = uuid_pk()
    provider_id: uuid.UUID = foreign_key("providers.id", ondelete="CASCADE", unique=True)
    status: str = Field(
        default=ConnectionStatus.PENDING.value,
        sa_type=Text,
        sa_column_kwargs={"server_default": ConnectionStatus.PENDING.value, "nullable": False},
    )
    scope: str | None = Field(default=None, sa_type=Text)
    error_message: str | None = Field(default=None, sa_type=Text)
    connected_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_refreshed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Consecutive failed refreshes; at REFRESH_MAX_FAILURES the connection turns "error".
    refresh_failures: int = Field(
        default=0, sa_type=Integer, sa_column_kwargs={"server_default": "0", "nullable": False}
    )
    # After a failure, no refresh (background or on use) before this moment: the back-off.
    refresh_not_before: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    synced_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    sync_error: str | None = Field(default=None, sa_type=Text)
    # A sync in progress holds this lease; a crashed holder's lease simply lapses.
    sync_lease_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # The refresh-token deadline a connection.reauth_required notice was sent for: one notice
    # per authorization period (a reconnection brings a new deadline, and a new notice).
    reauth_notice_for: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # The request budget of a source with a daily limit (sync/budget.py): when each request of
    # the last 24 hours was sent, and when the sync loop may read next.
    budget_requests: list[datetime] = Field(
        default_factory=list,
        sa_type=ARRAY(DateTime(timezone=True)),
        sa_column_kwargs={"server_default": "{}", "nullable": False},
    )
    budget_next_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # What the source keeps for itself between reads (Plaid's cursor and item), none of it
    # secret; written by the sync with the data it belongs to (NULL: nothing kept).
    source_state: dict | None = Field(default=None, sa_type=JSONB)
    created_at: datetime | None = created_at()
    updated_at: datetime | None = updated_at()


class ProviderToken(SQLModel, table=True):
    """A connection's tokens, only ever stored as ciphertext (one row per connection)."""

    __tablename__ = "provider_tokens"
    __table_args__ = (
        # The refresher's question, "whose access token expires soon?", answered from the index.
        Index("ix_provider_tokens_expires_at", "expires_at"),
    )

    id: uuid.UUID | None = uuid_pk()
    connection_id: uuid.UUID = foreign_key(
        "provider_connections.id", ondelete="CASCADE", unique=True
    )
    access_token_encrypted: bytes = Field(sa_type=LargeBinary, sa_column_kwargs={"nullable": False})
    refresh_token_encrypted: bytes | None = Field(default=None, sa_type=LargeBinary)
    id_token_encrypted: bytes | None = Field(default=None, sa_type=LargeBinary)
    # Which vault key encrypted these columns, so old keys can be rotated out.
    key_id: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    token_type: str = Field(default="Bearer", sa_type=Text)
    scope: str | None = Field(default=None, sa_type=Text)
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    refresh_expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime | None = created_at()
    updated_at: datetime | None = updated_at()
