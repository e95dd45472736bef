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
   A pending still listed as pending under an id we do not hold (a new Link of the same
   bank names everything anew), the same amount, day and a similar description, is that
   pending: the row takes its id.
3. What is left of them, inside the window that was read, is ``cancelled`` (``removed``).
4. A posted transaction listed under an id we do not hold, whose content is a posted row we
   hold that the listing no longer names (some banks re-issue the ids of a whole block of past
   transactions): the same amount, a day within REISSUED_DAYS, a similar description, inside
   the window that was read. That row takes the new id (it is re-keyed, not added); each row
   and each listed transaction pair at most once, the nearest day first. Only listed ids we do
   not hold cost anything: a listing of what we already hold sends no statement for it; one
   with new ids, two indexed reads (which of them we hold, and our posted rows of their
   amounts around their days).
5. Every listed transaction not already held exactly as listed is upserted by (account,
   institution id) in batches; a row is written only when something in it changed. "Exactly as
   listed" is a digest of the entry (``fingerprint``) stored with the row it was written from:
   reading the same window twice sends nothing to the database but one indexed read of the
   digests, and writes nothing.

A listing of changes only (``changes_only``: a cursor's changes, Plaid's /transactions/sync) is
not all of a window: a pending of ours it does not list stays pending (step 2 looks only at the
pendings ``removed`` names), and step 4 is not taken (a row it does not list is not an orphan).
Either way, an id in ``removed`` is gone at the institution: a pending so named is completed by
the posted one that names it (or matches it), else cancelled wherever it lies; a posted row so
named is cancelled.
"""

import difflib
import hashlib
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.sources.shapes import TransactionData
from dashtam_api.sync import queries

BATCH = 5000
# How far apart the days of a re-issued transaction and the row it takes over may be.
REISSUED_DAYS = 3


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


def _deduplicated(listed: tuple[TransactionData, ...]) -> dict[str, TransactionData]:
    """One entry per institution id; a posted entry wins over a pending one of the same id."""
    by_id: dict[str, TransactionData] = {}
    for t in listed:
        prior = by_id.get(t.external_id)
        if prior is None or not (prior.status == "posted" and t.status == "pending"):
            by_id[t.external_id] = t
    return by_id


async def reconcile(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    listed: tuple[TransactionData, ...],
    window: tuple[datetime, datetime],
    match_days: int,
    removed: tuple[str, ...] = (),
    changes_only: bool = False,
) -> Counts:
    counts = Counts()
    listing = _deduplicated(listed)
    taken_back = set(removed) - listing.keys()
    pending_ids = [i for i, t in listing.items() if t.status == "pending"]
    for done in await queries.already_posted(session, account_id=account_id, ids=pending_ids):
        if listing[done].status == "pending":
            del listing[done]

    ours = await queries.pendings(session, account_id=account_id)
    # A pending listed with no time at all (SimpleFIN's posted 0 without transacted_at) is
    # dated when first seen and keeps that date: its digest, taken of what was listed, is the
    # same from one read to the next, so its row is not written again; written (new, or
    # something else changed), it takes the date of our pending row, else the read's end.
    digests = {i: fingerprint(t) for i, t in listing.items()}
    first_seen = None
    for i, t in listing.items():
        if t.transacted_at is None and t.posted_at is None:
            if first_seen is None:
                first_seen = {p.external_id: p.occurred_at for p in ours}
            listing[i] = replace(t, transacted_at=first_seen.get(i, window[1]))
    if changes_only:
        gone = [p for p in ours if p.external_id in taken_back]
    else:
        gone = [p for p in ours if p.external_id not in listing]
    taken: set[str] = set()
    if gone:
        counts.removed, taken = await _complete_or_cancel(
            session, account_id, listing, gone, window, match_days, taken_back, changes_only
        )
    ours_pending = {p.external_id for p in ours}
    posted_gone = [i for i in taken_back if i not in ours_pending]
    if posted_gone:
        counts.removed += await queries.cancel_posted(
            session, account_id=account_id, ids=posted_gone
        )

    held = {}
    if listing:
        since = min(t.occurred_at for t in listing.values())
        held = await queries.fingerprints(session, account_id=account_id, since=since)
        unheld = [
            t
            for i, t in listing.items()
            if i not in held and i not in taken and t.status == "posted"
        ]
        if unheld and not changes_only:
            await _take_over_reissued(session, account_id, listing, unheld, window)
    rows = [(t, digests[i]) for i, t in listing.items() if held.get(i) != digests[i]]
    for first in range(0, len(rows), BATCH):
        batch = rows[first : first + BATCH]
        params = {
            c: [getattr(t, c) for t, _ in batch] for c, _ in queries.COLUMNS if c != "fingerprint"
        }
        params["fingerprint"] = [digest for _, digest in batch]
        written = await queries.upsert_transactions(
            session, user_id=user_id, account_id=account_id, params=params
        )
        for inserted in written:
            if inserted:
                counts.added += 1
            else:
                counts.modified += 1
    # Nothing to write, the usual case: one probe of an empty partial index.
    await queries.fill_item_json(session, account_id=account_id)
    return counts


async def _take_over_reissued(session, account_id, listing, unheld, window) -> None:
    """Step 4 of the module's rule: a row the listing no longer names takes the new id of the
    listed transaction that is its content."""
    # Not held as the fingerprints tell: new, or a row whose fingerprint was cleared.
    rows = await queries.existing(
        session, account_id=account_id, ids=[t.external_id for t in unheld]
    )
    fresh = [t for t in unheld if t.external_id not in rows]
    if not fresh:
        return
    reach = timedelta(days=REISSUED_DAYS)
    orphans = [
        row
        for row in await queries.posted_like(
            session,
            account_id=account_id,
            amounts=list({t.amount for t in fresh}),
            since=max(min(t.occurred_at for t in fresh) - reach, window[0]),
            until=max(t.occurred_at for t in fresh) + reach,
        )
        if row.external_id not in listing
    ]
    by_amount: dict = {}
    for j, row in enumerate(orphans):
        by_amount.setdefault(row.amount, []).append(j)
    pairs = sorted(
        (abs(orphans[j].occurred_at - t.occurred_at), t.description != orphans[j].description, i, j)
        for i, t in enumerate(fresh)
        for j in by_amount.get(t.amount, ())
        if abs(orphans[j].occurred_at.date() - t.occurred_at.date()) <= reach
        and similar(orphans[j].description, t.description)
    )
    paired_listed, paired_rows = set(), set()
    for _, _, i, j in pairs:
        if i in paired_listed or j in paired_rows:
            continue
        paired_listed.add(i)
        paired_rows.add(j)
        await queries.rekey_reissued(session, row_id=orphans[j].id, new_id=fresh[i].external_id)


async def _complete_or_cancel(
    session, account_id, listing, gone, window, match_days, taken_back=frozenset(), changes=False
) -> tuple[int, set[str]]:
    """Step 2 and 3 of the module's rule for our pendings the institution no longer lists;
    returns how many were cancelled, and the posted ids that completed one."""
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
    # A whole listing may name a pending of ours anew (a new consent or Link of the same
    # bank): the same amount, day and description, still pending, under an id we do not hold.
    relisted = (
        []
        if changes
        else [t for t in listing.values() if t.status == "pending" and t.amount in amounts]
    )
    candidates = [t.external_id for t in (*linked.values(), *unlinked, *relisted)]
    # A posted transaction already a row of its own cannot complete a pending any more.
    taken = await queries.existing(session, account_id=account_id, ids=candidates)
    completed: set[str] = set()
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
        if posted is None:
            same = next(
                (
                    t
                    for t in relisted
                    if t.external_id not in taken
                    and t.amount == pending.amount
                    and t.occurred_at.date() == pending.occurred_at.date()
                    and similar(pending.description, t.description)
                ),
                None,
            )
            if same is not None:
                taken.add(same.external_id)
                completed.add(same.external_id)
                await queries.rekey_reissued(session, row_id=pending.id, new_id=same.external_id)
                continue
        if posted is not None and posted.external_id not in taken:
            taken.add(posted.external_id)
            completed.add(posted.external_id)
            await queries.rekey(
                session,
                row_id=pending.id,
                posted_id=posted.external_id,
                pending_id=pending.external_id,
            )
        elif (
            posted is not None
            or pending.occurred_at >= window[0]
            or pending.external_id in taken_back
        ):
            # Named by a posted transaction we already hold (it posted before it said so),
            # gone from a period the institution was asked about, or said removed by it: not
            # money spent.
            cancelled.append(pending.id)
    if cancelled:
        await queries.cancel(session, ids=cancelled)
    return len(cancelled), completed
