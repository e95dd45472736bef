"""simplefin budget

A source with a daily request limit (the SimpleFIN Bridge: about 24 a day per access URL) is
read within a budget per connection (dashtam_api/sync/budget.py): when each request of the last
24 hours was sent, and when the sync loop may read the connection next.

Revision ID: 5f1b2c3d4e6a
Revises: 5afc74529ad3
Create Date: 2026-12-08 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5f1b2c3d4e6a"
down_revision: str | None = "5afc74529ad3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "provider_connections",
        sa.Column(
            "budget_requests",
            postgresql.ARRAY(sa.DateTime(timezone=True)),
            server_default="{}",
            nullable=False,
        ),
    )
    op.add_column(
        "provider_connections",
        sa.Column("budget_next_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("provider_connections", "budget_next_at")
    op.drop_column("provider_connections", "budget_requests")
