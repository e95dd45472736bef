"""Dashtam as a SimpleFIN server, read by a client written from the protocol alone
(tests/fixtures/simplefin_client.py): setup tokens claimed once, the Account Set as the spec
writes it (v2 and the v1 fields older apps read), its query parameters, refusals and revocation."""

import base64
import hashlib
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, text

from dashtam_models import SecurityAuditLog, SimplefinAccess, SimplefinSetupToken
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.api.test_refresh import connected_schwab
from tests.api.test_sync import synced
from tests.fixtures.simplefin_client import Refused, SimplefinClient


@pytest.fixture
def client(institution_client):
    """The API in-process with Schwab pointed at the local look-alike (its data to serve)."""
    return institution_client


async def setup_token(client, headers, **body) -> dict:
    answer = await client.post("/api/v1/simplefin/setup-tokens", headers=headers, json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def synced_schwab(client, settings) -> tuple[dict, str]:
    """A person whose Schwab (the local look-alike: two accounts, two positions, a trade, a
    dividend and a pending deposit) is connected and synced."""
    headers, provider_id = await connected_schwab(client, settings)
    await synced(client, headers, provider_id)
    return headers, provider_id


def epoch(iso: str | None) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()) if iso else 0


async def test_an_app_claims_once_and_reads_accounts_balances_holdings_and_transactions(
    client, test_settings, session
):
    headers, _ = await synced_schwab(client, test_settings)
    app = SimplefinClient(client)
    created = await setup_token(client, headers, label="Actual on the NAS")
    claim_url = base64.b64decode(created["setup_token"]).decode()
    assert claim_url == created["claim_url"]
    assert claim_url.startswith(f"{test_settings.API_BASE_URL}/simplefin/claim/")

    access_url = await app.claim(created["setup_token"])
    parts = urlsplit(access_url)
    assert (parts.scheme, parts.hostname, parts.path) == ("https", "localhost", "/simplefin")
    assert parts.username
    assert len(parts.password) >= 40
    with pytest.raises(Refused):  # once only
        await app.claim(created["setup_token"])
    # Only hashes are kept.
    access = await session.scalar(select(SimplefinAccess))
    assert access.secret_hash == hashlib.sha256(parts.password.encode()).hexdigest()
    token = await session.scalar(select(SimplefinSetupToken))
    assert token.token_hash == hashlib.sha256(claim_url.rsplit("/", 1)[1].encode()).hexdigest()
    assert token.claimed_at is not None

    assert (await app.info(access_url))["versions"] == ["1.0", "2.0"]
    answer = await app.accounts(access_url)
    assert answer["errlist"] == answer["errors"] == []
    (connection,) = answer["connections"]
    assert connection["org_id"] == "schwab"
    assert connection["name"] == "Charles Schwab - My schwab"
    assert connection["sfin_url"] == f"{test_settings.API_BASE_URL}/simplefin"
    ours = (await client.get("/api/v1/accounts", headers=headers)).json()["items"]
    assert {a["id"] for a in answer["accounts"]} == {a["id"] for a in ours}
    for account in answer["accounts"]:
        mine = next(a for a in ours if a["id"] == account["id"])
        assert account["conn_id"] == connection["conn_id"]
        assert account["org"]["sfin-url"] == connection["sfin_url"]  # v1's Organization
        # v1's domain, from which Actual links to the institution: Schwab's own site.
        assert account["org"]["domain"] == "www.schwab.com"
        assert account["org"]["url"] == "https://www.schwab.com"
        assert account["name"] == mine["name"]
        assert account["currency"] == mine["currency"]
        assert Decimal(account["balance"]) == Decimal(mine["balance"]["current"])
        assert account["balance-date"] == epoch(mine["balance"]["as_of"])
        assert all(t.get("pending") is not True for t in account["transactions"])
        posted = [t["posted"] for t in account["transactions"]]
        assert posted == sorted(posted)  # ordered by posted, as the spec asks
    holdings = [h for a in answer["accounts"] for h in a["holdings"]]
    assert holdings
    assert all(Decimal(h["market_value"]) > 0 for h in holdings)

    # Every transaction the API lists for the last 90 days, as the spec writes them.
    listed = (
        await client.get("/api/v1/transactions", headers=headers, params={"limit": 200})
    ).json()["items"]
    with_pending = await app.accounts(access_url, pending=1)
    served = {t["id"]: t for a in with_pending["accounts"] for t in a["transactions"]}
    recent = [t for t in listed if t["status"] in ("posted", "pending")]
    assert set(served) == {t["id"] for t in recent}
    pendings = [t for t in recent if t["status"] == "pending"]
    assert pendings, "the look-alike has a pending deposit"
    for t in recent:
        out = served[t["id"]]
        assert out["amount"] == t["amount"]
        assert isinstance(out["amount"], str)
        assert out["description"] == t["description"]
        if t["status"] == "pending":
            assert (out["posted"], out["pending"]) == (0, True)
        else:
            assert out["posted"] == epoch(t["posted_at"] or t["occurred_at"])
            assert "pending" not in out

    # The window: start-date on or after, end-date before (not on); one account; balances only.
    times = sorted({epoch(t["occurred_at"]) for t in recent})
    middle = times[len(times) // 2]
    late = await app.accounts(access_url, **{"start-date": middle, "pending": 1})
    assert {t["id"] for a in late["accounts"] for t in a["transactions"]} == {
        t["id"] for t in recent if epoch(t["occurred_at"]) >= middle
    }
    early = await app.accounts(access_url, **{"end-date": middle, "pending": 1})
    assert {t["id"] for a in early["accounts"] for t in a["transactions"]} == {
        t["id"] for t in recent if epoch(t["occurred_at"]) < middle
    }
    one = ours[0]["id"]
    only = await app.accounts(access_url, account=one)
    assert [a["id"] for a in only["accounts"]] == [one]
    balances = await app.accounts(access_url, **{"balances-only": 1})
    assert all("transactions" not in a for a in balances["accounts"])

    listed_access = (await client.get("/api/v1/simplefin/access", headers=headers)).json()
    (item,) = listed_access["items"]
    assert item["label"] == "Actual on the NAS"
    assert item["last_used_at"] is not None
    assert item["revoked_at"] is None
    actions = set((await session.scalars(select(SecurityAuditLog.action))).all())
    assert {"simplefin_setup_token_created", "simplefin_access_claimed"} <= actions


async def test_expired_and_unknown_setup_tokens_are_refused(client, session, test_settings):
    headers, _ = await synced_schwab(client, test_settings)
    app = SimplefinClient(client)
    created = await setup_token(client, headers)
    await session.execute(
        text("UPDATE simplefin_setup_tokens SET expires_at = now() - interval '1 hour'")
    )
    await session.commit()
    with pytest.raises(Refused):
        await app.claim(created["setup_token"])
    unknown = base64.b64encode((created["claim_url"][:-4] + "abcd").encode()).decode()
    with pytest.raises(Refused):
        await app.claim(unknown)
    assert (await session.scalar(select(SimplefinAccess))) is None


async def test_wrong_or_revoked_credentials_are_403_missing_401_and_guessing_is_throttled(
    client, test_settings
):
    headers, _ = await synced_schwab(client, test_settings)
    app = SimplefinClient(client)
    access_url = await app.claim((await setup_token(client, headers))["setup_token"])
    parts = urlsplit(access_url)
    root = f"{test_settings.API_BASE_URL}/simplefin/accounts"

    missing = await client.get(root)  # no credentials at all: HTTP's 401 and its challenge
    is_problem(missing, 401)
    assert missing.headers["www-authenticate"].startswith('Basic realm="SimpleFIN"')
    is_problem(await client.get(root, headers={"Authorization": "Basic !!notbase64"}), 403)
    is_problem(await client.get(root, auth=(parts.username, "wrong")), 403)

    # Revoked by its person: the next read is refused.
    (item,) = (await client.get("/api/v1/simplefin/access", headers=headers)).json()["items"]
    assert (
        await client.delete(f"/api/v1/simplefin/access/{item['id']}", headers=headers)
    ).status_code == 204
    with pytest.raises(Refused):
        await app.accounts(access_url)
    listed = (await client.get("/api/v1/simplefin/access", headers=headers)).json()["items"]
    assert listed[0]["revoked_at"] is not None
    someone_elses = await client.delete(
        f"/api/v1/simplefin/access/{item['id']}",
        headers=await signed_in(client, "stranger"),
    )
    is_problem(someone_elses, 404)

    # Guessing: past LOGIN_MAX_FAILURES failures from one address, 429 for a while.
    for _ in range(test_settings.LOGIN_MAX_FAILURES):
        await client.get(root, auth=(parts.username, "guess"))
    throttled = await client.get(root, auth=(parts.username, "guess"))
    is_problem(throttled, 429)
    assert int(throttled.headers["retry-after"]) > 0


async def test_a_token_for_some_accounts_opens_only_those(client, test_settings):
    headers, _ = await synced_schwab(client, test_settings)
    ours = (await client.get("/api/v1/accounts", headers=headers)).json()["items"]
    assert len(ours) >= 2
    app = SimplefinClient(client)
    created = await setup_token(client, headers, account_ids=[ours[1]["id"]])
    answer = await app.accounts(await app.claim(created["setup_token"]), account=ours[0]["id"])
    assert answer["accounts"] == []  # asked for one outside the selection: nothing
    answer = await app.accounts(
        await app.claim(
            (await setup_token(client, headers, account_ids=[ours[1]["id"]]))["setup_token"]
        )
    )
    assert [a["id"] for a in answer["accounts"]] == [ours[1]["id"]]

    stranger = await signed_in(client, "stranger")
    refused = await client.post(
        "/api/v1/simplefin/setup-tokens", headers=stranger, json={"account_ids": [ours[0]["id"]]}
    )
    assert is_problem(refused, 404)["parameter"] == "account_ids"  # not theirs: no such account


async def test_a_connection_to_reconnect_or_that_failed_to_sync_is_in_the_errlist(
    client, session, test_settings
):
    headers, provider_id = await synced_schwab(client, test_settings)
    app = SimplefinClient(client)
    access_url = await app.claim((await setup_token(client, headers))["setup_token"])
    await session.execute(
        text("UPDATE provider_connections SET status = 'expired' WHERE provider_id = :p"),
        {"p": provider_id},
    )
    await session.commit()
    answer = await app.accounts(access_url)
    (error,) = answer["errlist"]
    assert error["code"] == "con.auth"
    assert error["conn_id"] == answer["connections"][0]["conn_id"]
    assert "reconnect" in error["msg"]
    assert answer["errors"] == [error["msg"]]  # v1's list of strings
    assert answer["accounts"]  # the last known data is still served

    await session.execute(
        text(
            "UPDATE provider_connections SET status = 'active', sync_error = 'http_503' "
            "WHERE provider_id = :p"
        ),
        {"p": provider_id},
    )
    await session.commit()
    (error,) = (await app.accounts(access_url))["errlist"]
    assert error["code"] == "con."
    assert "http_503" in error["msg"]


async def test_the_protocols_pages_and_parameters(client, test_settings):
    create = await client.get("/simplefin/create")
    assert create.status_code == 200
    assert "/api/v1/simplefin/setup-tokens" in create.text
    headers, _ = await synced_schwab(client, test_settings)
    app = SimplefinClient(client)
    access_url = await app.claim((await setup_token(client, headers))["setup_token"])
    parts = urlsplit(access_url)
    for bad in ({"pending": "yes"}, {"start-date": "-5"}, {"balances-only": "2"}):
        answer = await client.get(
            f"{test_settings.API_BASE_URL}/simplefin/accounts",
            params=bad,
            auth=(parts.username, parts.password),
        )
        is_problem(answer, 422)
    # An account id that is no UUID matches no account; it is not an error.
    assert (await app.accounts(access_url, account="not-a-uuid"))["accounts"] == []
