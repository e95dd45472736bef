"""user sessions

A session per sign-in (the refresh-token family it already was), with where and from what it was
made, its newest refresh, and how it ended; refresh tokens point at it. Existing families become
sessions (open while one of their tokens is unrevoked); ended ones keep no reason (unknown).

Revision ID: b7e3d9a1c254
Revises: 4393df87efd6
Create Date: 2026-12-01 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7e3d9a1c254"
down_revision: str | None = "4393df87efd6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_sessions",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "end_reason IN ('logout', 'ended_by_user', 'password_changed', 'token_reuse')",
            name=op.f("ck_user_sessions_end_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("user_sessions_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("user_sessions_pkey")),
    )
    op.create_index(op.f("ix_user_sessions_user_id"), "user_sessions", ["user_id"], unique=False)
    op.execute(
        """
        INSERT INTO user_sessions (id, user_id, created_at, last_used_at, user_agent, ended_at)
        SELECT family_id, min(user_id::text)::uuid, min(created_at), max(created_at),
               (array_agg(user_agent ORDER BY created_at DESC))[1],
               CASE WHEN bool_and(revoked_at IS NOT NULL) THEN max(revoked_at) END
          FROM refresh_tokens
         GROUP BY family_id
        """
    )
    op.create_foreign_key(
        op.f("refresh_tokens_family_id_fkey"),
        "refresh_tokens",
        "user_sessions",
        ["family_id"],
        ["id"],
        ondelete="CASCADE",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("refresh_tokens_family_id_fkey"), "refresh_tokens", type_="foreignkey")
    op.drop_index(op.f("ix_user_sessions_user_id"), table_name="user_sessions")
    op.drop_table("user_sessions")
