"""sync runs

Every sync of a connection on record: its trigger (schedule, manual, connect), when it started
and finished, how it ended (running, succeeded, failed) with the counts it wrote or the failure's
kind and detail. Indexed for a connection's runs newest first and for pruning by age.

Revision ID: f2a8c5e1d047
Revises: e4b1d7a20c93
Create Date: 2026-12-01 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f2a8c5e1d047"
down_revision: str | None = "e4b1d7a20c93"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accounts", sa.Integer(), nullable=True),
        sa.Column("positions", sa.Integer(), nullable=True),
        sa.Column("transactions_added", sa.Integer(), nullable=True),
        sa.Column("transactions_modified", sa.Integer(), nullable=True),
        sa.Column("transactions_removed", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "trigger IN ('schedule', 'manual', 'connect')", name=op.f("ck_sync_runs_trigger")
        ),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed')", name=op.f("ck_sync_runs_status")
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["provider_connections.id"],
            name=op.f("sync_runs_connection_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("sync_runs_pkey")),
    )
    op.create_index(
        "ix_sync_runs_connection_id_started_at_id",
        "sync_runs",
        ["connection_id", "started_at", "id"],
        unique=False,
    )
    op.create_index("ix_sync_runs_started_at", "sync_runs", ["started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sync_runs_started_at", table_name="sync_runs")
    op.drop_index("ix_sync_runs_connection_id_started_at_id", table_name="sync_runs")
    op.drop_table("sync_runs")
