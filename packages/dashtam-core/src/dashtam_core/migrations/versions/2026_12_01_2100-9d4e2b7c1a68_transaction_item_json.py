"""transaction item json

Each transaction keeps its JSON as the API serves it (``item_json``), so that a page of
transactions is read rather than composed by PostgreSQL for every request (~460 us of a page of
50). Written by the sync with the row; a trigger sets it NULL whenever an UPDATE changes a row
without writing it, and the reads compose the JSON of a row that has none; a partial index finds
those rows for the sync to write again. Existing rows are written here (a full rewrite of the
table: on a million rows, minutes).

Revision ID: 9d4e2b7c1a68
Revises: 4306bf15d2a7
Create Date: 2026-12-01 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9d4e2b7c1a68"
down_revision: str | None = "4306bf15d2a7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rfc3339(column: str) -> str:
    return f"overlay(({column} AT TIME ZONE 'UTC')::text placing 'T' from 11) || 'Z'"


# The API's item as of this revision, frozen here (a migration never follows the code):
# tests/unit/test_item_json.py holds dashtam_api.transactions.queries.item_fields to it, so a
# change to the item comes with a migration that writes every row's JSON again.
ITEM_FIELDS = {
    "id": "t.id",
    "account_id": "t.account_id",
    "status": "t.status",
    "occurred_at": _rfc3339("t.occurred_at"),
    "posted_at": _rfc3339("t.posted_at"),
    "transacted_at": _rfc3339("t.transacted_at"),
    "settlement_date": "t.settlement_date",
    "amount": "t.amount::text",
    "currency": "t.currency",
    "description": "t.description",
    "payee": "t.payee",
    "memo": "t.memo",
    "kind": "t.kind",
    "institution_type": "t.institution_type",
    "symbol": "t.symbol",
    "asset_type": "t.asset_type",
    "quantity": "t.quantity::text",
    "price": "t.price::text",
    "fees": "t.fees::text",
    "pending_external_id": "t.pending_external_id",
}


def upgrade() -> None:
    op.add_column("transactions", sa.Column("item_json", sa.Text(), nullable=True))
    columns = ", ".join(f"{sql} AS {name}" for name, sql in ITEM_FIELDS.items())
    # ISO text for the timestamps, whatever the server's or the session's default.
    op.execute("SET LOCAL DateStyle = 'ISO'")
    op.execute(
        f"UPDATE transactions t SET item_json ="  # noqa: S608 (fixed fragments)
        f" (SELECT row_to_json(item)::text FROM (SELECT {columns}) item)"
    )
    op.create_index(
        "ix_transactions_account_id_item_json_missing",
        "transactions",
        ["account_id"],
        postgresql_where=sa.text("item_json IS NULL"),
    )
    # An UPDATE that does not write item_json leaves the JSON of the row it was: NULL it. The
    # WHEN is evaluated without calling the function, so the sync's writes (which write
    # item_json) pay nothing for it.
    op.execute(
        """
        CREATE FUNCTION transactions_item_json_stale() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.item_json := NULL;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER transactions_item_json_stale BEFORE UPDATE ON transactions
           FOR EACH ROW
           WHEN (OLD.item_json IS NOT NULL AND NEW.item_json IS NOT DISTINCT FROM OLD.item_json)
           EXECUTE FUNCTION transactions_item_json_stale()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER transactions_item_json_stale ON transactions")
    op.execute("DROP FUNCTION transactions_item_json_stale()")
    op.drop_index("ix_transactions_account_id_item_json_missing", table_name="transactions")
    op.drop_column("transactions", "item_json")
