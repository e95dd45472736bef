"""The SimpleFIN Bridge look-alike itself (sandbox/simplefin_bridge.py), read as any SimpleFIN
app would: what it does where clients break (one claim, the quota, the window limit)."""

import base64
import time

from tests.api.test_simplefin_source import BRIDGE, setup_token

DAY = 24 * 3600


async def claimed(client) -> tuple[str, tuple[str, str]]:
    """(the Bridge user, the access URL's Basic credentials) of a new setup token, claimed."""
    user, token = await setup_token(client)
    claim_url = base64.b64decode(token).decode()
    answer = await client.post(claim_url.removeprefix("http://testserver"))
    assert answer.status_code == 200, answer.text
    access = answer.text
    assert access.startswith("http://")
    assert access.endswith(f"@testserver{BRIDGE}")
    username, password = access.removeprefix("http://").split("@")[0].split(":")
    again = await client.post(claim_url.removeprefix("http://testserver"))
    assert again.status_code == 403  # claimed once
    return user, (username, password)


async def test_accounts_answer_v2_and_v1_fields_for_the_range_asked(client):
    _, auth = await claimed(client)
    now = int(time.time())
    answer = await client.get(
        f"{BRIDGE}/accounts",
        params={"start-date": now - 30 * DAY, "end-date": now, "pending": 1},
        auth=auth,
    )
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert (document["errlist"], document["errors"]) == ([], [])
    assert {c["conn_id"] for c in document["connections"]} == {"CON-CU", "CON-BRK"}
    for account in document["accounts"]:
        assert {"org", "id", "name", "conn_id", "currency", "balance", "balance-date"} <= set(
            account
        )
        for t in account["transactions"]:
            when = t["posted"] or t["transacted_at"]
            assert now - 30 * DAY <= when < now
    pendings = [
        t for a in document["accounts"] for t in a["transactions"] if t.get("pending") is True
    ]
    assert pendings
    assert {t["posted"] for t in pendings} == {0}
    holdings = {a["id"]: a["holdings"] for a in document["accounts"]}
    assert [h["symbol"] for h in holdings["ACT-BRK"]] == ["VTI", "BND"]
    # Without pending=1: posted ones only.
    posted_only = await client.get(
        f"{BRIDGE}/accounts", params={"start-date": now - 30 * DAY}, auth=auth
    )
    assert not [
        t for a in posted_only.json()["accounts"] for t in a["transactions"] if not t["posted"]
    ]


async def test_a_range_longer_than_60_days_is_cut_and_said_so(client):
    _, auth = await claimed(client)
    now = int(time.time())
    answer = await client.get(
        f"{BRIDGE}/accounts", params={"start-date": now - 100 * DAY, "end-date": now}, auth=auth
    )
    document = answer.json()
    assert [e["code"] for e in document["errlist"]] == ["gen.range"]
    oldest = min(t["posted"] for a in document["accounts"] for t in a["transactions"])
    assert oldest >= now - 60 * DAY


async def test_past_the_daily_quota_it_warns_then_disables_the_access(client):
    user, auth = await claimed(client)
    codes = []
    for _ in range(31):
        answer = await client.get(f"{BRIDGE}/accounts", params={"balances-only": 1}, auth=auth)
        codes.append(
            answer.status_code if answer.status_code != 200 else len(answer.json()["errlist"])
        )
    # 24 clean answers, six warned, then the access is disabled (and stays so).
    assert codes == [0] * 24 + [1] * 6 + [403]
    later = await client.get(f"{BRIDGE}/accounts", auth=auth)
    assert later.status_code == 403
    assert "disabled" in later.text
    # A day later by the Bridge's clock the quota is whole again, but the access stays disabled.
    await client.post(f"{BRIDGE}/_control/{user}/clock", json={"advance_seconds": DAY + 1})
    assert (await client.get(f"{BRIDGE}/accounts", auth=auth)).status_code == 403


async def test_wrong_credentials_are_a_403(client):
    _, (username, _) = await claimed(client)
    assert (await client.get(f"{BRIDGE}/accounts", auth=(username, "wrong"))).status_code == 403
    assert (await client.get(f"{BRIDGE}/accounts")).status_code == 403
