"""Reconcile an account's transactions with what the institution lists now (docs/transactions.md).

Runs inside the sync's write transaction, so a sync cut off anywhere leaves nothing half
written; the next one reads the same window again and completes it. In order:

1. The listing, one entry per institution id (a page repeated or arriving out of order changes
   nothing); a pending the institution still lists but that we already saw post (its id is a
   posted row's ``pending_external_id``) is dropped.
2. Our pendings the institution no longer lists become the posted transaction that completes
   them: the one that names them (``pending_external_id``), else one matched by the rule of
   ``matches`` (same amount, posted within TRANSACTIONS_PENDING_MATCH_DAYS of the pending's
   day, a similar description), oldest pending first, each posted transaction completing at
   most one pending. The row keeps its Dashtam id and takes the posted one's institution id.
3. What is left of them, inside the window that was read, is ``cancelled`` (``removed``).
4. Every listed transaction not already held exactly as listed is upserted by (account,
   institution id) in batches; a row is written only when something in it changed. "Exactly as
   listed" is a digest of the entry (``fingerprint``) stored with the row it was written from:
   reading the same window twice sends nothing to the database but one indexed read of the
   digests, and writes nothing.
"""

import difflib
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.sync.institutions import TransactionData
from dashtam_api.transactions.service import item_lateral

BATCH = 5000

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
# JSON as the API serves it (transactions.item_json: a page reads it as it is), its id drawn
# here so that the JSON can hold it; a row changed by the upsert loses its JSON, which FILL
# writes again once the rows are settled.
_NAMES = ", ".join(c for c, _ in COLUMNS)
UPSERT = text(
    f"""
    INSERT INTO transactions AS t (id, user_id, account_id, {_NAMES}, item_json)
    SELECT s.*, row_to_json(item)::text
      FROM (SELECT gen_random_uuid() AS id, CAST(:user_id AS uuid) AS user_id,
                   CAST(:account_id AS uuid) AS account_id, u.*
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
CANCEL = text(
    """
    UPDATE transactions
       SET status = 'cancelled', fingerprint = NULL, item_json = NULL, updated_at = now()
     WHERE id = ANY(CAST(:ids AS uuid[]))
    """
)


@dataclass
class Counts:
    added: int = 0
    modified: int = 0
    removed: int = 0

    def __iadd__(self, other: "Counts") -> "Counts":
        self.added += other.added
        self.modified += other.modified
        self.removed += other.removed
        return self


def _words(description: str) -> str:
    """A description without what differs between a pending and its posted form: case,
    punctuation, store and reference numbers."""
    return " ".join(w for w in re.findall(r"[a-z]+", description.lower()))


def similar(pending: str, posted: str) -> bool:
    """Banks lengthen a description when it posts ("BLUE BOTTLE COFFEE" becomes "BLUE BOTTLE
    COFFEE #0423 OAKLAND CA"): one's words starting the other's, or mostly the same words."""
    a, b = _words(pending), _words(posted)
    if not a or not b:
        return a == b
    return a.startswith(b) or b.startswith(a) or difflib.SequenceMatcher(None, a, b).ratio() >= 0.6


def matches(pending, posted: TransactionData, match_days: int) -> bool:
    """The rule for a posted transaction that does not name its pending one."""
    made = pending.occurred_at.date()
    return (
        posted.amount == pending.amount
        and made <= posted.occurred_at.date() <= made + timedelta(days=match_days)
        and similar(pending.description, posted.description)
    )


def _instant(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def fingerprint(t: TransactionData) -> bytes:
    """A digest of everything the institution said of one transaction (every field of
    TransactionData: tests/integration/test_transactions_reconcile.py checks none is left out).
    Instants as POSIX seconds: twice as fast as their text, and the same instant whatever the
    offset it came with."""
    said = (
        t.external_id,
        t.status,
        t.amount,
        t.description,
        t.kind,
        _instant(t.transacted_at),
        _instant(t.posted_at),
        t.settlement_date,
        t.pending_external_id,
        t.currency,
        t.payee,
        t.memo,
        t.institution_type,
        t.symbol,
        t.asset_type,
        t.quantity,
        t.price,
        t.fees,
    )
    return hashlib.blake2b(repr(said).encode(), digest_size=16).digest()


async def _fingerprints(session: AsyncSession, account_id: uuid.UUID, since: datetime) -> dict:
    """External id -> fingerprint of the account's rows from ``since`` on. Straight from the
    driver (in the session's transaction): a year of an account is 100,000 rows, and
    SQLAlchemy's row objects would double the cost."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    rows = await driver.fetch(FINGERPRINTS_SQL, account_id, since)
    return {row[0]: row[1] for row in rows}


def _deduplicated(listed: tuple[TransactionData, ...]) -> dict[str, TransactionData]:
    """One entry per institution id; a posted entry wins over a pending one of the same id."""
    by_id: dict[str, TransactionData] = {}
    for t in listed:
        prior = by_id.get(t.external_id)
        if prior is None or not (prior.status == "posted" and t.status == "pending"):
            by_id[t.external_id] = t
    return by_id


async def _ids_in(session: AsyncSession, query, account_id: uuid.UUID, ids) -> set[str]:
    ids = list(ids)
    if not ids:
        return set()
    found = await session.execute(query, {"account_id": account_id, "ids": ids})
    return {row[0] for row in found}


async def reconcile(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    listed: tuple[TransactionData, ...],
    window: tuple[datetime, datetime],
    match_days: int,
) -> Counts:
    counts = Counts()
    listing = _deduplicated(listed)
    pending_ids = [i for i, t in listing.items() if t.status == "pending"]
    for done in await _ids_in(session, ALREADY_POSTED, account_id, pending_ids):
        if listing[done].status == "pending":
            del listing[done]

    ours = (await session.execute(PENDINGS, {"account_id": account_id})).all()
    gone = [p for p in ours if p.external_id not in listing]
    if gone:
        counts.removed = await _complete_or_cancel(
            session, account_id, listing, gone, window, match_days
        )

    digests = {i: fingerprint(t) for i, t in listing.items()}
    held = {}
    if listing:
        since = min(t.occurred_at for t in listing.values())
        held = await _fingerprints(session, account_id, since)
    rows = [(t, digests[i]) for i, t in listing.items() if held.get(i) != digests[i]]
    for first in range(0, len(rows), BATCH):
        batch = rows[first : first + BATCH]
        params = {c: [getattr(t, c) for t, _ in batch] for c, _ in COLUMNS if c != "fingerprint"}
        params["fingerprint"] = [digest for _, digest in batch]
        written = await session.execute(
            UPSERT, {"user_id": user_id, "account_id": account_id, **params}
        )
        for (inserted,) in written:
            if inserted:
                counts.added += 1
            else:
                counts.modified += 1
    # Nothing to write, the usual case: one probe of an empty partial index.
    await session.execute(FILL, {"account_id": account_id})
    return counts


async def _complete_or_cancel(session, account_id, listing, gone, window, match_days) -> int:
    """Step 2 and 3 of the module's rule for our pendings the institution no longer lists;
    returns how many were cancelled."""
    gone_ids = {p.external_id for p in gone}
    linked = {
        t.pending_external_id: t
        for t in listing.values()
        if t.status == "posted" and t.pending_external_id in gone_ids
    }
    amounts = {p.amount for p in gone}
    unlinked = [
        t
        for t in listing.values()
        if t.status == "posted" and t.pending_external_id is None and t.amount in amounts
    ]
    candidates = [t.external_id for t in (*linked.values(), *unlinked)]
    # A posted transaction already a row of its own cannot complete a pending any more.
    taken = await _ids_in(session, EXISTING, account_id, candidates)
    unlinked.sort(key=lambda t: (t.occurred_at, t.external_id))
    cancelled = []
    for pending in gone:
        posted = linked.get(pending.external_id)
        if posted is None:
            posted = next(
                (
                    t
                    for t in unlinked
                    if t.external_id not in taken and matches(pending, t, match_days)
                ),
                None,
            )
        if posted is not None and posted.external_id not in taken:
            taken.add(posted.external_id)
            await session.execute(
                REKEY,
                {
                    "id": pending.id,
                    "posted_id": posted.external_id,
                    "pending_id": pending.external_id,
                },
            )
        elif posted is not None or pending.occurred_at >= window[0]:
            # Named by a posted transaction we already hold (it posted before it said so), or
            # gone from a period the institution was asked about: not money spent.
            cancelled.append(pending.id)
    if cancelled:
        await session.execute(CANCEL, {"ids": cancelled})
    return len(cancelled)
