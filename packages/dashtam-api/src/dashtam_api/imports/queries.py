"""Every statement of imports: the import records, the duplicate probes, the rows written."""

import uuid
from datetime import date, datetime

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.sync.queries import COLUMNS, fill_item_json
from dashtam_api.transactions.queries import item_lateral
from dashtam_models import BalanceSnapshot, Import, ProviderConnection

__all__ = ["fill_item_json"]

# Which of these ids the account already holds: each row's id and status.
HELD_IDS = text(
    """
    SELECT external_id, id, status FROM transactions
     WHERE account_id = :account_id AND external_id = ANY(CAST(:ids AS text[]))
    """
)

# Held pendings completed by the file's posted rows of the same id: the row takes what the file
# says of it (its JSON written again by FILL).
_COMPARED = [c for c, _ in COLUMNS if c not in ("external_id", "pending_external_id")]
POST_PENDINGS = text(
    f"""
    UPDATE transactions t SET
      {", ".join(f"{c} = u.{c}" for c in _COMPARED)}, item_json = NULL, updated_at = now()
      FROM unnest({", ".join(f"CAST(:{c} AS {kind}[])" for c, kind in COLUMNS)})
           AS u({", ".join(c for c, _ in COLUMNS)})
     WHERE t.account_id = :account_id AND t.external_id = u.external_id
       AND t.status = 'pending'
    RETURNING t.id
    """  # noqa: S608 (built from the constant COLUMNS)
)

# Rows already in the account that may be the same transaction as a file's row ``i``: the same
# amount, within ``days`` of its (UTC) day, not cancelled, and not added by this very import (two
# identical charges of one file are two). The description is compared by the importer.
SAME_CONTENT = text(
    """
    SELECT c.i, t.id, t.description
      FROM unnest(CAST(:i AS int[]), CAST(:amount AS numeric[]), CAST(:day AS date[]))
           AS c(i, amount, day)
      JOIN transactions t
        ON t.account_id = :account_id AND t.amount = c.amount
       AND t.occurred_at >= ((c.day - CAST(:days AS int))::timestamp AT TIME ZONE 'UTC')
       AND t.occurred_at < ((c.day + CAST(:days AS int) + 1)::timestamp AT TIME ZONE 'UTC')
       AND t.status <> 'cancelled'
       AND t.import_id IS DISTINCT FROM CAST(:import_id AS uuid)
     ORDER BY c.i, t.occurred_at, t.id
    """
)

# Built from the constant COLUMNS, never from input: the sync's columns and the import's id,
# each row with its JSON as the API serves it. A row of the same id that appeared meanwhile is
# left as it is (ON CONFLICT DO NOTHING): the file never overwrites what is held.
_NAMES = ", ".join(c for c, _ in COLUMNS)
INSERT = text(
    f"""
    INSERT INTO transactions AS t (id, user_id, account_id, import_id, {_NAMES}, item_json)
    SELECT s.*, row_to_json(item)::text
      FROM (SELECT gen_random_uuid() AS id, CAST(:user_id AS uuid) AS user_id,
                   CAST(:account_id AS uuid) AS account_id, CAST(:import_id AS uuid) AS import_id,
                   u.*
              FROM unnest({", ".join(f"CAST(:{c} AS {kind}[])" for c, kind in COLUMNS)})
                   AS u({_NAMES})) s
      {item_lateral("s")}
    ON CONFLICT (account_id, external_id) DO NOTHING
    RETURNING external_id
    """  # noqa: S608
)


async def held_ids(
    session: AsyncSession, *, account_id: uuid.UUID, ids: list[str]
) -> dict[str, tuple[uuid.UUID, str]]:
    """The account's rows of these ids: id -> (row id, status)."""
    rows = await session.execute(HELD_IDS, {"account_id": account_id, "ids": ids})
    return {external_id: (row_id, status) for external_id, row_id, status in rows}


async def post_pendings(
    session: AsyncSession, *, account_id: uuid.UUID, params: dict[str, list]
) -> int:
    """POST_PENDINGS for these rows (a list per column of COLUMNS); how many it completed."""
    done = await session.execute(POST_PENDINGS, {"account_id": account_id, **params})
    return len(done.all())


async def same_content(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    import_id: uuid.UUID,
    candidates: list[tuple[int, object, date]],
    days: int,
) -> list[tuple[int, uuid.UUID, str]]:
    """(file row index, held row id, its description) for every held row that may be the same
    transaction as a candidate (index, amount, day)."""
    if not candidates:
        return []
    rows = await session.execute(
        SAME_CONTENT,
        {
            "account_id": account_id,
            "import_id": import_id,
            "i": [i for i, _, _ in candidates],
            "amount": [a for _, a, _ in candidates],
            "day": [d for _, _, d in candidates],
            "days": days,
        },
    )
    return [tuple(r) for r in rows]


async def insert_rows(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    import_id: uuid.UUID,
    params: dict[str, list],
) -> int:
    """One batch of new rows (``params``: a list per column of COLUMNS); how many were written."""
    written = await session.execute(
        INSERT, {"user_id": user_id, "account_id": account_id, "import_id": import_id, **params}
    )
    return len(written.all())


async def add_balance(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    as_of: datetime,
    currency: str,
    current,
    available,
    cash,
    buying_power,
) -> None:
    """A balance the file states, unless the account already has one at that moment."""
    await session.execute(
        insert(BalanceSnapshot)
        .values(
            account_id=account_id,
            as_of=as_of,
            currency=currency,
            current=current,
            available=available,
            cash=cash,
            buying_power=buying_power,
        )
        .on_conflict_do_nothing(index_elements=["account_id", "as_of"])
    )


async def import_of(
    session: AsyncSession, *, user_id: uuid.UUID, import_id: uuid.UUID
) -> Import | None:
    return await session.scalar(
        select(Import).where(Import.id == import_id, Import.user_id == user_id)
    )


async def imports_page(
    session: AsyncSession, *, user_id: uuid.UUID, account_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[Import], int]:
    """The account's imports newest first, and how many it has."""
    where = (Import.account_id == account_id, Import.user_id == user_id)
    items = await session.scalars(
        select(Import)
        .where(*where)
        .order_by(Import.created_at.desc(), Import.id.desc())
        .limit(limit)
        .offset(offset)
    )
    total = await session.scalar(select(func.count()).select_from(Import).where(*where))
    return list(items.all()), total


async def lock_connection(session: AsyncSession, *, connection_id: uuid.UUID) -> None:
    """Hold the account's connection row until the import commits: a sync writes under the same
    lock (sync/queries.locked_connection), so the two never add the same transaction at once,
    and neither do two imports into its accounts."""
    await session.execute(
        select(ProviderConnection.id)
        .where(ProviderConnection.id == connection_id)
        .with_for_update()
    )
