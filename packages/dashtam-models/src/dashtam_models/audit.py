"""The append-only records: every token event (provider_audit_logs) and every security event of
a person's account (security_audit_logs: sign-ins and their failures, sessions ended, password
and second-factor changes, invitations).

Append-only is enforced by the database, not by convenience: a trigger refuses UPDATE and
DELETE for every role (created by the initial migration), and the application's role holds only
SELECT and INSERT on the table (infra/postgres/after_schema.sql).
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Text
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlmodel import Field, SQLModel

from dashtam_models.base import created_at, foreign_key, uuid_pk


class ProviderAuditLog(SQLModel, table=True):
    __tablename__ = "provider_audit_logs"

    id: uuid.UUID | None = uuid_pk()
    # SET NULL, not CASCADE: the audit trail outlives the user, provider and connection it names.
    user_id: uuid.UUID | None = foreign_key("users.id", ondelete="SET NULL", nullable=True)
    provider_id: uuid.UUID | None = foreign_key("providers.id", ondelete="SET NULL", nullable=True)
    connection_id: uuid.UUID | None = foreign_key(
        "provider_connections.id", ondelete="SET NULL", nullable=True
    )
    action: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False, "index": True})
    details: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": "{}", "nullable": False},
    )
    ip_address: str | None = Field(default=None, sa_type=INET)
    user_agent: str | None = Field(default=None, sa_type=Text)
    created_at: datetime | None = created_at()


class SecurityAuditLog(SQLModel, table=True):
    __tablename__ = "security_audit_logs"

    id: uuid.UUID | None = uuid_pk()
    # SET NULL, not CASCADE: the trail outlives the account (and a failed sign-in names none).
    user_id: uuid.UUID | None = foreign_key("users.id", ondelete="SET NULL", nullable=True)
    action: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False, "index": True})
    details: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": "{}", "nullable": False},
    )
    ip_address: str | None = Field(default=None, sa_type=INET)
    user_agent: str | None = Field(default=None, sa_type=Text)
    created_at: datetime | None = created_at()
