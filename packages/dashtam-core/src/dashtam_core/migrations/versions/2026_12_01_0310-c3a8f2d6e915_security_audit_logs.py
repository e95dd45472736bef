"""security audit logs

The append-only record of a person's security events (sign-ins and their failures, sessions
ended, password changes...), append-only the way provider_audit_logs is: a trigger refuses
UPDATE and DELETE for every role but the ON DELETE SET NULL of a deleted user, and
infra/postgres/after_schema.sql leaves the application's role SELECT and INSERT only.

Revision ID: c3a8f2d6e915
Revises: b7e3d9a1c254
Create Date: 2026-12-01 03:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c3a8f2d6e915"
down_revision: str | None = "b7e3d9a1c254"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_FUNCTION = """
    CREATE OR REPLACE FUNCTION security_audit_logs_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE'
           AND NEW.id = OLD.id AND NEW.action = OLD.action AND NEW.details = OLD.details
           AND NEW.ip_address IS NOT DISTINCT FROM OLD.ip_address
           AND NEW.user_agent IS NOT DISTINCT FROM OLD.user_agent
           AND NEW.created_at = OLD.created_at
           AND (NEW.user_id IS NULL OR NEW.user_id = OLD.user_id) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'security_audit_logs is append-only (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$
    """
APPEND_ONLY_TRIGGER = (
    "CREATE TRIGGER security_audit_logs_append_only BEFORE UPDATE OR DELETE "
    "ON security_audit_logs FOR EACH ROW EXECUTE FUNCTION security_audit_logs_append_only()"
)


def upgrade() -> None:
    op.create_table(
        "security_audit_logs",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("ip_address", postgresql.INET(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("security_audit_logs_user_id_fkey"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("security_audit_logs_pkey")),
    )
    op.create_index(
        op.f("ix_security_audit_logs_action"), "security_audit_logs", ["action"], unique=False
    )
    op.create_index(
        op.f("ix_security_audit_logs_user_id"), "security_audit_logs", ["user_id"], unique=False
    )
    op.execute(APPEND_ONLY_FUNCTION)
    op.execute(APPEND_ONLY_TRIGGER)


def downgrade() -> None:
    op.drop_index(op.f("ix_security_audit_logs_user_id"), table_name="security_audit_logs")
    op.drop_index(op.f("ix_security_audit_logs_action"), table_name="security_audit_logs")
    op.drop_table("security_audit_logs")
    op.execute("DROP FUNCTION security_audit_logs_append_only()")
