"""The SimpleFIN Bridge as a source: a person connects the Bridge look-alike this API serves in
testing (sandbox/simplefin_bridge.py) with a setup token, and syncs.

The test app reaches the look-alike as it would the Bridge, through the guarded pool
(ctx.guarded), here pointed at the app itself in-process (httpx's ASGI transport): the Bridge's
host in the access URL is the test client's, ``testserver``.
"""

import asyncio
import base64
import logging
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import delete, select, text, update

from dashtam_api.connections import refresh, setup_tokens
from dashtam_api.context import guarded_transport
from dashtam_api.jobs import loops
from dashtam_api.sources import simplefin
from dashtam_api.webhooks.targets import RefusedTarget
from dashtam_core.vault import token_context
from dashtam_models import (
    Provider,
    ProviderAuditLog,
    ProviderConnection,
    ProviderToken,
    Transaction,
    WebhookDelivery,
)
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.fixtures.app import asgi_client, running_app

BRIDGE = "/sandbox/simplefin"


@pytest.fixture
async def bridged(app, client):
    """The client, with the app's guarded pool pointed at the app itself."""
    ctx = app.state.ctx
    saved = ctx.guarded
    ctx.guarded = httpx.ASGITransport(app=app)
    try:
        yield client
    finally:
        ctx.guarded = saved


async def setup_token(client) -> tuple[str, str]:
    """A new Bridge user and their setup token: (user, token)."""
    made = await client.post(f"{BRIDGE}/setup-tokens")
    assert made.status_code == 201, made.text
    return made.json()["user"], made.json()["setup_token"]


async def simplefin_provider(client, headers) -> str:
    made = await client.post(
        "/api/v1/providers",
        headers=headers,
        json={"provider_key": "simplefin", "alias": f"My Bridge {uuid.uuid4().hex[:6]}"},
    )
    assert made.status_code == 201, made.text
    return made.json()["id"]


async def connected(client, who: str = "sfin") -> tuple[dict, str, str]:
    """A person with a SimpleFIN provider connected to a new Bridge user: (headers, provider
    id, Bridge user)."""
    headers = await signed_in(client, f"{who}-{uuid.uuid4().hex[:6]}")
    provider_id = await simplefin_provider(client, headers)
    user, token = await setup_token(client)
    answer = await client.post(
        f"/api/v1/providers/{provider_id}/authorization",
        headers=headers,
        json={"setup_token": token},
    )
    assert answer.status_code == 201, answer.text
    return headers, provider_id, user


async def sync(client, headers, provider_id) -> httpx.Response:
    return await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers)


async def bridge_stats(client, user) -> dict:
    return (await client.get(f"{BRIDGE}/_control/{user}")).json()


async def fail_next(client, user, kind, times=1) -> None:
    answer = await client.post(
        f"{BRIDGE}/_control/{user}/fail", json={"kind": kind, "times": times}
    )
    assert answer.status_code == 204, answer.text


async def transactions_of(client, headers, account_id) -> list[dict]:
    found, cursor = [], None
    while True:
        params = {"limit": 200, "from": "2000-01-01"} | ({"cursor": cursor} if cursor else {})
        page = await client.get(
            f"/api/v1/accounts/{account_id}/transactions", headers=headers, params=params
        )
        assert page.status_code == 200, page.text
        found += page.json()["items"]
        cursor = page.json().get("next_cursor")
        if not cursor:
            return found


async def test_the_provider_type_is_listed_with_its_kind(client, auth_headers):
    types = (await client.get("/api/v1/provider-types", headers=auth_headers)).json()
    simplefin = next(t for t in types if t["key"] == "simplefin")
    assert (simplefin["kind"], simplefin["configured"], simplefin["supplies"]) == (
        "simplefin",
        True,
        ["setup_token"],
    )


async def test_a_person_connects_with_a_setup_token_and_syncs_twice(bridged, session):
    client = bridged
    headers, provider_id, user = await connected(client)
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert (status["status"], status["action"], status["reconnect_by"]) == ("active", None, None)
    assert status["expires_at"] is None
    assert status["next_sync_at"] is not None

    first = await sync(client, headers, provider_id)
    assert first.status_code == 200, first.text
    # 90 days of history, 60 a request: the first sync walked back in two requests.
    assert (await bridge_stats(client, user))["requests"] == 2
    assert (first.json()["accounts"], first.json()["positions"]) == (3, 2)

    accounts = (
        await client.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)
    ).json()["items"]
    by_name = {a["name"]: a for a in accounts}
    assert set(by_name) == {"Everyday Checking", "Rewards Visa", "Individual Brokerage"}
    brokerage = by_name["Individual Brokerage"]
    assert brokerage["account_type"] == "investment"
    held = (
        await client.get(f"/api/v1/accounts/{brokerage['id']}/positions", headers=headers)
    ).json()["items"]
    assert {(p["symbol"], p["quantity"], p["market_value"]) for p in held} == {
        ("VTI", "12.5", "3066.375"),
        ("BND", "40", "2882.00"),
    }
    checking = by_name["Everyday Checking"]
    assert checking["balance"]["current"] == checking["balance"]["available"]
    before = await transactions_of(client, headers, checking["id"])
    pendings = {t["description"] for t in before if t["status"] == "pending"}
    assert pendings == {"BLUE BOTTLE COFFEE", "SAFEWAY", "PARKING METER"}

    second = await sync(client, headers, provider_id)
    assert second.status_code == 200, second.text
    assert (await bridge_stats(client, user))["requests"] == 3  # incremental: one request
    after = await transactions_of(client, headers, checking["id"])
    by_id = {t["id"]: t for t in after}
    # Each pending posted under a new id with no link: the same row, now posted.
    coffee = next(t for t in before if t["description"] == "BLUE BOTTLE COFFEE")
    assert by_id[coffee["id"]]["status"] == "posted"
    assert by_id[coffee["id"]]["description"] == "BLUE BOTTLE COFFEE #0423 OAKLAND CA"
    parking = next(t for t in before if t["description"] == "PARKING METER")
    assert by_id[parking["id"]]["status"] == "cancelled"
    assert [t["description"] for t in after if t["status"] == "pending"] == ["TRADER JOE'S"]
    # The re-issued block (new ids, same content) took over its rows: nothing doubled.
    assert len(after) == len(before) + 1  # the new pending only
    assert second.json()["transactions"]["added"] == 1
    keys = [(t["amount"], t["occurred_at"], t["description"]) for t in after]
    assert len(keys) == len(set(keys))
    reissued = await session.scalar(
        select(text("count(*)")).select_from(Transaction).where(Transaction.external_id.like("%-R"))
    )
    assert reissued > 0


async def test_a_setup_token_claimed_twice_is_a_clear_problem(bridged):
    client = bridged
    headers = await signed_in(client, f"twice-{uuid.uuid4().hex[:6]}")
    first, second = (
        await simplefin_provider(client, headers),
        await simplefin_provider(client, headers),
    )
    _, token = await setup_token(client)
    ok = await client.post(
        f"/api/v1/providers/{first}/authorization", headers=headers, json={"setup_token": token}
    )
    assert ok.status_code == 201, ok.text
    again = await client.post(
        f"/api/v1/providers/{second}/authorization", headers=headers, json={"setup_token": token}
    )
    assert is_problem(again, 409)
    assert "already claimed" in again.json()["detail"]
    assert "compromised" in again.json()["detail"]


@pytest.mark.parametrize(
    "token",
    ["not base64 at all!", base64.b64encode(b"ftp://example.com/claim").decode(), "AAAA"],
)
async def test_a_bad_setup_token_is_a_422(bridged, token):
    client = bridged
    headers = await signed_in(client, f"bad-{uuid.uuid4().hex[:6]}")
    provider_id = await simplefin_provider(client, headers)
    answer = await client.post(
        f"/api/v1/providers/{provider_id}/authorization",
        headers=headers,
        json={"setup_token": token},
    )
    assert is_problem(answer, 422)


@pytest.mark.parametrize(
    "url", [b"https://bridge.example.com/claim#fragment", b"https://\xff\xfe/claim", b"https://"]
)
async def test_a_token_of_the_documented_form_that_holds_no_claim_url_is_a_409(bridged, url):
    client = bridged
    headers = await signed_in(client, f"form-{uuid.uuid4().hex[:6]}")
    provider_id = await simplefin_provider(client, headers)
    answer = await client.post(
        f"/api/v1/providers/{provider_id}/authorization",
        headers=headers,
        json={"setup_token": base64.b64encode(url).decode()},
    )
    assert is_problem(answer, 409)
    assert "setup token" in answer.json()["detail"]


async def test_a_setup_token_is_for_simplefin_only_and_simplefin_needs_one(client):
    headers = await signed_in(client, f"kinds-{uuid.uuid4().hex[:6]}")
    sandbox = (
        await client.post(
            "/api/v1/providers", headers=headers, json={"provider_key": "sandbox", "alias": "S"}
        )
    ).json()["id"]
    answer = await client.post(
        f"/api/v1/providers/{sandbox}/authorization",
        headers=headers,
        json={"setup_token": "aHR0cHM6Ly9leGFtcGxlLmNvbQ=="},
    )
    # Valid bodies both: a conflict with the provider's kind.
    assert is_problem(answer, 409)
    assert "kind oauth2 is not connected with a setup token" in answer.json()["detail"]
    simplefin = await simplefin_provider(client, headers)
    bare = await client.post(f"/api/v1/providers/{simplefin}/authorization", headers=headers)
    assert is_problem(bare, 409)
    assert "setup token" in bare.json()["detail"]


async def test_con_auth_of_one_bank_is_noted_and_of_every_bank_turns_the_connection_error(
    bridged, session
):
    """v2's errlist entries name the Bridge connection (bank) they are about: one bank needing
    a new sign-in leaves the others' accounts synced and the connection active, its message on
    the run and the connection; every bank needing one is the connection's error."""
    client = bridged
    headers, provider_id, user = await connected(client)
    hook = await client.post(
        "/api/v1/webhooks",
        headers=headers,
        json={"url": "https://hooks.example.com/in", "events": ["connection.error"]},
    )
    assert hook.status_code == 201, hook.text
    assert (await sync(client, headers, provider_id)).status_code == 200
    accounts = (
        await client.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)
    ).json()["items"]
    by_name = {a["name"]: a for a in accounts}
    checking = by_name["Everyday Checking"]
    pending_before = {
        t["id"]
        for t in await transactions_of(client, headers, checking["id"])
        if t["status"] == "pending"
    }
    assert len(pending_before) == 3

    await fail_next(client, user, "con.auth")  # the credit union only
    one = await sync(client, headers, provider_id)
    assert one.status_code == 200, one.text
    assert (one.json()["accounts"], one.json()["positions"]) == (3, 2)
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert (status["status"], status["action"], status["error"]) == ("active", None, None)
    assert "Sandbox Credit Union" in status["sync_error"]
    assert "fix the connection at the SimpleFIN Bridge" in status["sync_error"]
    assert "Brokerage" not in status["sync_error"]
    runs = (await client.get(f"/api/v1/providers/{provider_id}/sync-runs", headers=headers)).json()[
        "items"
    ]
    assert runs[0]["status"] == "succeeded"
    assert runs[0]["error"]["code"] == "con.auth"
    assert "Sandbox Credit Union" in runs[0]["error"]["detail"]
    # The broken bank's accounts were listed with nothing new: none of their pendings is
    # taken for cancelled, and none is closed.
    after = await transactions_of(client, headers, checking["id"])
    assert {t["id"] for t in after if t["status"] == "pending"} == pending_before
    listed = (
        await client.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)
    ).json()["items"]
    assert {a["name"] for a in listed} == set(by_name)

    await fail_next(client, user, "con.auth.all")  # every bank
    answer = await sync(client, headers, provider_id)
    assert is_problem(answer, 502)
    assert "SimpleFIN Bridge" in answer.json()["detail"]
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert (status["status"], status["action"], status["reconnect_by"]) == (
        "error",
        "reconnect",
        None,
    )
    assert "fix the connection at the SimpleFIN Bridge" in status["error"]
    assert status["next_sync_at"] is None
    events = (await session.scalars(select(WebhookDelivery.event_type))).all()
    assert events == ["connection.error"]


async def test_a_lapsed_subscription_is_an_error_status_not_retries(bridged):
    client = bridged
    headers, provider_id, user = await connected(client)
    await fail_next(client, user, "402", times=5)
    answer = await sync(client, headers, provider_id)
    assert is_problem(answer, 502)
    assert (await bridge_stats(client, user))["requests"] == 1  # not sent again
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert (status["status"], status["action"]) == ("error", "reconnect")
    assert "subscription has lapsed" in status["error"]


async def test_an_html_403_from_the_front_door_is_transient_and_readable(bridged):
    client = bridged
    headers, provider_id, user = await connected(client)
    await fail_next(client, user, "html403")
    answer = await sync(client, headers, provider_id)
    assert is_problem(answer, 502)
    assert answer.json()["transient"] is True
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert status["status"] == "active"
    assert "turned the request away with a web page" in status["sync_error"]
    assert "JSON" not in status["sync_error"]
    assert "Expecting value" not in status["sync_error"]
    # The next sync passes.
    assert (await sync(client, headers, provider_id)).status_code == 200


async def test_a_gen_error_is_transient(bridged):
    client = bridged
    headers, provider_id, user = await connected(client)
    await fail_next(client, user, "gen.")
    answer = await sync(client, headers, provider_id)
    assert is_problem(answer, 502)
    assert answer.json()["transient"] is True
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert status["status"] == "active"


async def _hour_passes(session, connection_id) -> None:
    """Every moment the budget and the loop keep for the connection, an hour earlier."""
    hour = timedelta(hours=1)
    row = await session.get(ProviderConnection, connection_id, populate_existing=True)
    await session.execute(
        update(ProviderConnection)
        .where(ProviderConnection.id == connection_id)
        .values(
            budget_requests=[t - hour for t in row.budget_requests],
            budget_next_at=row.budget_next_at - hour if row.budget_next_at else None,
            synced_at=row.synced_at - hour if row.synced_at else None,
            sync_lease_until=row.sync_lease_until - hour if row.sync_lease_until else None,
            connected_at=row.connected_at - hour,
        )
    )


async def test_a_day_of_hourly_rounds_keeps_within_the_daily_budget(bridged, app, session):
    client = bridged
    ctx = app.state.ctx
    headers, provider_id, user = await connected(client)
    connection_id = await session.scalar(
        select(ProviderConnection.id).where(
            ProviderConnection.provider_id == uuid.UUID(provider_id)
        )
    )
    synced = []
    for _hour in range(30):
        counts = await loops.sync_round(ctx)
        print(dict(counts))
        synced.append(counts["synced"])
        await _hour_passes(session, connection_id)
        await client.post(f"{BRIDGE}/_control/{user}/clock", json={"advance_seconds": 3600})
    stats = await bridge_stats(client, user)
    # Hour 0: the first walk (2 requests); then one an hour until 24 in 24 hours; hour 23
    # waits for hour 0's two to be a day old; then one an hour again.
    assert synced == [1] * 23 + [0] + [1] * 6
    assert stats["requests"] == 30
    assert stats["peak"] == 24  # never past the Bridge's quota, so never warned
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert (status["status"], status["sync_error"]) == ("active", None)


async def test_a_manual_sync_over_the_budget_is_a_429_with_retry_after(bridged, session):
    client = bridged
    headers, provider_id, user = await connected(client)
    connection_id = await session.scalar(
        select(ProviderConnection.id).where(
            ProviderConnection.provider_id == uuid.UUID(provider_id)
        )
    )
    now = datetime.now(UTC)
    spent = [now - timedelta(hours=23, minutes=30)] + [
        now - timedelta(minutes=m) for m in range(23)
    ]
    await session.execute(
        update(ProviderConnection)
        .where(ProviderConnection.id == connection_id)
        .values(budget_requests=spent)
    )
    answer = await sync(client, headers, provider_id)
    assert is_problem(answer, 429)
    assert 1700 <= int(answer.headers["Retry-After"]) <= 1801
    assert (await bridge_stats(client, user))["requests"] == 0
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert datetime.fromisoformat(status["next_sync_at"]) >= now + timedelta(minutes=29)


async def test_the_access_url_never_appears_in_logs_audit_or_problems(
    bridged, app, session, caplog
):
    client = bridged
    caplog.set_level(logging.DEBUG)
    headers, provider_id, user = await connected(client)
    connection_id = await session.scalar(
        select(ProviderConnection.id).where(
            ProviderConnection.provider_id == uuid.UUID(provider_id)
        )
    )
    sealed = await session.scalar(
        select(ProviderToken.access_token_encrypted).where(
            ProviderToken.connection_id == connection_id
        )
    )
    access_url = app.state.ctx.vault.open(sealed, context=token_context(connection_id, "access"))
    password = access_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert len(password) > 20
    texts = []
    for kind in ("html403", "gen.", "402"):
        await fail_next(client, user, kind)
        texts.append((await sync(client, headers, provider_id)).text)
    texts.append(
        (await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)).text
    )
    audit = (await session.scalars(select(ProviderAuditLog.details))).all()
    runs = (await session.execute(text("SELECT error, error_detail FROM sync_runs"))).all()
    everything = "\n".join([caplog.text, *texts, repr(audit), repr(runs)])
    assert "testserver" in everything  # the host may be named
    assert password not in everything
    assert access_url.split("@")[0] not in everything


async def test_revoke_forgets_the_access_url(bridged, session):
    client = bridged
    headers, provider_id, _ = await connected(client)
    gone = await client.delete(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    assert gone.status_code == 204
    assert (await session.scalars(select(ProviderToken))).all() == []
    audit = (
        await session.scalars(
            select(ProviderAuditLog.details).where(ProviderAuditLog.action == "revoked")
        )
    ).all()
    assert audit == [{"at_institution": "not_supported"}]


async def test_another_dashtams_simplefin_server_is_a_source_like_the_bridge(
    bridged, app, connection, test_settings, session
):
    """Two instances: A (the worker's app) reads the Bridge look-alike for person A and serves
    its own SimpleFIN server; B (a second app of its own, its guarded pool pointed at A) takes
    A's setup token as a SimpleFIN source for person B. Both run on the test's database (the
    suite has one), each through its own AppContext."""
    a = bridged
    headers_a, provider_a, _ = await connected(a, "instance-a")
    for _ in range(2):
        assert (await sync(a, headers_a, provider_a)).status_code == 200
    accounts_a = (
        await a.get(f"/api/v1/providers/{provider_a}/accounts", headers=headers_a)
    ).json()["items"]
    served = {}
    for account in accounts_a:
        listed = await transactions_of(a, headers_a, account["id"])
        served[account["name"]] = sum(t["status"] in ("posted", "pending") for t in listed)
    made = await a.post(
        "/api/v1/simplefin/setup-tokens", headers=headers_a, json={"label": "instance B"}
    )
    assert made.status_code == 201, made.text

    async with running_app(test_settings, connection) as instance_b, asgi_client(instance_b) as b:
        instance_b.state.ctx.guarded = httpx.ASGITransport(app=app)
        headers_b = await signed_in(b, f"instance-b-{uuid.uuid4().hex[:6]}")
        provider_b = await simplefin_provider(b, headers_b)
        answer = await b.post(
            f"/api/v1/providers/{provider_b}/authorization",
            headers=headers_b,
            json={"setup_token": made.json()["setup_token"]},
        )
        assert answer.status_code == 201, answer.text
        synced = await sync(b, headers_b, provider_b)
        assert synced.status_code == 200, synced.text
        assert (synced.json()["accounts"], synced.json()["positions"]) == (3, 2)
        accounts_b = (
            await b.get(f"/api/v1/providers/{provider_b}/accounts", headers=headers_b)
        ).json()["items"]
        read = {
            account["name"]: len(await transactions_of(b, headers_b, account["id"]))
            for account in accounts_b
        }
        balances_b = {x["name"]: x["balance"]["current"] for x in accounts_b}
    assert read == served
    assert balances_b == {x["name"]: x["balance"]["current"] for x in accounts_a}


async def test_a_sync_the_budget_cannot_finish_is_not_started(bridged, session):
    """The first sync takes two requests (90 days, 60 a request): with one left of the day's
    budget, none is sent; the person is told when both fit."""
    client = bridged
    headers, provider_id, user = await connected(client)
    connection_id = await session.scalar(
        select(ProviderConnection.id).where(
            ProviderConnection.provider_id == uuid.UUID(provider_id)
        )
    )
    now = datetime.now(UTC)
    spent = [now - timedelta(hours=23)] + [now - timedelta(hours=22)] * 22
    await session.execute(
        update(ProviderConnection)
        .where(ProviderConnection.id == connection_id)
        .values(budget_requests=spent)
    )
    answer = await sync(client, headers, provider_id)
    assert is_problem(answer, 429)
    # Both fit once the 23-hour-old one is a day old.
    assert 3500 <= int(answer.headers["Retry-After"]) <= 3601
    assert (await bridge_stats(client, user))["requests"] == 0
    held = await session.scalar(
        select(ProviderConnection.budget_next_at).where(ProviderConnection.id == connection_id)
    )
    assert held >= now + timedelta(minutes=59)  # the loop waits as long


async def test_the_refresher_leaves_a_simplefin_connection_alone(bridged, app, session):
    client = bridged
    headers, provider_id, _ = await connected(client)
    ctx = app.state.ctx
    # Nothing is due, however far ahead the refresher looks, and nothing lapses.
    async with ctx.sessions() as job:
        year = datetime.now(UTC) + timedelta(days=365)
        due = await refresh.refresh_next_due(
            ctx, job, due_before=year, round_started=datetime.now(UTC)
        )
        await job.commit()
    assert due is None
    assert await loops.expire_lapsed(ctx) == 0
    refreshed = await client.post(
        f"/api/v1/providers/{provider_id}/authorization/refresh", headers=headers
    )
    assert is_problem(refreshed, 409)
    assert "no tokens to refresh" in refreshed.json()["detail"]
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert (status["status"], status["refresh_failures"], status["reconnect_by"]) == (
        "active",
        0,
        None,
    )


async def test_connecting_and_a_refused_claim_are_audited_with_the_host_only(bridged, session):
    client = bridged
    headers, provider_id, _ = await connected(client)
    _, token = await setup_token(client)
    for _ in range(2):
        await client.post(
            f"/api/v1/providers/{provider_id}/authorization",
            headers=headers,
            json={"setup_token": token},
        )
    rows = (
        await session.execute(
            select(ProviderAuditLog.action, ProviderAuditLog.details)
            .where(ProviderAuditLog.provider_id == uuid.UUID(provider_id))
            .order_by(ProviderAuditLog.created_at)
        )
    ).all()
    assert [action for action, _ in rows] == ["connected", "connected", "authorization_failed"]
    assert rows[0][1]["kind"] == "simplefin"
    assert rows[0][1]["host"] == "testserver"
    assert rows[2][1]["error"] == "already_claimed"
    # The connection stays active: a refused token changes nothing that worked.
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert status["status"] == "active"


async def test_reconnecting_with_a_new_setup_token_mends_the_error_and_starts_a_new_budget(
    bridged, session
):
    client = bridged
    headers, provider_id, user = await connected(client)
    await fail_next(client, user, "con.auth.all")
    assert (await sync(client, headers, provider_id)).status_code == 502
    connection_id = await session.scalar(
        select(ProviderConnection.id).where(
            ProviderConnection.provider_id == uuid.UUID(provider_id)
        )
    )
    now = datetime.now(UTC)
    await session.execute(
        update(ProviderConnection)
        .where(ProviderConnection.id == connection_id)
        .values(budget_requests=[now] * 24, budget_next_at=now + timedelta(hours=1))
    )
    _, token = await setup_token(client)  # fixed at the Bridge, a new token made
    again = await client.post(
        f"/api/v1/providers/{provider_id}/authorization",
        headers=headers,
        json={"setup_token": token},
    )
    assert again.status_code == 201, again.text
    assert (again.json()["status"], again.json()["action"], again.json()["error"]) == (
        "active",
        None,
        None,
    )
    assert (await sync(client, headers, provider_id)).status_code == 200


async def test_the_guarded_pool_refuses_what_a_webhook_could_not_reach(app, test_settings):
    """Outside development and testing (WEBHOOK_ALLOW_PRIVATE off), the pool a SimpleFIN
    server is read through resolves each name and refuses a private address before connecting,
    whatever the URL looked like."""
    settings = test_settings.model_copy(update={"WEBHOOK_ALLOW_PRIVATE": False})
    transport = guarded_transport(settings, app.state.ctx.tls)
    try:
        async with httpx.AsyncClient(transport=transport) as http:
            with pytest.raises(RefusedTarget, match="not a public address"):
                await http.get("https://localhost:9/simplefin/accounts")
    finally:
        await transport.aclose()
    allowed = guarded_transport(test_settings, app.state.ctx.tls)  # testing: private allowed
    try:
        async with httpx.AsyncClient(transport=allowed) as http:
            with pytest.raises(httpx.ConnectError):  # let through; nothing listens there
                await http.get("https://localhost:9/simplefin/accounts")
    finally:
        await allowed.aclose()


async def _budget_of(session, provider_id) -> list[datetime]:
    return await session.scalar(
        select(ProviderConnection.budget_requests)
        .join(Provider, Provider.id == ProviderConnection.provider_id)
        .where(Provider.id == uuid.UUID(provider_id))
        .execution_options(populate_existing=True)
    )


async def test_a_nul_in_the_bridges_text_is_taken_out_and_the_requests_are_counted(
    bridged, session
):
    """JSON carries NUL (\\u0000) and PostgreSQL's text refuses it: it is taken out of what
    the Bridge says, as the file readers do; the sync is written and its requests counted."""
    client = bridged
    headers, provider_id, user = await connected(client)
    await fail_next(client, user, "nul")
    answer = await sync(client, headers, provider_id)
    assert answer.status_code == 200, answer.text
    accounts = (
        await client.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)
    ).json()["items"]
    assert "Everyday Checking" in {a["name"] for a in accounts}
    checking = next(a for a in accounts if a["name"] == "Everyday Checking")
    listed = await transactions_of(client, headers, checking["id"])
    assert any(t["description"].endswith("(memo)") for t in listed)
    assert not any("\x00" in t["description"] for t in listed)
    assert len(await _budget_of(session, provider_id)) == 2


@pytest.mark.commits
async def test_the_requests_are_counted_even_when_the_write_fails(
    bridged, app, session, connection
):
    """Whatever refuses the write (here a trigger standing for a value the database cannot
    take), the requests the read sent are already counted: the loop's next try waits for the
    budget instead of reading again every round. (Committed: a statement failing inside the
    test's one transaction would end it.)"""
    client = bridged
    headers, provider_id, _ = await connected(client)
    await session.execute(
        text(
            "CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused'; END $$"
        )
    )
    await session.execute(
        text(
            "CREATE TRIGGER refuse BEFORE INSERT ON balance_snapshots "
            "FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse()"
        )
    )
    await session.commit()
    try:
        failed = await sync(client, headers, provider_id)
        # The claim is given back in the background (on the test's one connection): let it.
        for _ in range(100):
            if not app.state.ctx._when_back:
                break
            await asyncio.sleep(0.02)
    finally:
        await session.execute(text("DROP TRIGGER refuse ON balance_snapshots"))
        await session.commit()
    assert failed.status_code == 500
    assert (await client.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)).json()[
        "items"
    ] == []
    spent = await _budget_of(session, provider_id)
    assert len(spent) == 2
    held = await session.scalar(
        select(ProviderConnection.budget_next_at)
        .join(Provider, Provider.id == ProviderConnection.provider_id)
        .where(Provider.id == uuid.UUID(provider_id))
    )
    assert held is not None
    assert held > datetime.now(UTC) + timedelta(minutes=50)


async def test_the_bridges_5xx_or_429_is_not_asked_again_and_retry_after_holds_the_loop(
    bridged, session
):
    """Each request is one of 24 a day: a 5xx or 429 is not retried within the sync (the
    next sync the budget allows is the retry), and a Retry-After pushes that sync back."""
    client = bridged
    headers, provider_id, user = await connected(client)
    await fail_next(client, user, "503")
    answer = await sync(client, headers, provider_id)
    assert is_problem(answer, 502)
    assert answer.json()["transient"] is True
    assert (await bridge_stats(client, user))["requests"] == 1
    assert len(await _budget_of(session, provider_id)) == 1
    await fail_next(client, user, "429")
    assert is_problem(await sync(client, headers, provider_id), 502)
    assert (await bridge_stats(client, user))["requests"] == 2
    held = await session.scalar(
        select(ProviderConnection.budget_next_at)
        .join(Provider, Provider.id == ProviderConnection.provider_id)
        .where(Provider.id == uuid.UUID(provider_id))
        .execution_options(populate_existing=True)
    )
    assert held >= datetime.now(UTC) + timedelta(hours=1, minutes=59)


async def test_an_account_read_before_without_transactions_is_not_read_from_the_start(
    bridged, session
):
    """Accounts synced once that hold no transaction (a quiet savings account, holdings only)
    read from their last sync: one request, not the first sync's walk back (two, where the
    budget counted one)."""
    client = bridged
    headers, provider_id, user = await connected(client)
    assert (await sync(client, headers, provider_id)).status_code == 200
    assert (await bridge_stats(client, user))["requests"] == 2
    accounts = (
        await client.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)
    ).json()["items"]
    await session.execute(
        delete(Transaction).where(
            Transaction.account_id.in_([uuid.UUID(a["id"]) for a in accounts])
        )
    )
    assert (await sync(client, headers, provider_id)).status_code == 200
    assert (await bridge_stats(client, user))["requests"] == 3


@pytest.mark.commits
async def test_a_failed_claim_leaves_a_connection_made_active_meanwhile_active(
    app, client, connection, engine
):
    """A setup token sent twice at once: the first request's claim makes the connection
    active while the second's failure (already claimed) is being recorded. Committed, with a
    second connection of the test's own standing for the first request, its row lock held."""
    headers = await signed_in(client, f"double-{uuid.uuid4().hex[:6]}")
    provider_id = uuid.UUID(await simplefin_provider(client, headers))
    async with engine.connect() as other:
        connection_id, user_id = (
            await other.execute(
                select(ProviderConnection.id, Provider.user_id)
                .join(Provider, Provider.id == ProviderConnection.provider_id)
                .where(Provider.id == provider_id)
            )
        ).one()
    async with engine.connect() as first, engine.connect() as watcher:
        made_active = await first.begin()
        await first.execute(
            update(ProviderConnection)
            .where(ProviderConnection.id == connection_id)
            .values(status="active", error_message=None)
        )
        claimed = simplefin.ClaimFailed("already_claimed", "This setup token was already claimed")
        failing = asyncio.create_task(
            setup_tokens._record_failure(
                app.state.ctx,
                connection_id,
                claimed,
                {"user_id": user_id, "provider_id": provider_id, "connection_id": connection_id},
            )
        )
        for _ in range(250):  # until the failure's write waits for the first request's lock
            waiting = await watcher.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            )
            if waiting or failing.done():
                break
            await asyncio.sleep(0.02)
        await made_active.commit()
        await failing
        status = await watcher.scalar(
            select(ProviderConnection.status).where(ProviderConnection.id == connection_id)
        )
    assert status == "active"


async def test_a_front_door_page_at_claim_time_is_transient_not_already_claimed(bridged):
    """The Bridge's CDN answering the claim with a web page (403) is not the protocol's 403:
    the person is told to try again, not that the token may be compromised; the same token
    then connects."""
    client = bridged
    headers = await signed_in(client, f"door-{uuid.uuid4().hex[:6]}")
    provider_id = await simplefin_provider(client, headers)
    user, token = await setup_token(client)
    await fail_next(client, user, "html403")
    turned_away = await client.post(
        f"/api/v1/providers/{provider_id}/authorization",
        headers=headers,
        json={"setup_token": token},
    )
    assert is_problem(turned_away, 502)
    assert turned_away.json()["transient"] is True
    assert "web page" in turned_away.json()["detail"]
    assert "compromised" not in turned_away.json()["detail"]
    again = await client.post(
        f"/api/v1/providers/{provider_id}/authorization",
        headers=headers,
        json={"setup_token": token},
    )
    assert again.status_code == 201, again.text
    assert again.json()["status"] == "active"
