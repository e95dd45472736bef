"""transactions

Every cash and investment activity of an account, one row per real transaction
(docs/transactions.md): unique per account and institution id, status pending / posted /
cancelled, the institution's dates, a signed NUMERIC amount, the normalized kind, and for trades
the instrument, quantity, price and fees. Indexes serve a person's or an account's transactions
newest first by keyset, and "was this pending already posted?".

Revision ID: c7d2e91f4b60
Revises: a49a22f8608e
Create Date: 2026-11-30 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c7d2e91f4b60"
down_revision: str | None = "a49a22f8608e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "status IN ('pending', 'posted', 'cancelled')"
KINDS = (
    "kind IN ('trade', 'dividend', 'interest', 'deposit', 'withdrawal', 'transfer', 'fee', "
    "'card', 'other')"
)


def upgrade() -> None:
    op.create_table(
        "transactions",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("pending_external_id", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transacted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settlement_date", sa.Date(), nullable=True),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("currency", sa.Text(), server_default="USD", nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("payee", sa.Text(), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("institution_type", sa.Text(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=True),
        sa.Column("asset_type", sa.Text(), nullable=True),
        sa.Column("quantity", sa.Numeric(), nullable=True),
        sa.Column("price", sa.Numeric(), nullable=True),
        sa.Column("fees", sa.Numeric(), nullable=True),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=True),
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
        sa.CheckConstraint(STATUSES, name=op.f("ck_transactions_status")),
        sa.CheckConstraint(KINDS, name=op.f("ck_transactions_kind")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_transactions_currency")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("transactions_account_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("transactions_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("transactions_pkey")),
        sa.UniqueConstraint(
            "account_id", "external_id", name=op.f("transactions_account_id_external_id_key")
        ),
    )
    op.create_index(
        "ix_transactions_user_id_occurred_at_id",
        "transactions",
        ["user_id", "occurred_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_transactions_account_id_occurred_at_id",
        "transactions",
        ["account_id", "occurred_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_transactions_account_id_pending_external_id",
        "transactions",
        ["account_id", "pending_external_id"],
        unique=False,
        postgresql_where=sa.text("pending_external_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_transactions_account_id_pending_external_id",
        table_name="transactions",
        postgresql_where=sa.text("pending_external_id IS NOT NULL"),
    )
    op.drop_index("ix_transactions_account_id_occurred_at_id", table_name="transactions")
    op.drop_index("ix_transactions_user_id_occurred_at_id", table_name="transactions")
    op.drop_table("transactions")
