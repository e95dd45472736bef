"""The Enable Banking look-alike (sandbox/enablebanking.py) refuses and changes as the real API
does where its clients break: the JWT, single-use codes, uids new with every consent, the
sessions' ends, continuation keys. Called directly, as Dashtam's source calls it."""

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from dashtam_api.providers.registry import redirect_uri
from dashtam_api.sources import enablebanking_api as api

EB = "/sandbox/enablebanking"
ERROR_KEYS = {"code", "message", "error", "detail"}


def headers(settings, **claims) -> dict:
    app = api.application(settings)
    if not claims:
        return {"Authorization": f"Bearer {api.token(app)}"}
    now = int(datetime.now(UTC).timestamp())
    body = {"iss": api.ISSUER, "aud": api.AUDIENCE, "iat": now, "exp": now + 60}
    kid = claims.pop("kid", app.app_id)
    token = jwt.encode(
        body | claims, api.private_key(app.key_file), algorithm="RS256", headers={"kid": kid}
    )
    return {"Authorization": f"Bearer {token}"}


def refused(answer, status: int, error: str) -> None:
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == ERROR_KEYS
    assert (answer.json()["code"], answer.json()["error"]) == (status, error)


@pytest.mark.parametrize(
    "claims",
    [
        None,  # no JWT at all
        {"kid": "someone-else"},
        {"aud": "api.example.com"},
        {"iss": "example.com"},
        {"exp": int(datetime.now(UTC).timestamp()) + 2 * 86400},  # lives more than a day
        {"exp": int(datetime.now(UTC).timestamp()) - 10},  # expired
    ],
)
async def test_every_call_needs_the_applications_jwt(client, test_settings, claims):
    sent = {} if claims is None else headers(test_settings, **claims)
    refused(await client.get(f"{EB}/aspsps", headers=sent), 401, "UNAUTHORIZED_ACCESS")


async def _session(client, settings, psu: str) -> dict:
    auth = await client.post(
        f"{EB}/auth",
        headers=headers(settings),
        json={
            "access": {"valid_until": (datetime.now(UTC) + timedelta(days=10)).isoformat()},
            "aspsp": {"name": "Nordic Test Bank", "country": "FI"},
            "state": "s-1",
            "redirect_url": redirect_uri(settings),
        },
    )
    assert auth.status_code == 200, auth.text
    approved = await client.get(f"{urlsplit(auth.json()['url']).path}/approve", params={"psu": psu})
    code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
    opened = await client.post(f"{EB}/sessions", headers=headers(settings), json={"code": code})
    assert opened.status_code == 200, opened.text
    again = await client.post(f"{EB}/sessions", headers=headers(settings), json={"code": code})
    refused(again, 400, "WRONG_AUTHORIZATION_CODE")  # a code works once
    return opened.json()


async def test_a_new_consent_gives_new_uids_the_same_hashes_and_revokes_the_old(
    client, test_settings
):
    psu = f"psu-{uuid.uuid4().hex[:8]}"
    first = await _session(client, test_settings, psu)
    second = await _session(client, test_settings, psu)
    assert [a["identification_hash"] for a in first["accounts"]] == [
        a["identification_hash"] for a in second["accounts"]
    ]
    assert not {a["uid"] for a in first["accounts"]} & {a["uid"] for a in second["accounts"]}
    old_uid, uid = first["accounts"][0]["uid"], second["accounts"][0]["uid"]
    sent = headers(test_settings)
    refused(
        await client.get(f"{EB}/accounts/{old_uid}/balances", headers=sent), 401, "REVOKED_SESSION"
    )
    status = await client.get(f"{EB}/sessions/{second['session_id']}", headers=sent)
    assert status.json()["status"] == "AUTHORIZED"

    # Pages of ten, to the end; a key it did not give is refused.
    since = (datetime.now(UTC) - timedelta(days=90)).date().isoformat()
    entries, key, pages = [], None, 0
    while True:
        params = {"continuation_key": key} if key else {"date_from": since}
        page = await client.get(f"{EB}/accounts/{uid}/transactions", headers=sent, params=params)
        assert page.status_code == 200, page.text
        entries += page.json()["transactions"]
        pages += 1
        key = page.json()["continuation_key"]
        if not key:
            break
    assert pages > 2
    assert len({e["entry_reference"] for e in entries}) > 20
    assert any(e["entry_reference"] is None for e in entries)  # this bank omits some
    assert all(e["transaction_amount"]["amount"][0] != "-" for e in entries)  # unsigned
    wrong = await client.get(
        f"{EB}/accounts/{uid}/transactions", headers=sent, params={"continuation_key": "nope"}
    )
    refused(wrong, 400, "WRONG_CONTINUATION_KEY")
    balances = await client.get(f"{EB}/accounts/{uid}/balances", headers=sent)
    assert [b["balance_type"] for b in balances.json()["balances"]] == ["ITBD", "CLAV", "OPBD"]

    # Four unattended reads a day of each resource; a read with PSU headers is not counted.
    for _ in range(3):
        await client.get(f"{EB}/accounts/{uid}/balances", headers=sent)
    refused(
        await client.get(f"{EB}/accounts/{uid}/balances", headers=sent),
        429,
        "ASPSP_RATE_LIMIT_EXCEEDED",
    )
    attended = await client.get(
        f"{EB}/accounts/{uid}/balances", headers=sent | {"Psu-Ip-Address": "192.0.2.1"}
    )
    assert attended.status_code == 200

    # Closed, it answers so; past its valid_until, expired; an unknown one does not exist.
    closed = await client.delete(f"{EB}/sessions/{second['session_id']}", headers=sent)
    assert closed.status_code == 200
    refused(await client.get(f"{EB}/accounts/{uid}/transactions", headers=sent, params={"date_from": since}), 401, "CLOSED_SESSION")  # fmt: skip
    refused(await client.get(f"{EB}/sessions/{'0' * 32}", headers=sent), 404, "SESSION_DOES_NOT_EXIST")  # fmt: skip


async def test_a_session_expires_at_its_valid_until(client, test_settings):
    psu = f"psu-{uuid.uuid4().hex[:8]}"
    uid = (await _session(client, test_settings, psu))["accounts"][0]["uid"]
    sent = headers(test_settings)
    assert (await client.get(f"{EB}/accounts/{uid}/balances", headers=sent)).status_code == 200
    await client.post(f"{EB}/_control/{psu}/clock", json={"advance_seconds": 11 * 86400})
    refused(await client.get(f"{EB}/accounts/{uid}/balances", headers=sent), 401, "EXPIRED_SESSION")
