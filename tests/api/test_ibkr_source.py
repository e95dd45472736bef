"""Interactive Brokers' Flex Web Service as a provider type (issue 36): kind api_token, what a
person supplies to connect it. Its connect and reader land later: until then connecting one is
a clear conflict, never a 500 or an OAuth2 authorization."""

import uuid

from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in


async def ibkr_provider(client, headers) -> str:
    answer = await client.post(
        "/api/v1/providers", headers=headers, json={"provider_key": "ibkr", "alias": "IBKR"}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def test_the_provider_type_is_listed_with_its_kind(client, auth_headers):
    types = (await client.get("/api/v1/provider-types", headers=auth_headers)).json()
    ibkr = next(t for t in types if t["key"] == "ibkr")
    assert (ibkr["name"], ibkr["kind"], ibkr["configured"], ibkr["supplies"]) == (
        "Interactive Brokers (Flex)",
        "api_token",
        True,
        ["token", "query_id"],
    )
    # No reader yet: nothing says it syncs, nothing of OAuth2.
    assert ibkr["supports"] == {
        "pkce": False,
        "refresh": False,
        "revocation": False,
        "sync": False,
        "client_auth": None,
    }


async def test_connecting_one_is_a_clear_conflict_until_its_connect_lands(client):
    headers = await signed_in(client, f"ibkr-{uuid.uuid4().hex[:6]}")
    provider_id = await ibkr_provider(client, headers)
    bare = await client.post(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    assert is_problem(bare, 409)
    assert "kind api_token cannot be connected" in bare.json()["detail"]
    # A setup token (SimpleFIN's body) on it: the same conflict, not a claim of the token.
    wrong = await client.post(
        f"/api/v1/providers/{provider_id}/authorization",
        headers=headers,
        json={"setup_token": "aHR0cHM6Ly9leGFtcGxlLmNvbQ=="},
    )
    assert is_problem(wrong, 409)
    assert "kind api_token" in wrong.json()["detail"]
