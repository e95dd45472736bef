"""Interactive Brokers' Flex Web Service as a source (provider type ``ibkr``, kind
``api_token``): a person connects the Flex look-alike this API serves in testing
(sandbox/ibkr_flex.py) with a Flex token and a query id, and syncs.

The test app reaches the look-alike as it would IBKR, through the institution pool (ctx.http),
here pointed at the app itself in-process (httpx's ASGI transport)."""

import asyncio
import uuid
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from dashtam_models import ProviderAuditLog
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.api.test_simplefin_source import transactions_of

FLEX = "/sandbox/ibkr"


@pytest.fixture
async def flexed(app, client):
    """The client, with the app's institution pool pointed at the app itself."""
    ctx = app.state.ctx
    saved = ctx.transport
    ctx.transport = httpx.ASGITransport(app=app)
    try:
        yield client
    finally:
        ctx.transport = saved


async def flex_token(client, user: str | None = None) -> dict:
    """A Flex token and query id made in the look-alike's "portal": {user, token, query_id}."""
    made = await client.post(f"{FLEX}/tokens", json={"user": user} if user else {})
    assert made.status_code == 201, made.text
    return made.json()


async def ibkr_provider(client, headers) -> str:
    answer = await client.post(
        "/api/v1/providers", headers=headers, json={"provider_key": "ibkr", "alias": "IBKR"}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def authorize(client, headers, provider_id, made: dict) -> httpx.Response:
    return await client.post(
        f"/api/v1/providers/{provider_id}/authorization",
        headers=headers,
        json={"token": made["token"], "query_id": made["query_id"]},
    )


async def connected(client) -> tuple[dict, str, dict]:
    headers = await signed_in(client, f"ibkr-{uuid.uuid4().hex[:6]}")
    provider_id = await ibkr_provider(client, headers)
    made = await flex_token(client)
    answer = await authorize(client, headers, provider_id, made)
    assert answer.status_code == 201, answer.text
    return headers, provider_id, made


async def sync(client, headers, provider_id) -> httpx.Response:
    return await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers)


async def flex_stats(client, user) -> dict:
    return (await client.get(f"{FLEX}/_control/{user}")).json()


async def fail_next(client, user, kind, times=1) -> None:
    answer = await client.post(f"{FLEX}/_control/{user}/fail", json={"kind": kind, "times": times})
    assert answer.status_code == 204, answer.text


async def status_of(client, headers, provider_id) -> dict:
    answer = await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    return answer.json()


async def test_the_provider_type_is_listed_with_its_kind(client, auth_headers):
    types = (await client.get("/api/v1/provider-types", headers=auth_headers)).json()
    ibkr = next(t for t in types if t["key"] == "ibkr")
    assert (ibkr["name"], ibkr["kind"], ibkr["configured"], ibkr["supplies"]) == (
        "Interactive Brokers (Flex)",
        "api_token",
        True,
        ["token", "query_id"],
    )
    assert ibkr["supports"] == {
        "pkce": False,
        "refresh": False,
        "revocation": False,
        "sync": True,
        "client_auth": None,
    }


async def test_a_person_connects_syncs_twice_and_reconnects_with_a_new_token(flexed, session):
    client = flexed
    headers, provider_id, made = await connected(client)
    status = await status_of(client, headers, provider_id)
    assert (status["status"], status["action"], status["reconnect_by"]) == ("active", None, None)
    # The connect tried the token and query once: today's statement, asked for again while
    # IBKR was making it.
    assert (await flex_stats(client, made["user"]))["sent"] == 1

    first = await sync(client, headers, provider_id)
    assert first.status_code == 200, first.text
    stats = await flex_stats(client, made["user"])
    # One statement of 365 days; its first GetStatement was "in progress" (1019), then asked again.
    assert (stats["sent"], stats["got"]) == (2, 4)
    accounts = (
        await client.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)
    ).json()["items"]
    usd_id, eur_id = stats["accounts"]
    by_last4 = {a["number_masked"][-4:]: a for a in accounts}
    assert set(by_last4) == {usd_id[-4:], eur_id[-4:]}
    usd, eur = by_last4[usd_id[-4:]], by_last4[eur_id[-4:]]
    assert (usd["currency"], eur["currency"], usd["account_type"]) == ("USD", "EUR", "investment")
    assert usd_id not in usd["name"]  # never the whole account number
    held = (await client.get(f"/api/v1/accounts/{usd['id']}/positions", headers=headers)).json()
    assert {p["symbol"] for p in held["items"]} == {"VTI", "BND"}
    before = await transactions_of(client, headers, usd["id"])
    kinds = {t["kind"] for t in before}
    assert {"trade", "dividend", "interest", "fee"} <= kinds
    # Only DETAIL lines, each once; nothing older than the 365 days a request may cover.
    assert len({t["id"] for t in before}) == len(before)
    oldest = min(date.fromisoformat(t["occurred_at"][:10]) for t in before)
    assert oldest >= date.today() - timedelta(days=366)
    # A buy: money out, its commission a positive fee paid.
    buy = next(t for t in before if t["kind"] == "trade" and not t["quantity"].startswith("-"))
    assert buy["amount"].startswith("-")
    assert Decimal(buy["fees"]) >= 1

    second = await sync(client, headers, provider_id)
    assert second.status_code == 200, second.text
    after = await transactions_of(client, headers, usd["id"])
    # The next day's statement: one new trade and one new dividend, nothing doubled.
    assert len(after) == len(before) + 2
    assert second.json()["transactions"]["added"] == 2

    # A new token in IBKR's portal invalidates the old one: the next sync needs the person.
    renewed = await flex_token(client, made["user"])
    refused = await sync(client, headers, provider_id)
    assert refused.status_code == 502, refused.text
    status = await status_of(client, headers, provider_id)
    assert (status["status"], status["action"]) == ("error", "reconnect")
    assert "1015" in status["sync_error"]
    assert "new Flex token" in status["sync_error"]
    # Reconnected with it: the same accounts and transactions, the next day's added once.
    again = await authorize(client, headers, provider_id, renewed)
    assert again.status_code == 201, again.text
    assert again.json()["status"] == "active"
    third = await sync(client, headers, provider_id)
    assert third.status_code == 200, third.text
    accounts = (
        await client.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)
    ).json()["items"]
    assert {a["id"] for a in accounts} == {usd["id"], eur["id"]}
    assert len(await transactions_of(client, headers, usd["id"])) == len(after) + 2
    # The token is never in the audit trail.
    details = await session.scalars(
        select(ProviderAuditLog.details).where(
            ProviderAuditLog.provider_id == uuid.UUID(provider_id)
        )
    )
    assert all(made["token"] not in str(d) and renewed["token"] not in str(d) for d in details)


async def test_what_ibkr_refuses_at_connect_is_a_clear_problem(flexed):
    client = flexed
    headers = await signed_in(client, f"refuse-{uuid.uuid4().hex[:6]}")
    provider_id = await ibkr_provider(client, headers)
    made = await flex_token(client)
    bare = await client.post(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    assert is_problem(bare, 409)
    assert '"token"' in bare.json()["detail"]
    # Not a Flex token's form: the schema's 422.
    malformed = await authorize(client, headers, provider_id, made | {"token": "not a token!"})
    assert is_problem(malformed, 422)
    unknown = await authorize(client, headers, provider_id, made | {"token": "1" * 24})
    assert is_problem(unknown, 409)
    assert "1015" in unknown.json()["detail"]
    wrong_query = await authorize(client, headers, provider_id, made | {"query_id": "1"})
    assert is_problem(wrong_query, 409)
    assert "1014" in wrong_query.json()["detail"]
    await fail_next(client, made["user"], "1009")  # IBKR under heavy load
    busy = await authorize(client, headers, provider_id, made)
    assert is_problem(busy, 502)
    status = await status_of(client, headers, provider_id)
    assert status["status"] == "pending"  # nothing was sealed
    assert (await authorize(client, headers, provider_id, made)).status_code == 201
    # A SimpleFIN setup token on it: a conflict with its kind, nothing claimed.
    wrong = await client.post(
        f"/api/v1/providers/{provider_id}/authorization",
        headers=headers,
        json={"setup_token": "aHR0cHM6Ly9leGFtcGxlLmNvbQ=="},
    )
    assert is_problem(wrong, 409)
    # Nothing to refresh; revoking forgets the token (IBKR has no revocation endpoint).
    path = f"/api/v1/providers/{provider_id}/authorization"
    assert is_problem(await client.post(f"{path}/refresh", headers=headers), 409)
    assert (await client.delete(path, headers=headers)).status_code == 204
    assert (await status_of(client, headers, provider_id))["status"] == "revoked"
    assert is_problem(await sync(client, headers, provider_id), 409)


async def test_flex_failures_at_sync_wait_or_need_the_person(flexed):
    client = flexed
    headers, provider_id, made = await connected(client)
    before = (await flex_stats(client, made["user"]))["got"]
    # Still making the statement twice more: asked again within the bound, the sync succeeds.
    await fail_next(client, made["user"], "1019", times=2)
    assert (await sync(client, headers, provider_id)).status_code == 200
    assert (await flex_stats(client, made["user"]))["got"] == before + 4
    # IBKR allows ten requests a minute per token: a second person's connection for the rest
    # (as a person would not sync four times in a minute).
    headers, provider_id, made = await connected(client)
    # Too many requests (another program with the token): waited out, asked again.
    await fail_next(client, made["user"], "1018")
    assert (await sync(client, headers, provider_id)).status_code == 200
    # IBKR under heavy load: a transient failure, the connection stays active.
    await fail_next(client, made["user"], "1009")
    busy = await sync(client, headers, provider_id)
    assert busy.status_code == 502, busy.text
    status = await status_of(client, headers, provider_id)
    assert status["status"] == "active"
    assert "1009" in status["sync_error"]
    # The token expired: only the person can help.
    await client.post(f"{FLEX}/_control/{made['user']}/expire")
    expired = await sync(client, headers, provider_id)
    assert expired.status_code == 502, expired.text
    status = await status_of(client, headers, provider_id)
    assert (status["status"], status["action"]) == ("error", "reconnect")
    assert "1012" in status["sync_error"]


async def test_the_pace_is_kept_and_what_never_comes_may_pass_later(app, client, test_settings):
    from dashtam_api.sources.ibkr_flex import Flex
    from dashtam_api.sources.shapes import SourceError

    pace = test_settings.IBKR_FLEX_PACE_SECONDS
    made = await flex_token(client)
    ask = {"t": made["token"], "q": made["query_id"], "v": "3"}
    # IBKR's one request a second per token: the second at once is refused (1018).
    first = await client.get(f"{FLEX}/FlexWebService/SendRequest", params=ask)
    again = await client.get(f"{FLEX}/FlexWebService/SendRequest", params=ask)
    assert "<ReferenceCode>" in first.text
    assert "<ErrorCode>1018</ErrorCode>" in again.text
    base = "http://testserver/sandbox/ibkr/FlexWebService"
    await asyncio.sleep(pace)  # the requests above were not this client's: it cannot pace them
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        flex = Flex(http, base, made["token"], pace=pace)
        # The first ask of a statement is "in progress"; two more, and three paces of waiting
        # is the bound: a transient failure, the next sync asks again.
        await fail_next(client, made["user"], "1019", times=2)
        with pytest.raises(SourceError) as raised:
            await flex.statement(made["query_id"], bound=3)
        assert (raised.value.error, raised.value.transient) == ("not_ready", True)
        assert (await flex_stats(client, made["user"]))["got"] == 3
        await fail_next(client, made["user"], "503")
        with pytest.raises(SourceError) as raised:
            await flex.statement(made["query_id"])
        assert (raised.value.transient, raised.value.needs_person) == (True, False)
        assert made["token"] not in str(raised.value)
    # Nothing listening: the service down is transient too, the token never said.
    async with httpx.AsyncClient() as http:
        with pytest.raises(SourceError) as raised:
            await Flex(http, "http://127.0.0.1:9/F", made["token"], pace=pace).statement("1")
    assert (raised.value.error, raised.value.transient) == ("unreachable", True)
    assert made["token"] not in str(raised.value)
