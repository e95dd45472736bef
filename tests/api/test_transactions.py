"""Transactions from the Schwab look-alike (its shapes, its window rules) and the API that serves
them: cursor pages, filters, exact amounts, nobody else's."""

import itertools
import json
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from dashtam_api.transactions.schemas import TransactionOut
from dashtam_models import Transaction
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.api.test_refresh import connected_schwab
from tests.api.test_sync import synced
from tests.fixtures.institution import (
    DROP,
    PASS,
    SCHWAB_ACCOUNT_NUMBERS,
    SCHWAB_TRANSACTIONS_JSON,
)

SCHWAB_QUERY_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MARGIN_HASH = SCHWAB_ACCOUNT_NUMBERS[0]["hashValue"]


def transaction_calls(institution) -> list[dict]:
    return [r for r in institution.requests if r["path"].endswith("/transactions")]


def window_of(call) -> tuple[datetime, datetime]:
    q = call["query"]
    return tuple(
        datetime.fromisoformat(q[k].replace("Z", "+00:00")) for k in ("startDate", "endDate")
    )


async def item_json_missing(session) -> set[str]:
    """The kinds of the transactions that have no stored JSON."""
    found = await session.execute(text("SELECT kind FROM transactions WHERE item_json IS NULL"))
    await session.commit()
    return {kind for (kind,) in found}


async def listed(client, headers, path="/api/v1/transactions", **params) -> dict:
    response = await client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_schwab_activity_is_read_a_year_back_in_windows_then_incrementally(
    institution_client, institution, test_settings
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    before = datetime.now(UTC)
    first = await synced(client, headers, provider_id)
    assert first["transactions"] == {"added": 3, "modified": 0, "removed": 0}

    calls = [c for c in transaction_calls(institution) if MARGIN_HASH in c["path"]]
    windows = [window_of(c) for c in calls]
    assert all(
        SCHWAB_QUERY_TIME.match(c["query"][k]) for c in calls for k in ("startDate", "endDate")
    )
    assert all("DIVIDEND_OR_INTEREST" in c["query"]["types"] for c in calls)
    assert all(end - start <= timedelta(days=60) for start, end in windows)
    # One unbroken year, up to now.
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    assert windows[0][0] <= before - timedelta(days=364)
    assert windows[-1][1] >= before - timedelta(seconds=5)

    page = await listed(client, headers)
    by_kind = {t["kind"]: t for t in page["items"]}
    assert [t["kind"] for t in page["items"]] == ["deposit", "trade", "dividend"]  # newest first
    trade = by_kind["trade"]
    assert {
        k: trade[k] for k in ("amount", "symbol", "asset_type", "quantity", "price", "fees")
    } == {
        "amount": "-1580.7865",
        "symbol": "AAPL",
        "asset_type": "equity",
        "quantity": "7",
        "price": "225.1157142857",
        "fees": "4.9765",  # the commission and the SEC fee legs
    }
    assert trade["institution_type"] == "TRADE"
    assert trade["status"] == "posted"
    assert trade["transacted_at"].endswith("T14:30:00Z")
    assert trade["posted_at"].endswith("T15:04:05Z")  # "+0000" read as UTC
    assert trade["settlement_date"] == (datetime.now(UTC) - timedelta(days=9)).date().isoformat()
    assert (by_kind["dividend"]["amount"], by_kind["dividend"]["symbol"]) == ("2.63", "AAPL")
    assert (by_kind["deposit"]["status"], by_kind["deposit"]["posted_at"]) == ("pending", None)

    # The second sync reads from the newest posted one (the trade, 10 days back) less the
    # overlap (10 days): earlier than the oldest pending (5 days back), so that one too.
    institution.requests.clear()
    second = await synced(client, headers, provider_id)
    assert second["transactions"] == {"added": 0, "modified": 0, "removed": 0}
    (call,) = [c for c in transaction_calls(institution) if MARGIN_HASH in c["path"]]
    newest_posted = datetime.fromisoformat(trade["posted_at"].replace("Z", "+00:00"))
    assert window_of(call)[0] == newest_posted - timedelta(days=10)

    # The deposit posts (Schwab keeps its id): modified, not added.
    institution.transactions_json[MARGIN_HASH] = SCHWAB_TRANSACTIONS_JSON.replace(
        '"PENDING"', '"VALID"'
    )
    third = await synced(client, headers, provider_id)
    assert third["transactions"] == {"added": 0, "modified": 1, "removed": 0}
    deposit = (await listed(client, headers, kind="deposit"))["items"]
    assert [(d["status"], d["id"]) for d in deposit] == [("posted", by_kind["deposit"]["id"])]


async def test_pages_by_cursor_filters_and_nobody_elses(institution_client, test_settings, session):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    await synced(client, headers, provider_id)
    # The sync wrote each row's JSON with it (the page reads it as it is).
    assert await item_json_missing(session) == set()
    # A fraction of a second on one timestamp: the form with a fraction too.
    await session.execute(
        text(
            "UPDATE transactions SET transacted_at = transacted_at + interval '0.00012 s'"
            " WHERE kind = 'trade'"
        )
    )
    # The page's items travel separated by an ASCII record separator: one in a description
    # stays inside its JSON string.
    await session.execute(
        text("UPDATE transactions SET memo = E'tab\\x1e{\"x\": 1},' WHERE kind = 'dividend'")
    )
    await session.commit()
    # Changed without its JSON: the JSON is gone (a trigger), and the page writes it anew.
    assert await item_json_missing(session) == {"trade", "dividend"}
    everything = (await listed(client, headers))["items"]
    assert [t["memo"] for t in everything if t["kind"] == "dividend"] == ['tab\x1e{"x": 1},']

    # PostgreSQL writes the items: what pydantic writes for the same rows, but for a fraction of
    # a second, which keeps its significant digits only (.00012Z for pydantic's .000120Z).
    rows = (await session.execute(select(Transaction))).scalars().all()
    expected = {
        str(row.id): json.loads(
            TransactionOut.model_validate(row, from_attributes=True).model_dump_json()
        )
        for row in rows
    }
    trade = next(t for t in everything if t["kind"] == "trade")
    assert trade["transacted_at"].endswith(":00.00012Z")
    assert expected[trade["id"]]["transacted_at"].endswith(":00.000120Z")
    expected[trade["id"]]["transacted_at"] = trade["transacted_at"]
    assert {t["id"]: t for t in everything} == expected
    stamps = [t[k] for t in everything for k in ("occurred_at", "posted_at") if t[k]]
    assert stamps
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s) for s in stamps)

    seen, cursor = [], None
    while True:
        page = await listed(client, headers, limit=1, **({"cursor": cursor} if cursor else {}))
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [t["id"] for t in everything]

    trade = next(t for t in everything if t["kind"] == "trade")
    assert [t["id"] for t in (await listed(client, headers, kind="trade"))["items"]] == [
        trade["id"]
    ]
    assert len((await listed(client, headers, symbol="aapl"))["items"]) == 2
    assert [t["kind"] for t in (await listed(client, headers, q="qualified"))["items"]] == [
        "dividend"
    ]
    assert [t["kind"] for t in (await listed(client, headers, status="pending"))["items"]] == [
        "deposit"
    ]
    day = trade["occurred_at"][:10]
    assert [
        t["id"] for t in (await listed(client, headers, **{"from": day, "to": day}))["items"]
    ] == [trade["id"]]
    one = await client.get(f"/api/v1/transactions/{trade['id']}", headers=headers)
    assert one.json() == trade
    # The next sync writes the missing JSON again: the same items, read as stored.
    await synced(client, headers, provider_id)
    assert await item_json_missing(session) == set()
    assert (await listed(client, headers))["items"] == everything
    assert (
        await client.get(f"/api/v1/transactions/{trade['id']}", headers=headers)
    ).json() == trade
    account = await listed(client, headers, f"/api/v1/accounts/{trade['account_id']}/transactions")
    assert len(account["items"]) == 3

    bad = await client.get(
        "/api/v1/transactions", headers=headers, params={"cursor": "bm90IG91cnM"}
    )
    assert is_problem(bad, 400)["parameter"] == "cursor"
    unknown = await client.get("/api/v1/transactions", headers=headers, params={"limt": 5})
    assert unknown.status_code == 422

    stranger = await signed_in(client, "stranger")
    assert (await listed(client, stranger))["items"] == []
    for path in (
        f"/api/v1/transactions/{trade['id']}",
        f"/api/v1/accounts/{trade['account_id']}/transactions",
    ):
        answer = await client.get(path, headers=stranger)
        is_problem(answer, 404)


async def test_a_sync_cut_off_half_way_writes_nothing_and_the_next_completes_it(
    institution_client, institution, test_settings, session
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    # accountNumbers, accounts, three of the margin account's windows, then the connection
    # drops in the middle of the fourth, each time it is asked again too.
    attempts = test_settings.INSTITUTION_RETRIES + 1
    institution.data_responses += [(PASS, None)] * 5 + [(DROP, None)] * attempts
    cut = await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers)
    is_problem(cut, 502)
    count = "SELECT count(*) FROM transactions"
    assert (await session.execute(text(count))).scalar() == 0
    assert (await session.execute(text("SELECT count(*) FROM accounts"))).scalar() == 0

    done = await synced(client, headers, provider_id)
    assert done["transactions"] == {"added": 3, "modified": 0, "removed": 0}
    assert (await session.execute(text(count))).scalar() == 3
