"""invitations and administrators

users.is_admin, and single-use invitations to register (REGISTRATION=invite): only the token's
hash is kept.

Revision ID: 260c43cac6a5
Revises: c3a8f2d6e915
Create Date: 2026-12-01 03:01:19.522931
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "260c43cac6a5"
down_revision: str | None = "c3a8f2d6e915"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "invitations",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by", sa.Uuid(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("invitations_created_by_fkey"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["used_by"], ["users.id"], name=op.f("invitations_used_by_fkey"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("invitations_pkey")),
        sa.UniqueConstraint("token_hash", name=op.f("invitations_token_hash_key")),
    )
    op.create_index(op.f("ix_invitations_created_by"), "invitations", ["created_by"], unique=False)
    op.create_index(op.f("ix_invitations_used_by"), "invitations", ["used_by"], unique=False)
    op.add_column(
        "users", sa.Column("is_admin", sa.Boolean(), server_default="false", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("users", "is_admin")
    op.drop_index(op.f("ix_invitations_used_by"), table_name="invitations")
    op.drop_index(op.f("ix_invitations_created_by"), table_name="invitations")
    op.drop_table("invitations")
