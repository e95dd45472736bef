"""initial schema

The schema dashtam-init-db built with create_all before migrations existed, exactly: a database
made that way is adopted by comparing it with this revision (initial_schema.json holds what this
revision builds, and a test keeps the two equal), then stamped.

Revision ID: 357914f14c89
Revises:
Create Date: 2026-11-26 12:28:14.781885
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "357914f14c89"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The audit log is append-only: the trigger refuses UPDATE and DELETE for every role. The one
# UPDATE it lets through is the database's own ON DELETE SET NULL: the row stays, only the
# reference to a deleted user, provider or connection becomes NULL. (after_schema.sql then hands
# the table to a role nobody logs in as and leaves the application SELECT and INSERT.) Frozen
# here, like everything in a revision: a later change is a later revision.
APPEND_ONLY_FUNCTION = """
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
    """
APPEND_ONLY_TRIGGER = (
    "CREATE TRIGGER provider_audit_logs_append_only BEFORE UPDATE OR DELETE "
    "ON provider_audit_logs FOR EACH ROW EXECUTE FUNCTION provider_audit_logs_append_only()"
)


def upgrade() -> None:
    # citext: "Ann@Example.com" and "ann@example.com" are one account. A trusted extension:
    # the database's owner may create it without being a superuser.
    op.execute("CREATE EXTENSION IF NOT EXISTS citext")
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("email", postgresql.CITEXT(), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("users_pkey")),
        sa.UniqueConstraint("email", name=op.f("users_email_key")),
    )
    op.create_table(
        "providers",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider_key", sa.Text(), nullable=False),
        sa.Column("alias", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("providers_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("providers_pkey")),
        sa.UniqueConstraint("user_id", "alias", name="uq_providers_user_alias"),
    )
    op.create_index(op.f("ix_providers_user_id"), "providers", ["user_id"], unique=False)
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("refresh_tokens_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("refresh_tokens_pkey")),
        sa.UniqueConstraint("token_hash", name=op.f("refresh_tokens_token_hash_key")),
    )
    op.create_index(
        op.f("ix_refresh_tokens_family_id"), "refresh_tokens", ["family_id"], unique=False
    )
    op.create_index(op.f("ix_refresh_tokens_user_id"), "refresh_tokens", ["user_id"], unique=False)
    op.create_table(
        "provider_connections",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'expired', 'revoked', 'error')",
            name=op.f("ck_provider_connections_status"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("provider_connections_provider_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("provider_connections_pkey")),
    )
    op.create_index(
        op.f("ix_provider_connections_provider_id"),
        "provider_connections",
        ["provider_id"],
        unique=True,
    )
    op.create_table(
        "provider_audit_logs",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("provider_id", sa.Uuid(), nullable=True),
        sa.Column("connection_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column(
            "details", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
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
            ["connection_id"],
            ["provider_connections.id"],
            name=op.f("provider_audit_logs_connection_id_fkey"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("provider_audit_logs_provider_id_fkey"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("provider_audit_logs_user_id_fkey"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("provider_audit_logs_pkey")),
    )
    op.create_index(
        op.f("ix_provider_audit_logs_action"), "provider_audit_logs", ["action"], unique=False
    )
    op.create_index(
        op.f("ix_provider_audit_logs_connection_id"),
        "provider_audit_logs",
        ["connection_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_provider_audit_logs_provider_id"),
        "provider_audit_logs",
        ["provider_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_provider_audit_logs_user_id"), "provider_audit_logs", ["user_id"], unique=False
    )
    op.create_table(
        "provider_tokens",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("access_token_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("refresh_token_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("id_token_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("token_type", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refresh_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["provider_connections.id"],
            name=op.f("provider_tokens_connection_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("provider_tokens_pkey")),
    )
    op.create_index(
        op.f("ix_provider_tokens_connection_id"), "provider_tokens", ["connection_id"], unique=True
    )
    op.execute(APPEND_ONLY_FUNCTION)
    op.execute(APPEND_ONLY_TRIGGER)
    op.execute("REVOKE DELETE, TRUNCATE ON provider_audit_logs FROM CURRENT_USER")


def downgrade() -> None:
    op.drop_index(op.f("ix_provider_tokens_connection_id"), table_name="provider_tokens")
    op.drop_table("provider_tokens")
    op.drop_index(op.f("ix_provider_audit_logs_user_id"), table_name="provider_audit_logs")
    op.drop_index(op.f("ix_provider_audit_logs_provider_id"), table_name="provider_audit_logs")
    op.drop_index(op.f("ix_provider_audit_logs_connection_id"), table_name="provider_audit_logs")
    op.drop_index(op.f("ix_provider_audit_logs_action"), table_name="provider_audit_logs")
    op.drop_table("provider_audit_logs")
    op.execute("DROP FUNCTION provider_audit_logs_append_only()")
    op.drop_index(op.f("ix_provider_connections_provider_id"), table_name="provider_connections")
    op.drop_table("provider_connections")
    op.drop_index(op.f("ix_refresh_tokens_user_id"), table_name="refresh_tokens")
    op.drop_index(op.f("ix_refresh_tokens_family_id"), table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_index(op.f("ix_providers_user_id"), table_name="providers")
    op.drop_table("providers")
    op.drop_table("users")
    op.execute("DROP EXTENSION IF EXISTS citext")
