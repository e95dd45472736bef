"""Manual accounts: made by the person, under a provider of kind file; no institution feeds them
(their transactions come from imported files: tests/api/test_imports.py)."""

from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in


async def manual_account(client, headers, **body) -> dict:
    answer = await client.post(
        "/api/v1/accounts",
        headers=headers,
        json={"name": "Credit union", "account_type": "checking", "currency": "USD", **body},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_a_manual_account_lives_under_a_provider_of_kind_file(client):
    headers = await signed_in(client, "manual")
    first = await manual_account(client, headers, opening_balance="1250.10")
    assert first["balance"]["current"] == "1250.10"
    assert first["number_masked"] is None
    second = await manual_account(client, headers, name="Cash", currency="EUR")
    assert second["provider_id"] == first["provider_id"]  # one "Manual accounts" provider
    provider = (
        await client.get(f"/api/v1/providers/{first['provider_id']}", headers=headers)
    ).json()
    assert (provider["provider_key"], provider["alias"], provider["status"]) == (
        "file",
        "Manual accounts",
        "active",
    )
    types = {
        t["key"]: t for t in (await client.get("/api/v1/provider-types", headers=headers)).json()
    }
    assert (types["file"]["kind"], types["file"]["supplies"], types["file"]["configured"]) == (
        "file",
        ["file"],
        True,
    )
    listed = (await client.get("/api/v1/accounts", headers=headers)).json()
    assert {a["name"] for a in listed["items"]} == {"Credit union", "Cash"}

    # Nothing to authorize or sync at a provider of files; a synced provider holds no manual one.
    path = f"/api/v1/providers/{first['provider_id']}"
    is_problem(await client.post(f"{path}/authorization", headers=headers), 409)
    is_problem(await client.post(f"{path}/sync", headers=headers), 409)
    sandbox = (
        await client.post(
            "/api/v1/providers", headers=headers, json={"provider_key": "sandbox", "alias": "B"}
        )
    ).json()
    refused = await client.post(
        "/api/v1/accounts",
        headers=headers,
        json={
            "name": "X",
            "account_type": "checking",
            "currency": "USD",
            "provider_id": sandbox["id"],
        },
    )
    is_problem(refused, 409)
    bad = await client.post(
        "/api/v1/accounts",
        headers=headers,
        json={"name": "X", "account_type": "checking", "currency": "usd"},
    )
    is_problem(bad, 422)
