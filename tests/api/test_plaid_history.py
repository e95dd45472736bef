"""Plaid's history as it arrives for a new item, against the look-alike: transactions
NOT_READY, then the last 30 days, then two years (through a new Link of the same bank too), a
status Plaid could not determine, investments that come after Link (PRODUCT_NOT_READY, then
30 days, then the rest announced by a webhook), an investments-only item, and a cursor whose
pages keep failing."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from dashtam_models import ProviderConnection
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.api.test_plaid_source import (
    PLAID,
    accounts_of,
    connected,
    control,
    deliver,
    item_of,
    link,
    signed,
    sync,
    transactions_of,
)
from tests.api.test_plaid_source import plaid as plaid  # the fixture

BOTH = ["transactions", "investments"]


async def history(client, login, **stages) -> None:
    answer = await client.post(f"{PLAID}/_control/{login}/history", json=stages)
    assert answer.status_code == 204, answer.text


async def provider(client) -> tuple[dict, str, str]:
    """A person with a Plaid provider not linked yet, and a bank login: (headers, id, login)."""
    headers = await signed_in(client, f"plaid-{uuid.uuid4().hex[:6]}")
    made = await client.post(
        "/api/v1/providers",
        headers=headers,
        json={"provider_key": "plaid", "alias": f"Plaid {uuid.uuid4().hex[:6]}"},
    )
    assert made.status_code == 201, made.text
    return headers, made.json()["id"], f"user_{uuid.uuid4().hex[:8]}"


async def connection(session, provider_id) -> ProviderConnection:
    session.expire_all()
    return await session.scalar(
        select(ProviderConnection).where(ProviderConnection.provider_id == uuid.UUID(provider_id))
    )


async def all_rows(client, headers, provider_id) -> dict[str, dict]:
    rows = {}
    for account in (await accounts_of(client, headers, provider_id)).values():
        rows |= {r["id"]: r for r in await transactions_of(client, headers, account["id"])}
    return rows


async def test_a_new_links_history_arrives_in_stages_and_keeps_every_row(plaid, app, session):
    client = plaid
    headers, provider_id, login = await connected(client)
    assert (await sync(client, headers, provider_id)).status_code == 200
    held = await all_rows(client, headers, provider_id)

    # A new Link of the same bank: Plaid's new item has nothing ready yet.
    await history(client, login, transactions="NOT_READY")
    assert (await link(client, headers, provider_id, login))["mode"] == "new"
    await app.state.ctx.settle()
    waiting = await sync(client, headers, provider_id)
    assert waiting.status_code == 200, waiting.text
    assert waiting.json()["transactions"] == {"added": 0, "modified": 0, "removed": 0}
    assert await all_rows(client, headers, provider_id) == held  # nothing taken as gone
    assert "cursor" not in (await connection(session, provider_id)).source_state

    # The last 30 days: they take over the rows they are; the older ones stay as they were.
    await history(client, login, transactions="INITIAL_UPDATE_COMPLETE")
    initial = await sync(client, headers, provider_id)
    assert initial.json()["transactions"]["added"] == 0
    assert {i: r["status"] for i, r in (await all_rows(client, headers, provider_id)).items()} == {
        i: r["status"] for i, r in held.items()
    }
    assert "cursor" not in (await connection(session, provider_id)).source_state

    # Two years: all of it, each row its own again; the cursor kept from now on.
    await history(client, login, transactions="HISTORICAL_UPDATE_COMPLETE")
    whole = await sync(client, headers, provider_id)
    # The older rows take their new ids (modified), none added, none gone.
    assert (whole.json()["transactions"]["added"], whole.json()["transactions"]["removed"]) == (
        0,
        0,
    )
    assert {i: r["status"] for i, r in (await all_rows(client, headers, provider_id)).items()} == {
        i: r["status"] for i, r in held.items()
    }
    assert (await connection(session, provider_id)).source_state["cursor"]
    again = await sync(client, headers, provider_id)
    assert again.json()["transactions"] == {"added": 0, "modified": 0, "removed": 0}


async def test_a_status_plaid_cannot_determine_still_writes_and_keeps_the_cursor(plaid, session):
    client = plaid
    headers, provider_id, login = await provider(client)
    await history(client, login, transactions="TRANSACTIONS_UPDATE_STATUS_UNKNOWN")
    await link(client, headers, provider_id, login)
    first = await sync(client, headers, provider_id)
    assert first.status_code == 200, first.text
    assert first.json()["transactions"]["added"] > 25
    assert (await connection(session, provider_id)).source_state["cursor"]
    # Stuck there, the item still moves on from its cursor: the pendings post.
    await control(client, login, "advance")
    moved = await sync(client, headers, provider_id)
    assert moved.json()["transactions"] == {"added": 1, "modified": 3, "removed": 1}


async def test_investment_history_that_comes_after_link_is_read_whole(plaid, app, session):
    client = plaid
    headers, provider_id, login = await provider(client)
    await history(client, login, investments="NOT_READY")
    await link(client, headers, provider_id, login, BOTH)
    # PRODUCT_NOT_READY: the investments wait, the bank's transactions are written.
    first = await sync(client, headers, provider_id)
    assert first.status_code == 200, first.text
    assert first.json()["transactions"]["added"] > 25
    assert (await connection(session, provider_id)).sync_error.startswith("PRODUCT_NOT_READY")
    brokerage = (await accounts_of(client, headers, provider_id))["Plaid Brokerage"]
    assert await transactions_of(client, headers, brokerage["id"]) == []

    await history(client, login, investments="INITIAL_UPDATE_COMPLETE")
    initial = await sync(client, headers, provider_id)
    assert initial.status_code == 200, initial.text
    assert (await connection(session, provider_id)).sync_error is None
    assert len(await transactions_of(client, headers, brokerage["id"])) == 3  # 30 days
    assert not (await connection(session, provider_id)).source_state["investments_complete"]

    # The rest arrives later, announced by Plaid's webhook: its sync reads two years again.
    await history(client, login, investments="HISTORICAL_UPDATE_COMPLETE")
    item_id = await item_of(session, provider_id)
    announced = await deliver(
        client, *await signed(client, item_id, "INVESTMENTS_HISTORICAL_UPDATE")
    )
    assert announced.json() == {"received": "sync"}
    await app.state.ctx.settle()
    rows = await transactions_of(client, headers, brokerage["id"])
    assert len(rows) == 4
    year_ago = (datetime.now(UTC) - timedelta(days=300)).isoformat()
    assert min(r["transacted_at"] for r in rows) < year_ago  # the buy of a year ago
    state = (await connection(session, provider_id)).source_state
    assert state["investments_complete"] is True


async def test_an_investments_only_item_is_not_asked_for_transactions(plaid):
    client = plaid
    headers, provider_id, login = await connected(client, ["investments"])
    synced = await sync(client, headers, provider_id)
    assert synced.status_code == 200, synced.text
    assert synced.json()["positions"] == 2
    calls = (await client.get(f"{PLAID}/_control/{login}")).json()["calls"]
    assert "transactions_sync" not in calls
    assert calls["investment_transactions"] == 1


async def test_a_cursor_whose_pages_keep_failing_is_dropped_for_a_whole_read(plaid, session):
    client = plaid
    headers, provider_id, login = await connected(client)
    assert (await sync(client, headers, provider_id)).status_code == 200
    # Every call from the cursor answers the mutation error (monetr#3126).
    await control(client, login, "fail", kind="MUTATION_AT_CURSOR", times=20)
    for _ in range(3):
        failed = await sync(client, headers, provider_id)
        assert is_problem(failed, 502)
        assert failed.json()["institution_error"] == "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION"
    assert (await connection(session, provider_id)).source_state["mutation_failures"] == 3
    # The fourth reads the item's whole history from no cursor, and keeps a new cursor.
    whole = await sync(client, headers, provider_id)
    assert whole.status_code == 200, whole.text
    assert whole.json()["transactions"] == {"added": 0, "modified": 0, "removed": 0}
    state = (await connection(session, provider_id)).source_state
    assert state["cursor"]
    assert "mutation_failures" not in state


async def test_a_rate_limit_holds_the_loop_off_for_plaids_minute(plaid, session):
    client = plaid
    headers, provider_id, login = await connected(client)
    await control(client, login, "fail", kind="TRANSACTIONS_SYNC_LIMIT")
    limited = await sync(client, headers, provider_id)
    assert is_problem(limited, 502)
    held = (await connection(session, provider_id)).budget_next_at
    # Plaid's per-item limits are per minute: the loop reads it no sooner (a source without a
    # daily budget too).
    assert held is not None
    assert held > datetime.now(UTC) + timedelta(seconds=50)
