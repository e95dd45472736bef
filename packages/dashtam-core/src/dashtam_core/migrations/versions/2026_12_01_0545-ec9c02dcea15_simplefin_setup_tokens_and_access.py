"""simplefin setup tokens and access

Dashtam as a SimpleFIN server: one-time setup tokens and the read access apps claim with them
(SHA-256 hashes of the token and of the access password only).

Revision ID: ec9c02dcea15
Revises: 977d9c69b614
Create Date: 2026-12-01 05:45:53.248255
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ec9c02dcea15"
down_revision: str | None = "977d9c69b614"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "simplefin_setup_tokens",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), server_default="", nullable=False),
        sa.Column("account_ids", sa.ARRAY(sa.Uuid()), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("simplefin_setup_tokens_user_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("simplefin_setup_tokens_pkey")),
        sa.UniqueConstraint("token_hash", name=op.f("simplefin_setup_tokens_token_hash_key")),
    )
    op.create_index(
        op.f("ix_simplefin_setup_tokens_user_id"),
        "simplefin_setup_tokens",
        ["user_id"],
        unique=False,
    )
    op.create_table(
        "simplefin_access",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("setup_token_id", sa.Uuid(), nullable=True),
        sa.Column("label", sa.Text(), server_default="", nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("account_ids", sa.ARRAY(sa.Uuid()), nullable=True),
        sa.Column("claimed_ip", sa.Text(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_ip", sa.Text(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["setup_token_id"],
            ["simplefin_setup_tokens.id"],
            name=op.f("simplefin_access_setup_token_id_fkey"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("simplefin_access_user_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("simplefin_access_pkey")),
        sa.UniqueConstraint("username", name=op.f("simplefin_access_username_key")),
    )
    op.create_index(
        op.f("ix_simplefin_access_user_id"), "simplefin_access", ["user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_simplefin_access_user_id"), table_name="simplefin_access")
    op.drop_table("simplefin_access")
    op.drop_index(op.f("ix_simplefin_setup_tokens_user_id"), table_name="simplefin_setup_tokens")
    op.drop_table("simplefin_setup_tokens")
