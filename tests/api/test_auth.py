"""Users: register, log in, refresh (rotating), log out, me; throttling; every error a problem."""

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

PASSWORD = "correct horse battery"


def is_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    return body


async def test_register_returns_the_user_without_secrets(client):
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "Ann@Example.com", "password": PASSWORD, "name": "Ann"},
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id",
        "email",
        "name",
        "is_admin",
        "totp_enabled",
        "email_verified",
        "created_at",
    }
    assert body["email"] == "Ann@example.com"  # the domain is normalised, the local part kept


async def test_the_same_email_in_another_case_is_a_conflict(client, sign_up):
    await sign_up("bob@example.com")
    response = await client.post(
        "/api/v1/auth/register", json={"email": "BOB@example.com", "password": PASSWORD}
    )
    is_problem(response, 409)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "a@example.com", "password": "short"},
        {"email": "a@example.com"},
        {"email": "a@example.com", "password": PASSWORD, "is_admin": True},
        {"email": ["a@example.com"], "password": PASSWORD},
    ],
)
async def test_invalid_registrations_are_422_problems(client, body):
    problem = is_problem(await client.post("/api/v1/auth/register", json=body), 422)
    assert problem["errors"]


async def test_malformed_json_is_a_422_problem(client):
    response = await client.post(
        "/api/v1/auth/register", content=b"{oops", headers={"content-type": "application/json"}
    )
    is_problem(response, 422)


async def test_login_gives_a_short_lived_jwt_and_an_opaque_refresh_token(
    client, sign_up, test_settings
):
    _, tokens, _ = await sign_up()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == test_settings.ACCESS_TOKEN_MINUTES * 60
    claims = jwt.decode(tokens["access_token"], test_settings.SECRET_KEY, algorithms=["HS256"])
    assert claims["type"] == "access"
    assert "." not in tokens["refresh_token"]  # opaque, not a JWT


async def test_refresh_tokens_are_stored_only_as_hashes(client, sign_up, session):
    from sqlalchemy import text

    _, tokens, _ = await sign_up()
    stored = await session.scalar(text("SELECT string_agg(token_hash, ',') FROM refresh_tokens"))
    assert tokens["refresh_token"] not in stored
    assert len(stored.split(",")[0]) == 64


async def test_wrong_password_is_401_with_www_authenticate(client, sign_up):
    _, _, (email, _) = await sign_up()
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": "nope!"})
    is_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_unknown_email_is_the_same_401(client):
    response = await client.post(
        "/api/v1/auth/login", json={"email": "ghost@example.com", "password": PASSWORD}
    )
    assert is_problem(response, 401)["detail"] == "Wrong e-mail or password."


async def test_repeated_failures_are_throttled_with_retry_after(client, sign_up, test_settings):
    _, _, (email, password) = await sign_up()
    for _ in range(test_settings.LOGIN_MAX_FAILURES):
        response = await client.post("/api/v1/auth/login", json={"email": email, "password": "x"})
        assert response.status_code == 401
    # Even the right password waits now.
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    problem = is_problem(response, 429)
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= test_settings.LOGIN_LOCKOUT_SECONDS
    assert problem["retry_after"] == retry_after


async def test_refresh_rotates_and_the_old_token_stops_working(client, sign_up):
    _, tokens, _ = await sign_up()
    first = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {rotated['access_token']}"}
    )
    assert me.status_code == 200


async def test_reusing_a_rotated_token_revokes_the_whole_family(client, sign_up):
    _, tokens, _ = await sign_up()
    rotated = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).json()
    replay = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert "already used" in is_problem(replay, 401)["detail"]
    # The thief's replay also ended the legitimate holder's newer token.
    is_problem(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}),
        401,
    )


async def test_unknown_refresh_token_is_401(client):
    is_problem(await client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 43}), 401)


async def test_logout_ends_the_session(client, sign_up):
    headers, tokens, _ = await sign_up()
    response = await client.post(
        "/api/v1/auth/logout", headers=headers, json={"refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 204
    is_problem(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
        401,
    )


async def test_logout_cannot_end_another_users_session(client, sign_up):
    _, ann_tokens, _ = await sign_up()
    bob_headers, _, _ = await sign_up()
    response = await client.post(
        "/api/v1/auth/logout",
        headers=bob_headers,
        json={"refresh_token": ann_tokens["refresh_token"]},
    )
    assert response.status_code == 204
    still = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": ann_tokens["refresh_token"]}
    )
    assert still.status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer a.b.c",
    ],
)
async def test_me_requires_a_valid_bearer_token(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get("/api/v1/auth/me", headers=headers)
    is_problem(response, 401)
    assert "Bearer" in response.headers["www-authenticate"]


async def test_expired_and_forged_tokens_are_401(client, sign_up, test_settings):
    _, tokens, _ = await sign_up()
    claims = jwt.decode(tokens["access_token"], test_settings.SECRET_KEY, algorithms=["HS256"])
    expired = jwt.encode(
        {**claims, "exp": datetime.now(UTC) - timedelta(seconds=5)},
        test_settings.SECRET_KEY,
        algorithm="HS256",
    )
    forged = jwt.encode(claims, "not-the-secret-key-at-all-not-at-all", algorithm="HS256")
    for token, words in ((expired, "expired"), (forged, "not valid")):
        response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert words in is_problem(response, 401)["detail"]


async def test_a_token_verified_once_is_still_refused_once_it_expires(
    client, sign_up, test_settings, monkeypatch
):
    """The signature is checked once per token (then remembered); the expiry on every use."""
    _, tokens, _ = await sign_up()
    claims = jwt.decode(tokens["access_token"], test_settings.SECRET_KEY, algorithms=["HS256"])
    soon = jwt.encode(
        {**claims, "exp": datetime.now(UTC) + timedelta(seconds=30)},
        test_settings.SECRET_KEY,
        algorithm="HS256",
    )
    headers = {"Authorization": f"Bearer {soon}"}
    for path in ("/api/v1/auth/me", "/api/v1/providers"):
        assert (await client.get(path, headers=headers)).status_code == 200
    later = time.time() + 31
    monkeypatch.setattr("dashtam_api.auth.security.time.time", lambda: later)
    for path in ("/api/v1/auth/me", "/api/v1/providers"):
        assert "expired" in is_problem(await client.get(path, headers=headers), 401)["detail"]


async def test_me_and_patch_me(client, sign_up):
    headers, _, (email, password) = await sign_up()
    me = await client.get("/api/v1/auth/me", headers=headers)
    assert me.json()["email"] == email
    renamed = await client.patch("/api/v1/auth/me", headers=headers, json={"name": "New Name"})
    assert renamed.json()["name"] == "New Name"
    for wrong in ({}, {"current_password": "not the password at all"}):
        refused = await client.patch(
            "/api/v1/auth/me", headers=headers, json={"password": "another long password", **wrong}
        )
        assert "current_password" in is_problem(refused, 403)["detail"]
    changed = await client.patch(
        "/api/v1/auth/me",
        headers=headers,
        json={"password": "another long password", "current_password": password},
    )
    assert changed.status_code == 200
    old = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert old.status_code == 401
    new = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": "another long password"}
    )
    assert new.status_code == 200
    is_problem(await client.patch("/api/v1/auth/me", headers=headers, json={"nmae": "typo"}), 422)


@pytest.mark.parametrize(
    "email",
    ["rr@h.test", "me@nas.home.arpa", "me@box.local", "admin@svc.internal", "me@pi.lan"],
)
async def test_addresses_self_hosters_have_are_accepted(client, email):
    """Special-use domains are valid addresses (the OpenAPI document says `format: email`)."""
    answer = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 201, answer.text
    assert answer.json()["email"] == email
