"""token refresh state, accounts, balances and positions

Connections learn to stay alive: consecutive refresh failures and the back-off moment
(refresh_not_before), and a sync lease with its outcome (synced_at, sync_error). An index on
provider_tokens.expires_at answers the refresher's "who expires soon?". Then what a sync reads:
accounts (per connection, the institution's opaque id, only the last four characters of the
number), balance snapshots and positions, money as NUMERIC without a fixed scale.

Revision ID: a49a22f8608e
Revises: 6647b3dea558
Create Date: 2026-11-26 12:49:57.686612
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a49a22f8608e"
down_revision: str | None = "6647b3dea558"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("account_type", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("number_last4", sa.Text(), nullable=True),
        sa.Column("currency", sa.Text(), server_default="USD", nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
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
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_accounts_currency")),
        sa.CheckConstraint(
            "number_last4 IS NULL OR char_length(number_last4) <= 4", name=op.f("ck_accounts_last4")
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["provider_connections.id"],
            name=op.f("accounts_connection_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("accounts_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("accounts_pkey")),
        sa.UniqueConstraint(
            "connection_id", "external_id", name=op.f("accounts_connection_id_external_id_key")
        ),
    )
    op.create_index(
        "ix_accounts_user_id_created_at_id",
        "accounts",
        ["user_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "balance_snapshots",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.Text(), server_default="USD", nullable=False),
        sa.Column("current", sa.Numeric(), nullable=False),
        sa.Column("available", sa.Numeric(), nullable=True),
        sa.Column("cash", sa.Numeric(), nullable=True),
        sa.Column("buying_power", sa.Numeric(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_balance_snapshots_currency")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("balance_snapshots_account_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("balance_snapshots_pkey")),
        sa.UniqueConstraint(
            "account_id", "as_of", name=op.f("balance_snapshots_account_id_as_of_key")
        ),
    )
    op.create_table(
        "positions",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("asset_type", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("price", sa.Numeric(), nullable=True),
        sa.Column("market_value", sa.Numeric(), nullable=False),
        sa.Column("cost_basis", sa.Numeric(), nullable=True),
        sa.Column("currency", sa.Text(), server_default="USD", nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_positions_currency")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("positions_account_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("positions_pkey")),
        sa.UniqueConstraint(
            "account_id",
            "asset_type",
            "symbol",
            name=op.f("positions_account_id_asset_type_symbol_key"),
        ),
    )
    op.add_column(
        "provider_connections",
        sa.Column("refresh_failures", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "provider_connections",
        sa.Column("refresh_not_before", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "provider_connections", sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("provider_connections", sa.Column("sync_error", sa.Text(), nullable=True))
    op.add_column(
        "provider_connections",
        sa.Column("sync_lease_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_provider_tokens_expires_at", "provider_tokens", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_provider_tokens_expires_at", table_name="provider_tokens")
    op.drop_column("provider_connections", "sync_lease_until")
    op.drop_column("provider_connections", "sync_error")
    op.drop_column("provider_connections", "synced_at")
    op.drop_column("provider_connections", "refresh_not_before")
    op.drop_column("provider_connections", "refresh_failures")
    op.drop_table("positions")
    op.drop_table("balance_snapshots")
    op.drop_index("ix_accounts_user_id_created_at_id", table_name="accounts")
    op.drop_table("accounts")
