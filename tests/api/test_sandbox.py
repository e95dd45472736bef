"""The sandbox institution is a real OAuth2 server: its refusals are tested here directly."""

import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from dashtam_api.connections.oauth import code_challenge, new_code_verifier
from tests.fixtures.app import asgi_client, running_app

AUTHORIZE = "/sandbox/oauth/authorize"


def params(settings, verifier: str, **overrides) -> dict:
    return {
        "response_type": "code",
        "client_id": settings.SANDBOX_CLIENT_ID,
        "redirect_uri": settings.CALLBACK_BASE_URL + "/oauth/callback",
        "state": "st<>ate",
        "scope": "accounts positions",
        "code_challenge": code_challenge(verifier),
        "code_challenge_method": "S256",
        **overrides,
    }


def client_auth(settings) -> tuple[str, str]:
    return settings.SANDBOX_CLIENT_ID, settings.SANDBOX_CLIENT_SECRET


async def approve(client, settings, verifier: str) -> str:
    page = await client.get(AUTHORIZE, params=params(settings, verifier))
    assert page.status_code == 200
    assert "st&lt;&gt;ate" in page.text  # escaped...
    assert "st<>ate" not in page.text  # ...never raw
    decision = await client.post(
        AUTHORIZE, data={**params(settings, verifier), "decision": "approve"}
    )
    assert decision.status_code == 303
    query = parse_qs(urlsplit(decision.headers["location"]).query)
    assert query["state"] == ["st<>ate"]
    return query["code"][0]


async def exchange(client, settings, code: str, verifier: str, **overrides):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": settings.CALLBACK_BASE_URL + "/oauth/callback",
        **overrides,
    }
    return await client.post("/sandbox/oauth/token", data=data, auth=client_auth(settings))


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"client_id": "someone-else"}, "Unknown client"),
        ({"redirect_uri": "https://evil.example/cb"}, "not registered"),
        ({"response_type": "token"}, "response_type=code"),
        ({"code_challenge_method": "plain"}, "PKCE with S256"),
        ({"scope": "accounts transfers"}, "Unknown scope"),
    ],
)
async def test_bad_authorization_requests_get_a_page_never_a_redirect(
    client, test_settings, override, reason
):
    response = await client.get(AUTHORIZE, params=params(test_settings, "v" * 43, **override))
    assert response.status_code == 400
    assert reason in response.text
    assert "location" not in response.headers


async def test_code_is_bound_to_verifier_redirect_and_single_use(client, test_settings):
    verifier = new_code_verifier()
    code = await approve(client, test_settings, verifier)
    wrong_verifier = await exchange(client, test_settings, code, new_code_verifier())
    assert wrong_verifier.json()["error"] == "invalid_grant"
    # A failed attempt used the code up, as RFC 6749 asks.
    assert (await exchange(client, test_settings, code, verifier)).status_code == 400

    code = await approve(client, test_settings, verifier)
    wrong_redirect = await exchange(
        client, test_settings, code, verifier, redirect_uri="https://localhost:1/oauth/callback"
    )
    assert wrong_redirect.json()["error_description"] == "redirect_uri does not match."

    code = await approve(client, test_settings, verifier)
    tokens = (await exchange(client, test_settings, code, verifier)).json()
    assert tokens["expires_in"] == 1800
    assert (await exchange(client, test_settings, code, verifier)).status_code == 400


async def test_client_authentication_is_required(client, test_settings):
    response = await client.post(
        "/sandbox/oauth/token",
        data={"grant_type": "refresh_token"},
        auth=(test_settings.SANDBOX_CLIENT_ID, "wrong"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_refresh_tokens_rotate_and_access_tokens_open_the_accounts_api(client, test_settings):
    verifier = new_code_verifier()
    code = await approve(client, test_settings, verifier)
    tokens = (await exchange(client, test_settings, code, verifier)).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    accounts = (await client.get("/sandbox/api/accounts", headers=bearer)).json()["accounts"]
    positions = await client.get(
        f"/sandbox/api/accounts/{accounts[1]['id']}/positions", headers=bearer
    )
    assert positions.json()["positions"][0]["symbol"] == "VTI"
    assert (
        await client.get("/sandbox/api/accounts/NOPE/positions", headers=bearer)
    ).status_code == 404
    assert (await client.get("/sandbox/api/accounts")).status_code == 401

    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    renewed = await client.post(
        "/sandbox/oauth/token", data=refresh, auth=client_auth(test_settings)
    )
    assert renewed.status_code == 200
    assert renewed.json()["refresh_token"] != tokens["refresh_token"]
    replay = await client.post(
        "/sandbox/oauth/token", data=refresh, auth=client_auth(test_settings)
    )
    assert replay.json()["error"] == "invalid_grant"

    revoked = await client.post(
        "/sandbox/oauth/revoke",
        auth=client_auth(test_settings),
        data={"token": renewed.json()["access_token"]},
    )
    assert revoked.status_code == 200
    renewed_bearer = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
    assert (await client.get("/sandbox/api/accounts", headers=renewed_bearer)).status_code == 401


async def test_injected_failures_count_down(client, test_settings):
    control = await client.post(
        "/sandbox/_control/fail",
        auth=client_auth(test_settings),
        json={"endpoint": "token", "status": 400, "error": "temporarily_unavailable", "times": 2},
    )
    assert control.status_code == 204
    for _ in range(2):
        failed = await client.post("/sandbox/oauth/token", data={})
        assert failed.json()["error"] == "temporarily_unavailable"
    assert (await client.post("/sandbox/oauth/token", data={})).json()["error"] == "invalid_client"
    # times 0 takes back what is left of an earlier injection.
    for times in (50, 0):
        control = await client.post(
            "/sandbox/_control/fail",
            auth=client_auth(test_settings),
            json={"endpoint": "token", "status": 503, "times": times},
        )
        assert control.status_code == 204
    assert (await client.post("/sandbox/oauth/token", data={})).json()["error"] == "invalid_client"
    refused = await client.post("/sandbox/_control/fail", json={"endpoint": "token"})
    assert refused.status_code == 401


@pytest.mark.parametrize(
    ("endpoint", "method", "path"),
    [
        ("token", "post", "/sandbox/oauth/token"),
        ("revoke", "post", "/sandbox/oauth/revoke"),
        ("api", "get", "/sandbox/api/accounts"),
    ],
)
async def test_the_sandbox_can_answer_garbage_or_late(
    client, test_settings, endpoint, method, path
):
    auth = client_auth(test_settings)
    control = await client.post(
        "/sandbox/_control/fail", auth=auth, json={"endpoint": endpoint, "malformed": True}
    )
    assert control.status_code == 204
    garbage = await getattr(client, method)(path)
    assert garbage.status_code == 200
    assert garbage.headers["content-type"].startswith("text/html")

    control = await client.post(
        "/sandbox/_control/delay", auth=auth, json={"endpoint": endpoint, "seconds": 0.3}
    )
    assert control.status_code == 204
    started = time.perf_counter()
    await getattr(client, method)(path)
    assert time.perf_counter() - started >= 0.3


async def test_denial_redirects_with_access_denied(client, test_settings):
    verifier = new_code_verifier()
    response = await client.post(
        AUTHORIZE, data={**params(test_settings, verifier), "decision": "deny"}
    )
    assert response.status_code == 303
    assert re.search(r"error=access_denied", response.headers["location"])
    assert "code=" not in response.headers["location"]


async def test_the_sandbox_does_not_exist_in_production(test_settings, connection):
    production = test_settings.model_copy(update={"ENVIRONMENT": "production"})
    async with running_app(production, connection) as app, asgi_client(app) as client:
        assert (await client.get(AUTHORIZE)).status_code == 404
        assert (await client.get("/docs")).status_code == 404
