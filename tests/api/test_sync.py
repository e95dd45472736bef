"""Syncing from a local server that answers like Schwab's Trader API, and reading the result.

Amounts arrive as JSON numbers; they must land in NUMERIC columns and leave as strings with
exactly the digits sent (a float anywhere on the way would change 99999999999999.99).
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, text, update

from dashtam_models import Account, BalanceSnapshot, Position, ProviderToken
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in, start
from tests.api.test_refresh import connected_schwab


async def synced(client, headers, provider_id) -> dict:
    response = await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_schwab_sync_maps_accounts_balances_and_positions_exactly(
    institution_client, institution, test_settings, session
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    result = await synced(client, headers, provider_id)
    assert (result["accounts"], result["positions"], result["refreshed"]) == (2, 2, False)

    data_calls = [r for r in institution.requests if r["path"].startswith("/trader")]
    assert [c["path"] for c in data_calls[:2]] == [
        "/trader/v1/accounts/accountNumbers",
        "/trader/v1/accounts",
    ]
    # Then each account's transactions (tests/api/test_transactions.py).
    assert {c["path"].split("/")[-1] for c in data_calls[2:]} == {"transactions"}
    assert data_calls[1]["query"] == {"fields": "positions"}
    bearer = f"Bearer {institution.issued[-1]['access_token']}"
    assert all(c["headers"]["authorization"] == bearer for c in data_calls)

    page = (await client.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)).json()
    assert page["total"] == 2
    margin, cash = (
        page["items"] if page["items"][0]["account_type"] == "margin" else page["items"][::-1]
    )
    assert margin["number_masked"] == "••••5678"
    assert margin["name"] == "Schwab margin …5678"
    assert margin["balance"] == {
        "as_of": margin["synced_at"],
        "currency": "USD",
        "current": "3415.68",
        "available": "3415.68",
        "cash": "0.1",
        "buying_power": "6831.36",
    }
    # Fourteen digits and two decimals: a float would have lost the last cent.
    assert cash["balance"]["current"] == "99999999999999.99"

    positions = (
        await client.get(f"/api/v1/accounts/{margin['id']}/positions", headers=headers)
    ).json()
    aapl, swvxx = positions["items"]
    assert aapl == {
        "symbol": "AAPL",
        "description": "Apple Inc",
        "asset_type": "equity",
        "quantity": "10.5",
        "price": "230.054286",  # derived: market value / quantity, 6 places
        "market_value": "2415.57",
        "cost_basis": "1576.2962962845",  # average price x quantity, exactly
        "currency": "USD",
        "as_of": margin["synced_at"],
    }
    assert (swvxx["symbol"], swvxx["asset_type"], swvxx["quantity"]) == (
        "SWVXX",
        "cash_equivalent",
        "1000.01",
    )

    # In the database: NUMERIC columns holding Decimals, the full number nowhere.
    stored = await session.scalar(select(Position).where(Position.symbol == "AAPL"))
    assert stored.quantity == Decimal("10.5")
    assert isinstance(stored.market_value, Decimal)
    kinds = await session.execute(
        text(
            "SELECT DISTINCT data_type FROM information_schema.columns WHERE table_name IN "
            "('positions', 'balance_snapshots') AND column_name IN ('quantity', 'price', "
            "'market_value', 'cost_basis', 'current', 'cash', 'available', 'buying_power')"
        )
    )
    assert {k for (k,) in kinds} == {"numeric"}
    accounts = (await session.scalars(select(Account))).all()
    assert {a.external_id for a in accounts} == {
        "E5B3F2A1C0D9E8F7A6B5C4D3E2F1A0B9",
        "0F1E2D3C4B5A69788796A5B4C3D2E1F0",
    }
    dump = str([(a.name, a.number_last4, a.external_id) for a in accounts])
    assert "12345678" not in dump
    assert "87654321" not in dump


async def test_an_expired_access_token_is_refreshed_on_the_way(
    institution_client, institution, test_settings, session
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    await session.execute(
        update(ProviderToken).values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
    )
    result = await synced(client, headers, provider_id)
    assert result["refreshed"] is True
    paths = [r["path"] for r in institution.requests]
    refresh_at = max(i for i, r in enumerate(institution.requests) if r["path"] == "/token")
    assert paths[refresh_at + 1 :][:2] == [
        "/trader/v1/accounts/accountNumbers",
        "/trader/v1/accounts",
    ]
    assert "/token" not in paths[refresh_at + 1 :]
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert datetime.fromisoformat(status["expires_at"]) > datetime.now(UTC) + timedelta(minutes=29)


async def test_a_refused_access_token_is_refreshed_once_and_the_sync_retried(
    institution_client, institution, test_settings
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    institution.data_responses.append((401, {"errors": [{"title": "token revoked"}]}))
    result = await synced(client, headers, provider_id)
    assert (result["refreshed"], result["accounts"]) == (True, 2)
    assert len(institution.refresh_calls()) == 1


async def test_a_second_sync_adds_a_snapshot_and_closes_vanished_accounts(
    institution_client, institution, test_settings, session
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    await synced(client, headers, provider_id)
    only_margin = institution.accounts_json.split(',\n {"securitiesAccount": {"type": "CASH"')[0]
    institution.accounts_json = only_margin + "]"
    await synced(client, headers, provider_id)
    page = (await client.get("/api/v1/accounts", headers=headers)).json()
    closed = {a["account_type"]: a["closed_at"] for a in page["items"]}
    assert closed["margin"] is None
    assert closed["cash"] is not None
    snapshots = await session.scalar(select(text("count(*)")).select_from(BalanceSnapshot))
    assert snapshots == 3  # two accounts, then one
    assert await session.scalar(select(text("count(*)")).select_from(Position)) == 2


async def test_accounts_page_and_someone_elses_are_404(institution_client, test_settings, session):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    await synced(client, headers, provider_id)
    first = (await client.get("/api/v1/accounts?limit=1", headers=headers)).json()
    second = (await client.get("/api/v1/accounts?limit=1&offset=1", headers=headers)).json()
    assert (first["total"], len(first["items"]), len(second["items"])) == (2, 1, 1)
    assert first["items"][0]["id"] != second["items"][0]["id"]
    beyond = (await client.get("/api/v1/accounts?offset=5", headers=headers)).json()
    assert (beyond["items"], beyond["total"]) == ([], 2)
    account_id = first["items"][0]["id"]

    stranger = await signed_in(client, "stranger")
    assert (await client.get("/api/v1/accounts", headers=stranger)).json()["items"] == []
    for path in (
        f"/api/v1/accounts/{account_id}",
        f"/api/v1/accounts/{account_id}/positions",
        f"/api/v1/providers/{provider_id}/accounts",
    ):
        is_problem(await client.get(path, headers=stranger), 404)
    is_problem(await client.post(f"/api/v1/providers/{provider_id}/sync", headers=stranger), 404)
    mine = await client.get(f"/api/v1/accounts/{account_id}", headers=headers)
    assert mine.status_code == 200


async def test_a_generic_institution_has_nothing_to_sync(institution_client):
    client = institution_client
    headers = await signed_in(client)
    provider_id, _ = await start(client, headers, "acme")
    problem = is_problem(
        await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers), 409
    )
    assert "no data API" in problem["detail"]


async def test_sync_needs_an_active_connection(institution_client):
    client = institution_client
    headers = await signed_in(client)
    provider_id, _ = await start(client, headers, "schwab")
    problem = is_problem(
        await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers), 409
    )
    assert problem["action"] == "connect"


async def test_an_institution_failure_is_502_and_recorded(
    institution_client, institution, test_settings
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    # Down for longer than the retries (tests/api/test_institution_faults.py has the rest).
    institution.data_responses.extend([(503, {"message": "down"})] * 3)
    problem = is_problem(
        await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers), 502
    )
    assert (problem["institution_error"], problem["transient"]) == ("http_503", True)
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert status["sync_error"].startswith("http_503")
    # The claim was given back: the person can try again at once.
    assert (await synced(client, headers, provider_id))["accounts"] == 2


async def test_a_float_or_garbage_amount_is_refused_not_guessed(
    institution_client, institution, test_settings
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    institution.accounts_json = institution.accounts_json.replace(
        '"marketValue": 2415.57', '"marketValue": "a lot"'
    )
    problem = is_problem(
        await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers), 502
    )
    assert problem["institution_error"] == "invalid_response"
