"""The connect flow in-process, against a local server that answers like the institution."""

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, text

from dashtam_api.connections.oauth import code_challenge
from dashtam_models import ProviderAuditLog, ProviderConnection, ProviderToken
from tests.api.test_auth import is_problem
from tests.fixtures.institution import DROP, GOOD_CODE, SLOW, client_of, institution_settings


async def signed_in(client, who: str = "conn") -> dict:
    email, password = f"{who}-{id(client)}@example.com", "correct horse battery"
    await client.post("/api/v1/auth/register", json={"email": email, "password": password})
    tokens = (
        await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    ).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def start(client, headers, key: str) -> tuple[str, dict]:
    provider = (
        await client.post(
            "/api/v1/providers", headers=headers, json={"provider_key": key, "alias": f"My {key}"}
        )
    ).json()
    response = await client.post(
        f"/api/v1/providers/{provider['id']}/authorization", headers=headers
    )
    assert response.status_code == 201, response.text
    return provider["id"], parse_qs(urlsplit(response.json()["authorization_url"]).query)


async def callback(client, settings, secret: str | None = "from-settings", **body):
    headers = {}
    if secret:
        headers["X-Dashtam-Callback-Secret"] = (
            settings.CALLBACK_SHARED_SECRET if secret == "from-settings" else secret
        )
    return await client.post("/api/v1/oauth/callback", json=body, headers=headers)


async def test_schwab_flow_uses_basic_auth_and_keeps_tokens_sealed(
    institution_client, institution, test_settings, session
):
    client = institution_client
    headers = await signed_in(client)
    provider_id, query = await start(client, headers, "schwab")
    assert query["client_id"] == ["schwab-client"]
    assert query["redirect_uri"] == [test_settings.CALLBACK_BASE_URL + "/oauth/callback"]
    assert "code_challenge" not in query  # Schwab takes no PKCE

    outcome = await callback(client, test_settings, state=query["state"][0], code=GOOD_CODE)
    assert outcome.status_code == 200, outcome.text
    assert outcome.json()["outcome"] == "connected"
    exchange = institution.requests[-1]
    assert institution.basic_credentials(exchange) == ("schwab-client", "schwab-secret")
    assert exchange["form"]["grant_type"] == "authorization_code"
    assert "client_secret" not in exchange["form"]

    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert status["status"] == "active"
    now = datetime.now(UTC)
    expires = datetime.fromisoformat(status["expires_at"])
    refresh_expires = datetime.fromisoformat(status["refresh_expires_at"])
    assert timedelta(minutes=29) < expires - now <= timedelta(minutes=30)
    assert timedelta(days=6, hours=23) < refresh_expires - now <= timedelta(days=7)

    issued = institution.issued[-1]
    row = await session.scalar(select(ProviderToken))
    for column in (row.access_token_encrypted, row.refresh_token_encrypted):
        assert issued["access_token"].encode() not in column
        assert issued["refresh_token"].encode() not in column
    actions = (await session.scalars(select(ProviderAuditLog.action))).all()
    assert actions == ["connected"]


async def test_generic_institution_with_post_auth_and_pkce(
    institution_client, institution, test_settings
):
    client = institution_client
    headers = await signed_in(client)
    _, query = await start(client, headers, "acme")
    assert query["code_challenge_method"] == ["S256"]
    await callback(client, test_settings, state=query["state"][0], code=GOOD_CODE)
    exchange = institution.requests[-1]
    assert institution.basic_credentials(exchange) is None
    assert exchange["form"]["client_id"] == "acme-client"
    assert exchange["form"]["client_secret"] == "acme-secret"
    # The verifier stayed on the server until the exchange, and matches the challenge sent.
    assert code_challenge(exchange["form"]["code_verifier"]) == query["code_challenge"][0]


async def test_state_is_kept_ten_minutes_and_works_once(
    institution_client, test_settings, redis_client
):
    client = institution_client
    headers = await signed_in(client)
    _, query = await start(client, headers, "schwab")
    state = query["state"][0]
    assert 590 <= await redis_client.ttl(f"oauth:state:{state}") <= 600
    denied = await callback(client, test_settings, state=state, error="access_denied")
    assert denied.status_code == 200
    replay = await callback(client, test_settings, state=state, code=GOOD_CODE)
    assert "already used" in is_problem(replay, 400)["detail"]


async def test_unknown_state_is_400_and_nothing_is_stored(
    institution_client, test_settings, session
):
    response = await callback(institution_client, test_settings, state="forged", code=GOOD_CODE)
    is_problem(response, 400)
    assert await session.scalar(text("SELECT count(*) FROM provider_tokens")) == 0
    assert await session.scalar(text("SELECT count(*) FROM provider_audit_logs")) == 0


@pytest.mark.parametrize("secret", [None, "wrong-secret"])
async def test_only_the_callback_server_may_complete(institution_client, test_settings, secret):
    response = await callback(institution_client, test_settings, secret=secret, state="s", code="c")
    is_problem(response, 403)


async def test_denied_authorization_stays_pending_and_is_audited(
    institution_client, test_settings, session
):
    client = institution_client
    headers = await signed_in(client)
    provider_id, query = await start(client, headers, "schwab")
    response = await callback(
        client,
        test_settings,
        state=query["state"][0],
        error="access_denied",
        error_description="<b>no</b>",
        client_ip="203.0.113.9",
        user_agent="Browser/1.0",
    )
    assert response.json()["outcome"] == "denied"
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert status["status"] == "pending"
    audit = await session.scalar(select(ProviderAuditLog))
    assert audit.action == "authorization_denied"
    assert audit.details["error"] == "access_denied"
    assert str(audit.ip_address) == "203.0.113.9"
    assert audit.user_agent == "Browser/1.0"


async def test_unconfigured_provider_cannot_start(client, auth_headers):
    provider = (
        await client.post(
            "/api/v1/providers", headers=auth_headers, json={"provider_key": "schwab", "alias": "S"}
        )
    ).json()
    response = await client.post(
        f"/api/v1/providers/{provider['id']}/authorization", headers=auth_headers
    )
    assert "not configured" in is_problem(response, 409)["detail"]


async def test_revoke_calls_the_institution_and_forgets_the_tokens(
    institution_client, institution, test_settings, session
):
    client = institution_client
    headers = await signed_in(client)
    provider_id, query = await start(client, headers, "acme")
    await callback(client, test_settings, state=query["state"][0], code=GOOD_CODE)
    path = f"/api/v1/providers/{provider_id}/authorization"
    assert (await client.delete(path, headers=headers)).status_code == 204
    revocation = institution.requests[-1]
    assert revocation["path"] == "/revoke"
    assert revocation["form"]["token"] == institution.issued[-1]["refresh_token"]
    assert (await client.get(path, headers=headers)).json()["status"] == "revoked"
    assert await session.scalar(text("SELECT count(*) FROM provider_tokens")) == 0
    audit = (
        await session.scalars(select(ProviderAuditLog).order_by(ProviderAuditLog.created_at))
    ).all()
    assert audit[-1].action == "revoked"
    assert audit[-1].details == {"at_institution": "revoked"}
    again = is_problem(await client.delete(path, headers=headers), 409)
    assert again["connection_status"] == "revoked"
    # Never connected: nothing to revoke either, and the provider is still there (not a 404).
    someone = await signed_in(client, "someone")
    pending_id, _ = await start(client, someone, "acme")
    pending = f"/api/v1/providers/{pending_id}/authorization"
    assert is_problem(await client.delete(pending, headers=someone), 409)["connection_status"] == (
        "pending"
    )


@pytest.mark.commits
@pytest.mark.parametrize(
    ("answer", "status", "institution_error"),
    [
        (
            (400, {"error": "invalid_grant", "error_description": "code expired"}),
            502,
            "invalid_grant",
        ),
        ((500, "<html>Internal Server Error</html>"), 502, "http_500"),
        ((200, "<html>Down for maintenance</html>"), 502, "invalid_response"),
        ((DROP, None), 502, "unreachable"),
        ((SLOW, 1.2), 504, "timeout"),  # the client waits 0.4 s
    ],
)
async def test_institution_failure_is_a_problem_and_its_audit_row_survives_the_rollback(
    test_settings, connection, institution, engine, answer, status, institution_error
):
    settings = institution_settings(test_settings, institution, OAUTH_HTTP_TIMEOUT_SECONDS=0.4)
    async with client_of(settings, connection) as client:
        headers = await signed_in(client)
        provider_id, query = await start(client, headers, "schwab")
        institution.token_responses.append(answer)
        response = await callback(client, test_settings, state=query["state"][0], code=GOOD_CODE)
    assert is_problem(response, status)["institution_error"] == institution_error
    assert "schwab-secret" not in response.text
    # An authorization code is spent when the institution reads it: never sent twice.
    assert sum(1 for r in institution.requests if r["path"] == "/token") == 1
    async with engine.connect() as other:
        rows = (
            await other.execute(
                text("SELECT action, details FROM provider_audit_logs WHERE provider_id = :id"),
                {"id": provider_id},
            )
        ).all()
        connection_status = await other.scalar(
            select(ProviderConnection.status).where(ProviderConnection.provider_id == provider_id)
        )
        tokens = await other.scalar(text("SELECT count(*) FROM provider_tokens"))
    assert [(r.action, r.details["error"]) for r in rows] == [
        ("authorization_failed", institution_error)
    ]
    assert connection_status == "error"
    assert tokens == 0


async def test_nul_characters_never_reach_the_database_as_a_500(
    institution_client, test_settings, session
):
    client = institution_client
    headers = await signed_in(client)
    bad = await client.post(
        "/api/v1/providers", headers=headers, json={"provider_key": "schwab", "alias": "a\x00b"}
    )
    is_problem(bad, 422)
    _, query = await start(client, headers, "schwab")
    response = await callback(
        client,
        test_settings,
        state=query["state"][0],
        error="access_denied\x00",
        error_description="x\x00y",
        user_agent="UA\x00",
    )
    assert response.status_code == 200
    audit = await session.scalar(select(ProviderAuditLog))
    assert audit.details["error_description"] == "xy"
    assert audit.user_agent == "UA"
