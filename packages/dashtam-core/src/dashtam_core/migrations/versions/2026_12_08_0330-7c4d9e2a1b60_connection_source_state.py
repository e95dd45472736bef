"""connection source state

What a source keeps for itself between two reads of a connection, none of it secret (Plaid's
/transactions/sync cursor and the item it belongs to): JSONB, written by the sync in the same
transaction as the data it belongs to (a cursor is never ahead of what was written). NULL: the
source keeps nothing (every source before Plaid). Generic on purpose: any source may keep its
own keys in it. A Plaid webhook names its item: the expression index finds the connection.

Revision ID: 7c4d9e2a1b60
Revises: 5f1b2c3d4e6a
Create Date: 2026-12-08 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "7c4d9e2a1b60"
down_revision: str | None = "5f1b2c3d4e6a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "provider_connections",
        sa.Column("source_state", postgresql.JSONB(), nullable=True),
    )
    op.create_index(
        "ix_provider_connections_source_item",
        "provider_connections",
        [sa.text("(source_state ->> 'item_id')")],
        postgresql_where=sa.text("source_state ? 'item_id'"),
    )


def downgrade() -> None:
    op.drop_index("ix_provider_connections_source_item", table_name="provider_connections")
    op.drop_column("provider_connections", "source_state")
