"""Reconciling an account's transactions with listings, on the real PostgreSQL (in the test's
transaction): each case of docs/transactions.md, then a property test over any listings."""

from dataclasses import fields, replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from dashtam_api.sources.shapes import SourceError, TransactionData, timestamp
from dashtam_api.sync.transactions import Counts, fingerprint, reconcile, similar
from dashtam_api.transactions.queries import item_lateral
from dashtam_models import Account, Transaction
from tests.fixtures.factories import create_connection

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
WINDOW = (NOW - timedelta(days=30), NOW)


def day(n: int) -> datetime:
    """n days before NOW."""
    return NOW - timedelta(days=n)


def card(tid: str, amount: str, made: int, *, posted: int | None = None, **fields):
    return TransactionData(
        external_id=tid,
        status="pending" if posted is None else "posted",
        amount=Decimal(amount),
        description=fields.pop("description", "BLUE BOTTLE COFFEE"),
        kind=fields.pop("kind", "card"),
        transacted_at=day(made),
        posted_at=None if posted is None else day(posted),
        **fields,
    )


@pytest.fixture
async def account(session):
    connection = await create_connection(session)
    provider_user = await session.scalar(
        text("SELECT user_id FROM providers WHERE id = :id").bindparams(id=connection.provider_id)
    )
    row = Account(
        user_id=provider_user,
        connection_id=connection.id,
        external_id="ACC-1",
        account_type="checking",
        name="Checking",
        currency="USD",
        synced_at=NOW,
    )
    session.add(row)
    await session.flush()
    return row


async def sync(session, account, *listed, window=WINDOW) -> Counts:
    done = await reconcile(
        session,
        user_id=account.user_id,
        account_id=account.id,
        listed=tuple(listed),
        window=window,
        match_days=7,
    )
    # Every row leaves with its JSON as the API composes it from the row: none missing after
    # an update, a completion or a cancellation, none stale.
    stored = await session.execute(
        text(
            "SELECT t.external_id, t.item_json, row_to_json(item)::text FROM transactions t "
            f"{item_lateral('t')} WHERE t.account_id = :account"
        ).bindparams(account=account.id)
    )
    for external_id, item_json, composed in stored:
        assert item_json == composed, external_id
    return done


async def rows(session, account) -> list[Transaction]:
    found = await session.scalars(
        select(Transaction)
        .where(Transaction.account_id == account.id)
        .order_by(Transaction.occurred_at, Transaction.external_id)
        .execution_options(populate_existing=True)
    )
    return list(found)


def counts(added=0, modified=0, removed=0) -> Counts:
    return Counts(added, modified, removed)


async def test_the_same_listing_twice_writes_nothing_the_second_time(session, account):
    listing = [card("T1", "-4.75", 3, posted=2), card("T2", "2650.00", 5, posted=5, kind="deposit")]
    assert await sync(session, account, *listing) == counts(added=2)
    before = {r.id: r.updated_at for r in await rows(session, account)}
    assert await sync(session, account, *listing) == counts()
    # Pages repeated and out of order: the same.
    assert await sync(session, account, listing[1], listing[0], listing[1]) == counts()
    assert {r.id: r.updated_at for r in await rows(session, account)} == before


async def test_a_pending_whose_amount_changes_is_updated_not_duplicated(session, account):
    await sync(session, account, card("P1", "-20.00", 1))
    assert await sync(session, account, card("P1", "-24.00", 1)) == counts(modified=1)
    (row,) = await rows(session, account)
    assert (row.status, row.amount) == ("pending", Decimal("-24.00"))


async def test_a_posted_one_naming_its_pending_takes_over_the_row(session, account):
    await sync(session, account, card("P1", "-64.00", 2, description="CHEZ PANISSE"))
    (pending,) = await rows(session, account)
    posted = card(
        "T9",
        "-75.52",
        2,
        posted=1,
        description="CHEZ PANISSE BERKELEY CA",
        pending_external_id="P1",
    )
    assert await sync(session, account, posted) == counts(modified=1)
    (row,) = await rows(session, account)
    assert row.id == pending.id  # the same Dashtam transaction, now posted with the tip
    assert (row.external_id, row.pending_external_id, row.status, row.amount) == (
        "T9",
        "P1",
        "posted",
        Decimal("-75.52"),
    )
    # A late listing that still shows the pending changes nothing and adds nothing.
    assert await sync(session, account, card("P1", "-64.00", 2), posted) == counts()
    assert len(await rows(session, account)) == 1


async def test_a_posted_one_with_a_new_id_completes_the_pending_it_matches(session, account):
    await sync(
        session,
        account,
        card("P1", "-4.75", 3),
        card("P2", "-86.42", 3, description="WHOLE FOODS MKT"),
    )
    posted = card("T1", "-4.75", 3, posted=2, description="BLUE BOTTLE COFFEE #0423 OAKLAND CA")
    # P2 still listed; P1 gone, and T1 (same amount, two days later, similar words) is it.
    assert await sync(
        session, account, posted, card("P2", "-86.42", 3, description="WHOLE FOODS MKT")
    ) == counts(modified=1)
    by_id = {r.external_id: r for r in await rows(session, account)}
    assert set(by_id) == {"T1", "P2"}
    assert (by_id["T1"].pending_external_id, by_id["T1"].status) == ("P1", "posted")


async def test_two_identical_coffees_stay_two(session, account):
    coffees = [card(f"P{i}", "-5.25", 2, description="STARBUCKS STORE 1234") for i in (1, 2)]
    assert await sync(session, account, *coffees) == counts(added=2)
    # One posted (a new id, no link), one still pending: the listed pending is not a candidate.
    first = card("T1", "-5.25", 2, posted=1, description="STARBUCKS STORE 1234 SEATTLE WA")
    assert await sync(session, account, first, coffees[1]) == counts(modified=1)
    second = replace(first, external_id="T2")
    assert await sync(session, account, first, second) == counts(modified=1)
    found = await rows(session, account)
    assert sorted((r.external_id, r.pending_external_id, r.status) for r in found) == [
        ("T1", "P1", "posted"),
        ("T2", "P2", "posted"),
    ]


async def test_a_pending_the_institution_drops_is_cancelled(session, account):
    await sync(session, account, card("H1", "-150.00", 4, description="HILTON HOTELS AUTH HOLD"))
    assert await sync(session, account, card("T1", "-4.75", 1, posted=1)) == counts(
        added=1, removed=1
    )
    statuses = {r.external_id: r.status for r in await rows(session, account)}
    assert statuses == {"H1": "cancelled", "T1": "posted"}


async def test_a_pending_older_than_the_window_read_is_left_alone(session, account):
    await sync(session, account, card("P1", "-4.75", 40), window=(day(60), NOW))
    assert await sync(session, account, window=(day(20), NOW)) == counts()
    assert [r.status for r in await rows(session, account)] == ["pending"]


async def test_an_unmatched_posted_one_and_an_ambiguous_amount_are_not_forced(session, account):
    await sync(session, account, card("P1", "-4.75", 3))
    # Same amount, but a different merchant: no match; the pending is cancelled, T1 added.
    other = card("T1", "-4.75", 3, posted=2, description="SHELL OIL 57444190")
    assert await sync(session, account, other) == counts(added=1, removed=1)
    # Posted too long after the pending: not it either.
    await sync(session, account, card("P2", "-9.99", 25, description="NETFLIX.COM"), other)
    late = card("T2", "-9.99", 25, posted=10, description="NETFLIX.COM LOS GATOS CA")
    assert await sync(session, account, late, other) == counts(added=1, removed=1)


async def test_a_block_reissued_under_new_ids_takes_over_its_rows(session, account):
    block = [
        card("T1", "-4.75", 6, posted=5),
        card("T2", "-86.42", 7, posted=6, description="WHOLE FOODS MKT"),
        card("T3", "2650.00", 8, posted=8, description="PAYROLL ACME", kind="deposit"),
    ]
    assert await sync(session, account, *block) == counts(added=3)
    before = {r.external_id: r.id for r in await rows(session, account)}
    # The bank re-issued the block: new ids, the same content (one description a little
    # longer), and one new transaction besides.
    reissued = [replace(t, external_id=f"{t.external_id}-NEW") for t in block]
    reissued[1] = replace(reissued[1], description="WHOLE FOODS MKT #10233 BERKELEY")
    new = card("T4", "-12.00", 1, posted=1, description="LYFT RIDE")
    assert await sync(session, account, *reissued, new) == counts(added=1, modified=3)
    after = {r.external_id: r.id for r in await rows(session, account)}
    assert {after[f"{k}-NEW"] for k in before} == set(before.values())  # the same rows, re-keyed
    assert len(after) == 4
    # Listed again as they are now: nothing changes.
    assert await sync(session, account, *reissued, new) == counts()


async def test_a_new_id_whose_twin_is_still_listed_is_a_new_transaction(session, account):
    coffee = card("T1", "-5.25", 3, posted=3, description="STARBUCKS STORE 1234")
    assert await sync(session, account, coffee) == counts(added=1)
    # A second identical charge under its own id, the first still listed: two coffees.
    twin = replace(coffee, external_id="T2")
    assert await sync(session, account, coffee, twin) == counts(added=1)
    # An old row outside the window read is not taken over either.
    old = card("T9", "-9.99", 40, posted=40, description="NETFLIX.COM")
    await sync(session, account, old, window=(day(60), NOW))
    moved = replace(old, external_id="T9-NEW")
    assert await sync(session, account, moved, coffee, twin) == counts(added=1)
    assert len(await rows(session, account)) == 4


async def test_a_late_transaction_older_than_the_last_sync_is_added(session, account):
    await sync(session, account, card("T1", "-4.75", 2, posted=2))
    late = card("T0", "-12.00", 8, posted=8, kind="fee", description="MONTHLY SERVICE FEE")
    assert await sync(session, account, card("T1", "-4.75", 2, posted=2), late) == counts(added=1)


async def test_amounts_keep_every_digit(session, account):
    exact = card("T1", "-99999999999999.99", 1, posted=1)
    trade = card("T2", "-1580.7865", 1, posted=1, quantity=Decimal("7"), fees=Decimal("4.9765"))
    await sync(session, account, exact, trade)
    raw = await session.execute(
        text(
            "SELECT amount::text, fees::text FROM transactions WHERE account_id = :a ORDER BY external_id"
        ).bindparams(a=account.id)
    )
    assert raw.all() == [("-99999999999999.99", None), ("-1580.7865", "4.9765")]


def test_institution_timestamps_with_and_without_a_colon_in_the_offset():
    expected = datetime(2025, 1, 2, 15, 4, 5, tzinfo=UTC)
    assert timestamp("2025-01-02T15:04:05+0000", "t") == expected
    assert timestamp("2025-01-02T15:04:05Z", "t") == expected
    assert timestamp("2025-01-02T17:04:05+02:00", "t") == expected
    assert timestamp("2025-01-02", "t") == datetime(2025, 1, 2, tzinfo=UTC)
    assert timestamp(None, "t") is None
    with pytest.raises(SourceError):
        timestamp("yesterday", "t")


def test_the_fingerprint_covers_every_field_the_institution_sends():
    listed = card("T1", "-4.75", 3, posted=2, pending_external_id="P1", fees=Decimal(0))
    changed = {
        "external_id": "T2",
        "status": "pending",
        "amount": Decimal("-4.76"),
        "description": "X",
        "kind": "fee",
        "transacted_at": day(4),
        "posted_at": day(1),
        "settlement_date": date(2026, 1, 1),
        "pending_external_id": "P2",
        "currency": "EUR",
        "payee": "Y",
        "memo": "Z",
        "institution_type": "CARD",
        "symbol": "VTI",
        "asset_type": "etf",
        "quantity": Decimal(1),
        "price": Decimal(2),
        "fees": Decimal(3),
    }
    assert set(changed) == {f.name for f in fields(TransactionData)}
    for name, value in changed.items():
        assert fingerprint(replace(listed, **{name: value})) != fingerprint(listed), name
    # The same instant from another offset is the same transaction.
    moved = replace(listed, posted_at=listed.posted_at.astimezone(timezone(timedelta(hours=2))))
    assert fingerprint(moved) == fingerprint(listed)


def test_descriptions_are_similar_when_the_posted_one_only_adds_detail():
    assert similar("BLUE BOTTLE COFFEE", "BLUE BOTTLE COFFEE #0423 OAKLAND CA")
    assert similar("AMZN MKTP US", "AMZN MKTP US*2K4L19 AMZN.COM/BILL WA")
    assert not similar("BLUE BOTTLE COFFEE", "SHELL OIL 57444190 BERKELEY CA")


# --- the property: any listings of one account's history converge to one row per real
# transaction. A real transaction is pending for a while under one id, then posts under the
# same id, a new linked id or a new unlinked id; a listing is any window of the history, in
# any order, with repeats.

MERCHANTS = ("BLUE BOTTLE COFFEE", "WHOLE FOODS MKT", "SHELL OIL", "STARBUCKS STORE")


@st.composite
def histories(draw):
    count = draw(st.integers(1, 8))
    real = []
    for i in range(count):
        made = draw(st.integers(2, 20))
        real.append(
            {
                "i": i,
                "made": made,
                "posts_after": draw(st.integers(0, 2)),
                "how": draw(st.sampled_from(["same_id", "linked", "unlinked"])),
                # Identical amounts and merchants are likely: the hard case.
                "amount": draw(st.sampled_from(["-4.75", "-5.25", "-86.42"])),
                "merchant": draw(st.sampled_from(MERCHANTS)),
            }
        )
    listings = draw(st.lists(st.permutations(range(count)), min_size=1, max_size=4))
    return real, listings


def _as_listed(t: dict, settled: bool) -> TransactionData:
    pending = card(f"P{t['i']}", t["amount"], t["made"], description=t["merchant"])
    if not settled:
        return pending
    new_id = {"same_id": f"P{t['i']}", "linked": f"T{t['i']}", "unlinked": f"T{t['i']}"}[t["how"]]
    return replace(
        pending,
        external_id=new_id,
        status="posted",
        posted_at=day(max(t["made"] - t["posts_after"], 0)),
        description=f"{t['merchant']} #{t['i']:04d} OAKLAND CA",
        pending_external_id=f"P{t['i']}" if t["how"] == "linked" else None,
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=histories())
async def test_any_listings_converge_to_one_row_per_real_transaction(session, account, history):
    real, orders = history
    savepoint = await session.begin_nested()
    try:
        # Each listing: every transaction as pending first, then (the last one) all posted,
        # in the drawn order; repeated listings of the final state change nothing.
        for order in orders:
            await sync(session, account, *(_as_listed(real[i], settled=False) for i in order))
        final = [_as_listed(real[i], settled=True) for i in orders[-1]]
        await sync(session, account, *final)
        assert await sync(session, account, *reversed(final)) == counts()
        found = await rows(session, account)
        assert len(found) == len(real)
        assert {r.status for r in found} == {"posted"}
        assert sorted(r.external_id for r in found) == sorted(t.external_id for t in final)
    finally:
        await savepoint.rollback()


async def test_a_pending_with_no_time_keeps_the_date_it_was_first_seen(session, account):
    """SimpleFIN lists some pendings with posted 0 and no transacted_at: dated when first
    seen (the read's end), not moved by every later read (rewritten, counted modified, a
    webhook each time); written again for another reason, it keeps that date."""
    timeless = replace(card("P-1", "-9.99", 0), transacted_at=None)
    assert (await sync(session, account, timeless)).added == 1
    later = (NOW - timedelta(days=29), NOW + timedelta(hours=5))
    assert await sync(session, account, timeless, window=later) == Counts()
    changed = replace(timeless, description="BLUE BOTTLE COFFEE 0423")
    assert (await sync(session, account, changed, window=later)).modified == 1
    (row,) = (
        await session.scalars(select(Transaction).execution_options(populate_existing=True))
    ).all()
    assert row.occurred_at == NOW
    assert row.status == "pending"
