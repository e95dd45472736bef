"""The statements of a sync (sync/service.py), of its reconciliation of transactions
(sync/transactions.py) and of its runs on record (sync/runs.py)."""

import uuid
from datetime import datetime

import asyncpg
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.ownership_queries import ACTIVE_PERSON, PERSON, rows_of_active_person
from dashtam_api.sources.shapes import AccountData, merged
from dashtam_api.transactions.queries import item_lateral
from dashtam_core.database import Reader
from dashtam_models import (
    Account,
    ConnectionStatus,
    Position,
    Provider,
    ProviderConnection,
    SyncRun,
    SyncStatus,
)

# --- the connections due, the claim, the token, the windows (sync/service.py) ---------------

DUE_FOR_SYNC = text(
    """
    SELECT c.id FROM provider_connections c
      JOIN providers p ON p.id = c.provider_id
     WHERE c.status = 'active'
       AND p.provider_key = ANY(:keys)
       AND (c.synced_at IS NULL OR c.synced_at <= :stale_before)
       AND (c.sync_lease_until IS NULL OR c.sync_lease_until <= now())
       AND (c.budget_next_at IS NULL OR c.budget_next_at <= :now)
     ORDER BY c.synced_at NULLS FIRST
     LIMIT :limit
    """
)


async def connection_to_claim(
    session: AsyncSession, *, connection_id: uuid.UUID, skip_locked: bool
) -> tuple[ProviderConnection, Provider] | None:
    """The connection and its provider, the connection's row locked (``skip_locked``: None when
    someone else holds it, as when it is not there)."""
    row = (
        await session.execute(
            select(ProviderConnection, Provider)
            .join(Provider, Provider.id == ProviderConnection.provider_id)
            .where(ProviderConnection.id == connection_id)
            .with_for_update(of=ProviderConnection, skip_locked=skip_locked)
            .execution_options(populate_existing=True)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def abandon_runs(
    session: AsyncSession, *, connection_id: uuid.UUID, now: datetime, detail: str
) -> None:
    """End the connection's runs still ``running`` as failed (``abandoned``)."""
    await session.execute(
        update(SyncRun)
        .where(SyncRun.connection_id == connection_id, SyncRun.status == SyncStatus.RUNNING)
        .values(status=SyncStatus.FAILED, finished_at=now, error="abandoned", error_detail=detail)
    )


async def start_run(
    session: AsyncSession, *, connection_id: uuid.UUID, trigger: str, now: datetime
) -> uuid.UUID:
    """A new ``running`` run of the connection; its id."""
    return await session.scalar(
        insert(SyncRun)
        .values(
            connection_id=connection_id, trigger=trigger, status=SyncStatus.RUNNING, started_at=now
        )
        .returning(SyncRun.id)
    )


async def end_run(
    session: AsyncSession, *, run_id: uuid.UUID, status: SyncStatus, finished_at: datetime, **values
) -> None:
    """End the run if it is still running."""
    await session.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.status == SyncStatus.RUNNING)
        .values(status=status, finished_at=finished_at, **values)
    )


# Every account of the connection, those without a transaction too (a quiet savings account,
# one with holdings only): one read before is not read as if it never was.
WINDOWS = text(
    """
    SELECT a.external_id,
           max(t.posted_at) FILTER (WHERE t.status = 'posted') AS newest_posted,
           min(t.occurred_at) FILTER (WHERE t.status = 'pending') AS oldest_pending,
           a.synced_at
      FROM accounts a LEFT JOIN transactions t ON t.account_id = a.id
     WHERE a.connection_id = :connection_id
     GROUP BY a.id
    """
)


async def transaction_marks(session: AsyncSession, *, connection_id: uuid.UUID) -> list:
    """Per account of the connection (by external id): its newest posted transaction's
    posted_at, its oldest pending one's occurred_at (NULL: none) and when it was last
    synced."""
    return list(await session.execute(WINDOWS, {"connection_id": connection_id}))


async def source_state(session: AsyncSession, *, connection_id: uuid.UUID) -> dict | None:
    """What the connection's source kept for its next read (Reading.state)."""
    return await session.scalar(
        select(ProviderConnection.source_state).where(ProviderConnection.id == connection_id)
    )


async def give_back_claim(
    session: AsyncSession,
    *,
    connection_id: uuid.UUID,
    lease: datetime | None,
    until: datetime | None,
    error: str,
) -> None:
    """The claim ``lease`` given back (if still that one): held ``until`` (None: free now), the
    error kept on the connection."""
    await session.execute(
        update(ProviderConnection)
        .where(ProviderConnection.id == connection_id, ProviderConnection.sync_lease_until == lease)
        .values(sync_lease_until=until, sync_error=error)
    )


async def needs_person(
    session: AsyncSession, *, connection_id: uuid.UUID, error: str, ended: bool = False
) -> None:
    """The connection turns ``error`` with the source's reason (``expired`` when its
    authorization ran out): only its person can mend it."""
    status = ConnectionStatus.EXPIRED if ended else ConnectionStatus.ERROR
    await session.execute(
        update(ProviderConnection)
        .where(ProviderConnection.id == connection_id)
        .values(status=status.value, error_message=error)
    )


# --- the daily request budget (sync/budget.py) -------------------------------------------------


async def budget_requests(session: AsyncSession, *, connection_id: uuid.UUID) -> list[datetime]:
    """When the connection's requests of the budget were sent (its row locked)."""
    found = await session.scalar(
        select(ProviderConnection.budget_requests)
        .where(ProviderConnection.id == connection_id)
        .with_for_update()
    )
    return list(found or ())


async def set_budget(
    session: AsyncSession,
    *,
    connection_id: uuid.UUID,
    requests: list[datetime],
    next_at: datetime | None,
) -> None:
    """The connection's requests of the budget and when the sync loop may read it next."""
    await session.execute(
        update(ProviderConnection)
        .where(ProviderConnection.id == connection_id)
        .values(budget_requests=requests, budget_next_at=next_at)
        .execution_options(synchronize_session=False)
    )


async def hold_budget(session: AsyncSession, *, connection_id: uuid.UUID, until: datetime) -> None:
    """The sync loop claims the connection no sooner than ``until``."""
    await session.execute(
        update(ProviderConnection)
        .where(ProviderConnection.id == connection_id)
        .values(budget_next_at=func.greatest(ProviderConnection.budget_next_at, until))
        .execution_options(synchronize_session=False)
    )


# --- the write (sync/service.py) --------------------------------------------------------------


async def locked_connection(
    session: AsyncSession, *, connection_id: uuid.UUID
) -> ProviderConnection | None:
    """The connection read anew, its row locked."""
    return await session.scalar(
        select(ProviderConnection)
        .where(ProviderConnection.id == connection_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def upsert_account(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    connection_id: uuid.UUID,
    data: AccountData,
    as_of: datetime,
) -> uuid.UUID:
    """The institution's account written by its external id, open again; its id."""
    return await session.scalar(
        insert(Account)
        .values(
            user_id=user_id,
            connection_id=connection_id,
            external_id=data.external_id,
            account_type=data.account_type,
            name=data.name,
            number_last4=data.number_last4,
            currency=data.currency,
            synced_at=as_of,
        )
        .on_conflict_do_update(
            constraint="accounts_connection_id_external_id_key",
            set_={
                "account_type": data.account_type,
                "name": data.name,
                "number_last4": data.number_last4,
                "currency": data.currency,
                "synced_at": as_of,
                "closed_at": None,
                "updated_at": as_of,
            },
        )
        .returning(Account.id)
    )


async def replace_positions(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    holdings,
    currency: str,
    as_of: datetime,
) -> int:
    """The account's positions become these holdings (merged: one row per asset type and
    symbol), as a sync reads them or a file lists them; how many rows that is."""
    await session.execute(delete(Position).where(Position.account_id == account_id))
    rows = [
        Position(
            account_id=account_id,
            symbol=h.symbol,
            description=h.description,
            asset_type=h.asset_type,
            quantity=h.quantity,
            price=h.price,
            market_value=h.market_value,
            cost_basis=h.cost_basis,
            currency=currency,
            as_of=as_of,
        )
        for h in merged(holdings)
    ]
    session.add_all(rows)
    return len(rows)


async def close_unlisted_accounts(
    session: AsyncSession, *, connection_id: uuid.UUID, seen: list[str], as_of: datetime
) -> None:
    """The connection's open accounts whose external id is not in ``seen`` closed at ``as_of``."""
    await session.execute(
        update(Account)
        .where(
            Account.connection_id == connection_id,
            Account.external_id.not_in(seen) if seen else True,
            Account.closed_at.is_(None),
        )
        .values(closed_at=as_of, updated_at=as_of)
    )


# --- the reconciliation of an account's transactions (sync/transactions.py) -----------------

# (column, PostgreSQL array type) of what the upsert takes from each listed transaction.
COLUMNS = (
    ("external_id", "text"),
    ("pending_external_id", "text"),
    ("status", "text"),
    ("occurred_at", "timestamptz"),
    ("posted_at", "timestamptz"),
    ("transacted_at", "timestamptz"),
    ("settlement_date", "date"),
    ("amount", "numeric"),
    ("currency", "text"),
    ("description", "text"),
    ("payee", "text"),
    ("memo", "text"),
    ("institution_type", "text"),
    ("kind", "text"),
    ("symbol", "text"),
    ("asset_type", "text"),
    ("quantity", "numeric"),
    ("price", "numeric"),
    ("fees", "numeric"),
    ("fingerprint", "bytea"),
)
# What makes a listed transaction differ from its row (pending_external_id is only ever added).
COMPARED = [c for c, _ in COLUMNS if c not in ("external_id", "pending_external_id")]

# Built from the constant COLUMNS above, never from input. Each new row is written with its
# JSON as the API serves it (transactions.item_json: a page reads it as it is; the item is
# transactions/queries.py's), its id drawn here so that the JSON can hold it; a row changed by
# the upsert loses its JSON, which FILL writes again once the rows are settled.
_NAMES = ", ".join(c for c, _ in COLUMNS)
UPSERT = text(
    f"""
    INSERT INTO transactions AS t (id, user_id, account_id, {_NAMES}, import_id, item_json)
    SELECT s.*, row_to_json(item)::text
      FROM (SELECT gen_random_uuid() AS id, CAST(:user_id AS uuid) AS user_id,
                   CAST(:account_id AS uuid) AS account_id, u.*, NULL::uuid AS import_id
              FROM unnest({", ".join(f"CAST(:{c} AS {kind}[])" for c, kind in COLUMNS)})
                   AS u({_NAMES})) s
      {item_lateral("s")}
    ON CONFLICT (account_id, external_id) DO UPDATE SET
      pending_external_id = COALESCE(EXCLUDED.pending_external_id, t.pending_external_id),
      {", ".join(f"{c} = EXCLUDED.{c}" for c in COMPARED)},
      item_json = NULL,
      updated_at = now()
    WHERE ({", ".join(f"t.{c}" for c in COMPARED)})
          IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in COMPARED)})
       OR (EXCLUDED.pending_external_id IS NOT NULL
           AND t.pending_external_id IS DISTINCT FROM EXCLUDED.pending_external_id)
    RETURNING (xmax = 0) AS inserted
    """  # noqa: S608
)
# The JSON of the account's rows that have none: changed by the upsert, completed or cancelled
# above, or by anyone else (a trigger clears item_json when an UPDATE does not write it). A
# partial index finds them.
FILL = text(
    f"""
    UPDATE transactions t
       SET item_json = (SELECT row_to_json(item)::text FROM (SELECT 1) one {item_lateral("t")})
     WHERE t.account_id = :account_id AND t.item_json IS NULL
    """  # noqa: S608
)

PENDINGS = text(
    """
    SELECT id, external_id, amount, description, occurred_at FROM transactions
     WHERE account_id = :account_id AND status = 'pending'
     ORDER BY occurred_at, id
    """
)
ALREADY_POSTED = text(
    """
    SELECT pending_external_id FROM transactions
     WHERE account_id = :account_id AND pending_external_id = ANY(CAST(:ids AS text[]))
    """
)
EXISTING = text(
    """
    SELECT external_id FROM transactions
     WHERE account_id = :account_id AND external_id = ANY(CAST(:ids AS text[]))
    """
)
FINGERPRINTS_SQL = """
    SELECT external_id, fingerprint FROM transactions
     WHERE account_id = $1 AND occurred_at >= $2 AND fingerprint IS NOT NULL
"""
# A row changed here no longer holds what its fingerprint describes: NULL, compare anew.
REKEY = text(
    """
    UPDATE transactions
       SET external_id = :posted_id, pending_external_id = :pending_id, fingerprint = NULL,
           item_json = NULL
     WHERE id = :id
    """
)
# Posted rows of the account with one of these amounts in a period (a re-issued id's candidates).
POSTED_LIKE = text(
    """
    SELECT id, external_id, amount, description, occurred_at FROM transactions
     WHERE account_id = :account_id AND status = 'posted'
       AND occurred_at >= :since AND occurred_at <= :until
       AND amount = ANY(CAST(:amounts AS numeric[]))
     ORDER BY occurred_at, id
    """
)
# A row whose institution id was re-issued: it takes the new one (its content is compared and
# written again by the upsert that follows).
REKEY_REISSUED = text(
    """
    UPDATE transactions
       SET external_id = :new_id, fingerprint = NULL, item_json = NULL, updated_at = now()
     WHERE id = :id
    """
)
# Posted rows of the account the institution says it removed (their ids).
CANCEL_POSTED = text(
    """
    UPDATE transactions
       SET status = 'cancelled', fingerprint = NULL, item_json = NULL, updated_at = now()
     WHERE account_id = :account_id AND status = 'posted'
       AND external_id = ANY(CAST(:ids AS text[]))
    RETURNING id
    """
)
CANCEL = text(
    """
    UPDATE transactions
       SET status = 'cancelled', fingerprint = NULL, item_json = NULL, updated_at = now()
     WHERE id = ANY(CAST(:ids AS uuid[]))
    """
)


async def _ids_in(session: AsyncSession, query, account_id: uuid.UUID, ids) -> set[str]:
    ids = list(ids)
    if not ids:
        return set()
    found = await session.execute(query, {"account_id": account_id, "ids": ids})
    return {row[0] for row in found}


async def already_posted(session: AsyncSession, *, account_id: uuid.UUID, ids) -> set[str]:
    """Those of ``ids`` a posted row of the account names as its pending one."""
    return await _ids_in(session, ALREADY_POSTED, account_id, ids)


async def existing(session: AsyncSession, *, account_id: uuid.UUID, ids) -> set[str]:
    """Those of ``ids`` that are already the external id of a row of the account."""
    return await _ids_in(session, EXISTING, account_id, ids)


async def pendings(session: AsyncSession, *, account_id: uuid.UUID) -> list:
    """The account's pending rows (id, external_id, amount, description, occurred_at), oldest
    first."""
    return (await session.execute(PENDINGS, {"account_id": account_id})).all()


async def fingerprints(
    session: AsyncSession, *, account_id: uuid.UUID, since: datetime
) -> dict[str, bytes]:
    """External id -> fingerprint of the account's rows from ``since`` on. Straight from the
    driver (in the session's transaction): a year of an account is 100,000 rows, and
    SQLAlchemy's row objects would double the cost."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    rows = await driver.fetch(FINGERPRINTS_SQL, account_id, since)
    return {row[0]: row[1] for row in rows}


async def upsert_transactions(
    session: AsyncSession, *, user_id: uuid.UUID, account_id: uuid.UUID, params: dict
) -> list[bool]:
    """One batch written by (account, external id) (``params``: a list per column of COLUMNS);
    for each row written, whether it was new (a row already as listed is not written)."""
    written = await session.execute(
        UPSERT, {"user_id": user_id, "account_id": account_id, **params}
    )
    return [inserted for (inserted,) in written]


async def fill_item_json(session: AsyncSession, *, account_id: uuid.UUID) -> None:
    """The JSON of the account's rows that have none written (FILL)."""
    await session.execute(FILL, {"account_id": account_id})


async def rekey(
    session: AsyncSession, *, row_id: uuid.UUID, posted_id: str, pending_id: str
) -> None:
    """Our pending row becomes the posted transaction ``posted_id`` that completes it."""
    await session.execute(REKEY, {"id": row_id, "posted_id": posted_id, "pending_id": pending_id})


async def posted_like(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    amounts: list,
    since: datetime,
    until: datetime,
) -> list:
    """The account's posted rows (id, external_id, amount, description, occurred_at) with one
    of ``amounts``, occurred from ``since`` to ``until``."""
    found = await session.execute(
        POSTED_LIKE,
        {"account_id": account_id, "amounts": amounts, "since": since, "until": until},
    )
    return found.all()


async def rekey_reissued(session: AsyncSession, *, row_id: uuid.UUID, new_id: str) -> None:
    """The row takes the institution's new id for it."""
    await session.execute(REKEY_REISSUED, {"id": row_id, "new_id": new_id})


async def cancel_posted(session: AsyncSession, *, account_id: uuid.UUID, ids: list[str]) -> int:
    """The account's posted rows of these external ids ``cancelled``; how many there were."""
    return len((await session.execute(CANCEL_POSTED, {"account_id": account_id, "ids": ids})).all())


async def cancel(session: AsyncSession, *, ids: list[uuid.UUID]) -> None:
    """The rows ``cancelled``."""
    await session.execute(CANCEL, {"ids": ids})


# --- the runs on record (sync/runs.py) --------------------------------------------------------


def _page_sql(after: bool) -> str:
    keyset = "AND (r.started_at, r.id) < ($4, $5)" if after else ""
    return f"""
SELECT p.id AS provider_id, r.id::text AS id, r.trigger, r.status, r.started_at, r.finished_at,
       (extract(epoch FROM r.finished_at - r.started_at) * 1000)::bigint AS duration_ms,
       r.accounts, r.positions, r.transactions_added, r.transactions_modified,
       r.transactions_removed, r.error, r.error_detail
  FROM {PERSON}
  LEFT JOIN providers p ON p.id = $2 AND p.user_id = u.id
  LEFT JOIN provider_connections c ON c.provider_id = p.id
  LEFT JOIN LATERAL (
        SELECT * FROM sync_runs r
         WHERE r.connection_id = c.id {keyset}
         ORDER BY r.started_at DESC, r.id DESC
         LIMIT $3 + 1) r ON true
 WHERE {ACTIVE_PERSON}
 ORDER BY r.started_at DESC, r.id DESC
"""  # noqa: S608 (fixed fragments)


_FIRST_PAGE, _NEXT_PAGE = _page_sql(after=False), _page_sql(after=True)


async def run_rows(
    reader: Reader,
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[asyncpg.Record]:
    """Up to ``limit`` + 1 runs of the provider's connection, newest first (after the keyset
    ``after``), each row with the provider's id (NULL: not the person's provider; ``id`` NULL:
    no run); Unauthorized when the person may not sign in."""
    if after is None:
        return await rows_of_active_person(reader, _FIRST_PAGE, user_id, provider_id, limit)
    return await rows_of_active_person(reader, _NEXT_PAGE, user_id, provider_id, limit, *after)


PRUNE = text(
    """
    DELETE FROM sync_runs WHERE id IN (
        SELECT id FROM sync_runs WHERE started_at < :before AND status <> 'running' LIMIT :batch)
    """
)


async def prune_runs(session: AsyncSession, *, before: datetime, batch: int) -> int:
    """Up to ``batch`` finished runs started before ``before`` deleted; how many."""
    return (await session.execute(PRUNE, {"before": before, "batch": batch})).rowcount
