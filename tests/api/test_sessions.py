"""Sessions a person can see and end: a password change ends every other one (the stolen-session
case), an ended session's access tokens stop within seconds in every API process, not at their
expiry; listing with device labels, ending one, ending all but this one."""

import asyncio
import time

import pytest

from dashtam_api.auth.sessions import device
from tests.api.test_auth import is_problem
from tests.fixtures.institution import client_of

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)


async def signed_in_twice(client, sign_up) -> tuple[dict, dict, tuple[str, str]]:
    """The owner's session (Firefox) and a second one (a phone, or whoever stole it)."""
    _, _, (email, password) = await sign_up()
    sessions = []
    for agent in (FIREFOX, PHONE):
        answer = await client.post(
            "/api/v1/auth/login",
            json={"email": email, "password": password},
            headers={"User-Agent": agent},
        )
        assert answer.status_code == 200, answer.text
        sessions.append(answer.json())
    return sessions[0], sessions[1], (email, password)


def bearer(tokens: dict) -> dict:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def refreshed(client, tokens: dict):
    return await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )


async def until_refused(client, headers: dict, within: float) -> float:
    """Seconds until the API refuses these credentials (fails after ``within``)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        answer = await client.get("/api/v1/auth/me", headers=headers)
        if answer.status_code == 401:
            assert "session has ended" in answer.text
            return time.monotonic() - started
        assert answer.status_code == 200, answer.text
        await asyncio.sleep(0.05)
    raise AssertionError(f"still accepted after {within} s")


async def test_a_password_change_ends_the_stolen_session_everywhere(
    client, sign_up, test_settings, connection
):
    owner, thief, (_, password) = await signed_in_twice(client, sign_up)
    # A second API process (same database and Valkey) that has seen the thief's token work.
    async with client_of(test_settings, connection) as other:
        assert (await other.get("/api/v1/auth/me", headers=bearer(thief))).status_code == 200

        changed = await client.patch(
            "/api/v1/auth/me",
            headers=bearer(owner),
            json={"password": "a brand new pass phrase", "current_password": password},
        )
        assert changed.status_code == 200, changed.text

        # The thief's refresh token stops at once; the access token in this process at once...
        is_problem(await refreshed(client, thief), 401)
        is_problem(await client.get("/api/v1/auth/me", headers=bearer(thief)), 401)
        # ...and in the other within SESSION_SYNC_SECONDS (1 s), not at its expiry (15 min).
        # (The bound leaves room for a loaded machine; the token's own expiry is 15 minutes.)
        took = await until_refused(other, bearer(thief), within=10)
        assert took <= test_settings.SESSION_SYNC_SECONDS + 4

    # The owner's own session goes on.
    assert (await client.get("/api/v1/auth/me", headers=bearer(owner))).status_code == 200
    assert (await refreshed(client, owner)).status_code == 200


async def test_sessions_are_listed_and_ended_one_or_all(client, sign_up):
    owner, phone, (email, password) = await signed_in_twice(client, sign_up)
    third = (
        await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    ).json()
    listed = (await client.get("/api/v1/auth/sessions", headers=bearer(owner))).json()["items"]
    assert len(listed) == 4  # sign_up's own sign-in too
    (mine,) = [s for s in listed if s["current"]]
    assert mine["device"] == "Firefox 128 on Linux"
    assert {s["device"] for s in listed} >= {"Firefox 128 on Linux", "Chrome Mobile 126 on Android"}
    assert all(s["ip"] == "127.0.0.1" for s in listed)
    phone_session = next(s for s in listed if s["user_agent"] == PHONE)

    assert (
        await client.delete(f"/api/v1/auth/sessions/{phone_session['id']}", headers=bearer(owner))
    ).status_code == 204
    is_problem(await client.get("/api/v1/auth/me", headers=bearer(phone)), 401)
    is_problem(await refreshed(client, phone), 401)
    is_problem(
        await client.delete(f"/api/v1/auth/sessions/{phone_session['id']}", headers=bearer(owner)),
        404,
    )

    # Sign out everywhere else: sign_up's and the third end, this one stays.
    ended = await client.delete("/api/v1/auth/sessions", headers=bearer(owner))
    assert ended.json() == {"ended": 2}
    is_problem(await client.get("/api/v1/auth/me", headers=bearer(third)), 401)
    left = (await client.get("/api/v1/auth/sessions", headers=bearer(owner))).json()["items"]
    assert [s["id"] for s in left] == [mine["id"]]

    # Nobody ends anyone else's session.
    stranger, _, _ = await sign_up()
    is_problem(await client.delete(f"/api/v1/auth/sessions/{mine['id']}", headers=stranger), 404)


async def test_logout_and_a_reused_refresh_token_end_the_access_tokens_too(client, sign_up):
    first, second, _ = await signed_in_twice(client, sign_up)
    assert (
        await client.post(
            "/api/v1/auth/logout",
            headers=bearer(first),
            json={"refresh_token": first["refresh_token"]},
        )
    ).status_code == 204
    is_problem(await client.get("/api/v1/auth/me", headers=bearer(first)), 401)

    # A rotated refresh token presented again: assumed stolen, the whole session ends, including
    # the access token the rotation issued.
    rotated = (await refreshed(client, second)).json()
    is_problem(await refreshed(client, second), 401)
    is_problem(await client.get("/api/v1/auth/me", headers=bearer(rotated)), 401)


@pytest.mark.parametrize(
    ("agent", "label"),
    [
        (FIREFOX, "Firefox 128 on Linux"),
        (PHONE, "Chrome Mobile 126 on Android"),
        ("curl/8.5.0", "curl 8"),
        ("python-httpx/0.28.1", "python-httpx 0"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_device_labels(agent, label):
    assert device(agent) == label
