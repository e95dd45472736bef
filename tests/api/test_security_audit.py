"""Every sign-in, refusal, password change and session end is in the append-only security
audit, with where it came from, and never a secret."""

from collections import Counter

from sqlalchemy import select

from dashtam_models import SecurityAuditLog
from tests.api.test_sessions import FIREFOX, bearer, refreshed, signed_in_twice


async def events(session) -> list[tuple[str, dict]]:
    rows = await session.scalars(select(SecurityAuditLog))
    return [(r.action, r.details, r.user_id, r.ip_address, r.user_agent) for r in rows]


async def test_the_security_audit_records_an_account_s_life(client, sign_up, session):
    owner, other, (email, password) = await signed_in_twice(client, sign_up)
    refused = await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": "not the password"},
        headers={"User-Agent": FIREFOX},
    )
    assert refused.status_code == 401
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever it is"}
    )
    assert unknown.status_code == 401
    changed = await client.patch(
        "/api/v1/auth/me",
        headers=bearer(owner),
        json={"password": "a brand new pass phrase", "current_password": password},
    )
    assert changed.status_code == 200
    assert (await refreshed(client, other)).status_code == 401

    rows = await events(session)
    # One test transaction: every row has its now(); what matters is that each is there.
    assert Counter(r[0] for r in rows) == {
        "registered": 1,
        "signed_in": 3,  # sign_up's and the two of signed_in_twice
        "sign_in_failed": 2,
        "password_changed": 1,
        "session_ended": 2,  # sign_up's session and the other one; the owner's goes on
    }
    failed = {r[1]["reason"]: r for r in rows if r[0] == "sign_in_failed"}
    assert failed["wrong_password"][1] == {"email": email, "reason": "wrong_password"}
    assert str(failed["wrong_password"][3]) == "127.0.0.1"
    assert failed["wrong_password"][4] == FIREFOX
    assert failed["wrong_password"][2] is not None
    assert failed["unknown_email"][2] is None
    ended = [r for r in rows if r[0] == "session_ended"]
    assert {r[1]["reason"] for r in ended} == {"password_changed"}
    written = str(rows)
    for secret in (password, "not the password", "a brand new pass phrase"):
        assert secret not in written


async def test_a_person_reads_their_own_security_events_by_cursor(client, sign_up):
    owner, _other, (email, _password) = await signed_in_twice(client, sign_up)
    wrong = await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": "not the password"},
        headers={"User-Agent": FIREFOX},
    )
    assert wrong.status_code == 401
    page = await client.get("/api/v1/auth/security-events", headers=bearer(owner))
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    assert Counter(i["action"] for i in items) == {
        "registered": 1,
        "signed_in": 3,
        "sign_in_failed": 1,
    }
    (failed,) = [i for i in items if i["action"] == "sign_in_failed"]
    assert failed["details"]["reason"] == "wrong_password"
    assert (failed["ip"], failed["device"]) == ("127.0.0.1", "Firefox 128 on Linux")

    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = await client.get(
            "/api/v1/auth/security-events", headers=bearer(owner), params=params
        )
        seen += [i["id"] for i in answer.json()["items"]]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(i["id"] for i in items)
    assert len(seen) == len(set(seen))

    stranger, _, _ = await sign_up()
    theirs = (await client.get("/api/v1/auth/security-events", headers=stranger)).json()
    assert {i["id"] for i in theirs["items"]}.isdisjoint(seen)
