"""The append-only record of every token event.

Append-only is enforced by the database, not by convenience: a trigger refuses UPDATE and
DELETE for every role, and the application's role holds only SELECT and INSERT on the table.
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


# Statements that make the table append-only, idempotent: init-db runs them on every start, so
# a database created before the rule existed gets it too. The one UPDATE the trigger lets
# through is the database's own ON DELETE SET NULL: the row stays, only the reference to a
# deleted user, provider or connection becomes NULL. One statement each: asyncpg prepares them.
APPEND_ONLY_STATEMENTS = (
    """
    CREATE OR REPLACE FUNCTION provider_audit_logs_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE'
           AND NEW.id = OLD.id AND NEW.action = OLD.action AND NEW.details = OLD.details
           AND NEW.ip_address IS NOT DISTINCT FROM OLD.ip_address
           AND NEW.user_agent IS NOT DISTINCT FROM OLD.user_agent
           AND NEW.created_at = OLD.created_at
           AND (NEW.user_id IS NULL OR NEW.user_id = OLD.user_id)
           AND (NEW.provider_id IS NULL OR NEW.provider_id = OLD.provider_id)
           AND (NEW.connection_id IS NULL OR NEW.connection_id = OLD.connection_id) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'provider_audit_logs is append-only (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    "CREATE OR REPLACE TRIGGER provider_audit_logs_append_only BEFORE UPDATE OR DELETE "
    "ON provider_audit_logs FOR EACH ROW EXECUTE FUNCTION provider_audit_logs_append_only()",
    "REVOKE DELETE, TRUNCATE ON provider_audit_logs FROM CURRENT_USER",
)
