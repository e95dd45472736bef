"""balance days

Each account's closing balance of each UTC day it has a snapshot (that day's newest), kept by
PostgreSQL: a statement trigger on balance_snapshots' inserts folds every statement's new rows
into balance_days, so a sync, a bulk load or a hand-written INSERT all keep it. Filled from the
snapshots already there. Net worth reads it (docs/performance.md).

Revision ID: e4b1d7a20c93
Revises: c7d2e91f4b60
Create Date: 2026-12-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e4b1d7a20c93"
down_revision: str | None = "c7d2e91f4b60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The newest snapshot of each account and day among ``source``, over what the day already holds
# (a later snapshot of the day wins; an earlier one, written late, changes nothing).
_FOLD = """
INSERT INTO balance_days AS d (account_id, day, as_of, currency, current)
SELECT DISTINCT ON (s.account_id, day) s.account_id, (s.as_of AT TIME ZONE 'UTC')::date AS day,
       s.as_of, s.currency, s.current
  FROM {source} s
 ORDER BY s.account_id, day, s.as_of DESC
ON CONFLICT (account_id, day) DO UPDATE
   SET as_of = excluded.as_of, currency = excluded.currency, current = excluded.current
 WHERE excluded.as_of >= d.as_of
"""


def upgrade() -> None:
    op.create_table(
        "balance_days",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("current", sa.Numeric(), nullable=False),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_balance_days_currency")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("balance_days_account_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "day", name=op.f("balance_days_pkey")),
    )
    op.execute(
        f"""
CREATE FUNCTION balance_days_fold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{_FOLD.format(source="new_snapshots")};
    RETURN NULL;
END
$$
"""
    )
    op.execute(
        """
CREATE TRIGGER balance_days_fold AFTER INSERT ON balance_snapshots
REFERENCING NEW TABLE AS new_snapshots
FOR EACH STATEMENT EXECUTE FUNCTION balance_days_fold()
"""
    )
    op.execute(_FOLD.format(source="balance_snapshots"))


def downgrade() -> None:
    op.execute("DROP TRIGGER balance_days_fold ON balance_snapshots")
    op.execute("DROP FUNCTION balance_days_fold()")
    op.drop_table("balance_days")
