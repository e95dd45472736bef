"""providers list index

A person's providers are listed page by page (WHERE user_id = ? ORDER BY created_at, id): one
index on (user_id, created_at, id) serves the page straight from the index, and, user_id leading,
the foreign key's lookups too, so it replaces the single-column ix_providers_user_id.

Revision ID: 6647b3dea558
Revises: 357914f14c89
Create Date: 2026-11-26 12:32:28.658651
"""

from collections.abc import Sequence

from alembic import op

revision: str = "6647b3dea558"
down_revision: str | None = "357914f14c89"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The new index first: the table is never without one on user_id.
    op.create_index(
        "ix_providers_user_id_created_at_id",
        "providers",
        ["user_id", "created_at", "id"],
        unique=False,
    )
    op.drop_index(op.f("ix_providers_user_id"), table_name="providers")


def downgrade() -> None:
    op.create_index(op.f("ix_providers_user_id"), "providers", ["user_id"], unique=False)
    op.drop_index("ix_providers_user_id_created_at_id", table_name="providers")
