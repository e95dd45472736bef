"""Plaid as a source: a person connects Plaid's look-alike this API serves in testing
(sandbox/plaid_lookalike.py) through Link (the stand-in Link's completion, then the public token
exchanged through the API), and syncs.

The app reaches the look-alike as it would Plaid, on its shared pool (ctx.transport), here
pointed at the app itself in-process (httpx's ASGI transport).
"""

import base64
import json
import uuid
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from dashtam_models import ProviderConnection, WebhookDelivery
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in

PLAID = "/sandbox/plaid"


@pytest.fixture
async def plaid(app, client):
    """The client, with the app's pool to the institutions pointed at the app itself."""
    ctx = app.state.ctx
    saved = ctx.transport
    ctx.transport = httpx.ASGITransport(app=app)
    try:
        yield client
    finally:
        ctx.transport = saved


async def link(client, headers, provider_id, login, products=None) -> dict:
    """A Link started through the API and completed at the stand-in Link: its start."""
    started = await client.post(
        f"/api/v1/providers/{provider_id}/authorization",
        headers=headers,
        json={"products": products} if products else None,
    )
    assert started.status_code == 201, started.text
    begun = started.json()
    completed = await client.post(
        f"{PLAID}/link/complete", json={"link_token": begun["link_token"], "username": login}
    )
    assert completed.status_code == 200, completed.text
    exchanged = await client.post(
        f"/api/v1/providers/{provider_id}/authorization/exchange",
        headers=headers,
        json={"public_token": completed.json()["public_token"]},
    )
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.json()["status"] == "active"
    return begun


async def connected(client, products=None) -> tuple[dict, str, str]:
    """A person with a Plaid provider linked to a new bank login: (headers, provider, login)."""
    headers = await signed_in(client, f"plaid-{uuid.uuid4().hex[:6]}")
    made = await client.post(
        "/api/v1/providers",
        headers=headers,
        json={"provider_key": "plaid", "alias": f"Plaid {uuid.uuid4().hex[:6]}"},
    )
    assert made.status_code == 201, made.text
    login = f"user_{uuid.uuid4().hex[:8]}"
    begun = await link(client, headers, made.json()["id"], login, products)
    assert begun["mode"] == "new"
    assert begun["link_url"].startswith("https://")
    return headers, made.json()["id"], login


async def sync(client, headers, provider_id) -> httpx.Response:
    return await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers)


async def control(client, login, what, **body) -> None:
    answer = await client.post(f"{PLAID}/_control/{login}/{what}", json=body or None)
    assert answer.status_code == 204, answer.text


async def accounts_of(client, headers, provider_id) -> dict:
    page = await client.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)
    return {a["name"]: a for a in page.json()["items"]}


async def transactions_of(client, headers, account_id) -> list[dict]:
    page = await client.get(
        f"/api/v1/accounts/{account_id}/transactions",
        headers=headers,
        params={"limit": 200, "from": "2000-01-01"},
    )
    assert page.status_code == 200, page.text
    return page.json()["items"]


async def test_the_provider_type_is_listed_configured(client, auth_headers):
    types = (await client.get("/api/v1/provider-types", headers=auth_headers)).json()
    plaid = next(t for t in types if t["key"] == "plaid")
    assert (plaid["kind"], plaid["configured"], plaid["supplies"]) == ("link", True, ["link"])


async def test_connect_sync_twice_and_pendings_post_without_duplicates(plaid, session):
    client = plaid
    headers, provider_id, login = await connected(client)
    first = await sync(client, headers, provider_id)
    assert first.status_code == 200, first.text
    assert first.json()["accounts"] == 3
    added = first.json()["transactions"]["added"]
    assert added > 25  # more than a page of the look-alike: has_more was followed

    accounts = await accounts_of(client, headers, provider_id)
    checking = accounts["Plaid Checking"]
    assert checking["number_masked"].endswith("0000")
    # A card's balance is what is owed: negative in Dashtam's sign.
    assert Decimal(accounts["Plaid Credit Card"]["balance"]["current"]) == Decimal("-410.22")
    rows = await transactions_of(client, headers, checking["id"])
    by_description = {r["description"]: r for r in rows}
    # Plaid's amounts are positive for money out: money out is negative here, pay is positive.
    assert Decimal(by_description["Blue Bottle Coffee"]["amount"]) == Decimal("-4.50")
    assert by_description["Blue Bottle Coffee"]["status"] == "pending"
    assert Decimal(by_description["Acme Payroll"]["amount"]) == Decimal("2500")
    assert by_description["Blue Bottle Coffee"]["institution_type"] == "FOOD_AND_DRINK_COFFEE"

    # The second sync from the cursor: nothing changed at the bank, nothing is added.
    again = await sync(client, headers, provider_id)
    assert again.json()["transactions"] == {"added": 0, "modified": 0, "removed": 0}
    state = await session.scalar(
        select(ProviderConnection.source_state).where(
            ProviderConnection.provider_id == uuid.UUID(provider_id)
        )
    )
    assert state["cursor"]
    assert state["item_id"]

    # The bank moves on: three pendings post under new ids (removed + added naming them), the
    # parking one is removed, a new pending appears.
    await control(client, login, "advance")
    moved = await sync(client, headers, provider_id)
    assert moved.json()["transactions"] == {"added": 1, "modified": 3, "removed": 1}
    rows = await transactions_of(client, headers, checking["id"])
    coffee = [r for r in rows if r["description"] == "Blue Bottle Coffee"]
    assert [(c["status"], c["id"]) for c in coffee] == [
        ("posted", by_description["Blue Bottle Coffee"]["id"])  # the same row, posted
    ]
    parking = next(r for r in rows if r["description"] == "City Parking")
    assert parking["status"] == "cancelled"
    assert next(r for r in rows if r["description"] == "Trader Joe's")["status"] == "pending"

    # The posted groceries' amount changes at the bank (modified), the new pending posts.
    await control(client, login, "advance")
    tipped = await sync(client, headers, provider_id)
    assert tipped.json()["transactions"] == {"added": 0, "modified": 2, "removed": 0}
    rows = await transactions_of(client, headers, checking["id"])
    groceries = [r for r in rows if r["description"] == "Safeway"]
    assert [(g["status"], Decimal(g["amount"])) for g in groceries] == [
        ("posted", Decimal("-67.18"))
    ]
    assert len(rows) == len({r["id"] for r in rows})

    # A posted card charge the bank takes back (removed): cancelled, nothing else touched.
    card = accounts["Plaid Credit Card"]
    before = {r["id"]: r["status"] for r in await transactions_of(client, headers, card["id"])}
    await control(client, login, "advance")
    taken_back = await sync(client, headers, provider_id)
    assert taken_back.json()["transactions"] == {"added": 0, "modified": 0, "removed": 1}
    after = {r["id"]: r["status"] for r in await transactions_of(client, headers, card["id"])}
    changed = {i: (before[i], s) for i, s in after.items() if before[i] != s}
    assert list(changed.values()) == [("posted", "cancelled")]
    assert after.keys() == before.keys()


async def test_investments_positions_trades_with_fees_and_dividends(plaid):
    client = plaid
    headers, provider_id, _ = await connected(client, ["transactions", "investments"])
    synced = await sync(client, headers, provider_id)
    assert synced.status_code == 200, synced.text
    assert synced.json()["positions"] == 2
    brokerage = (await accounts_of(client, headers, provider_id))["Plaid Brokerage"]
    positions = (
        await client.get(f"/api/v1/accounts/{brokerage['id']}/positions", headers=headers)
    ).json()["items"]
    vti = next(p for p in positions if p["symbol"] == "VTI")
    assert (Decimal(vti["quantity"]), Decimal(vti["cost_basis"])) == (
        Decimal("12.5"),
        Decimal("2100"),
    )
    rows = {r["kind"] + ":" + (r["symbol"] or ""): r for r in await transactions_of(
        client, headers, brokerage["id"]
    )}  # fmt: skip
    assert set(rows) == {"trade:VTI", "trade:BND", "dividend:VTI"}
    buy, sell, dividend = rows["trade:VTI"], rows["trade:BND"], rows["dividend:VTI"]
    # Plaid's investment amounts are positive when cash leaves (a buy): negated here.
    assert (Decimal(buy["amount"]), Decimal(buy["quantity"]), Decimal(buy["fees"])) == (
        Decimal("-601"),
        Decimal("2.5"),
        Decimal("1"),
    )
    assert (Decimal(sell["amount"]), Decimal(sell["quantity"])) == (Decimal("359.5"), -5)
    assert Decimal(dividend["amount"]) == Decimal("8.12")
    again = await sync(client, headers, provider_id)
    assert again.json()["transactions"] == {"added": 0, "modified": 0, "removed": 0}


async def test_a_mutation_during_pagination_restarts_it(plaid):
    client = plaid
    headers, provider_id, login = await connected(client)
    await control(client, login, "fail", kind="MUTATION")
    first = await sync(client, headers, provider_id)
    assert first.status_code == 200, first.text
    stats = (await client.get(f"{PLAID}/_control/{login}")).json()
    # The bank moved on between the pages: the pages were read again from the start.
    assert stats["step"] == 1
    assert stats["calls"]["transactions_sync"] >= 4
    checking = (await accounts_of(client, headers, provider_id))["Plaid Checking"]
    rows = await transactions_of(client, headers, checking["id"])
    descriptions = [r["description"] for r in rows]
    # Step 1's data only, once: no pending beside its posted self, nothing twice.
    assert descriptions.count("Blue Bottle Coffee") == 1
    assert "City Parking" not in descriptions
    assert len(rows) == len({r["id"] for r in rows})


async def test_pages_that_keep_changing_fail_the_sync_transiently_with_nothing_kept(plaid, session):
    client = plaid
    headers, provider_id, login = await connected(client)
    await control(client, login, "fail", kind="MUTATION", times=4)
    failed = await sync(client, headers, provider_id)
    assert is_problem(failed, 502)
    assert (failed.json()["institution_error"], failed.json()["transient"]) == (
        "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
        True,
    )
    checking = (await accounts_of(client, headers, provider_id)).get("Plaid Checking")
    assert checking is None  # nothing of the read was written
    state = await session.scalar(
        select(ProviderConnection.source_state).where(
            ProviderConnection.provider_id == uuid.UUID(provider_id)
        )
    )
    assert "cursor" not in state
    assert (await sync(client, headers, provider_id)).status_code == 200


async def test_item_login_required_needs_the_person_and_update_mode_mends_it(plaid):
    client = plaid
    headers, provider_id, login = await connected(client)
    assert (await sync(client, headers, provider_id)).status_code == 200
    await control(client, login, "fail", kind="ITEM_LOGIN_REQUIRED")
    refused = await sync(client, headers, provider_id)
    assert is_problem(refused, 502)
    assert refused.json()["institution_error"] == "ITEM_LOGIN_REQUIRED"
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert (status["status"], status["action"]) == ("error", "reconnect")
    assert "update mode" in status["error"]

    begun = await link(client, headers, provider_id, login)
    assert begun["mode"] == "update"
    mended = await sync(client, headers, provider_id)
    assert mended.status_code == 200, mended.text
    assert mended.json()["transactions"]["added"] == 0  # the same item, from its cursor


async def test_a_rate_limit_is_transient_and_an_invalid_token_an_error(plaid):
    client = plaid
    headers, provider_id, login = await connected(client)
    await control(client, login, "fail", kind="TRANSACTIONS_SYNC_LIMIT")
    limited = await sync(client, headers, provider_id)
    assert limited.status_code == 502, limited.text
    assert (limited.json()["institution_error"], limited.json()["transient"]) == (
        "TRANSACTIONS_SYNC_LIMIT",
        True,
    )
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert status["status"] == "active"

    await control(client, login, "fail", kind="INVALID_ACCESS_TOKEN")
    refused = await sync(client, headers, provider_id)
    assert refused.json()["institution_error"] == "INVALID_ACCESS_TOKEN"
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert status["status"] == "error"


async def test_a_new_link_keeps_every_account_and_transaction(plaid, app):
    client = plaid
    headers, provider_id, login = await connected(client)
    assert (await sync(client, headers, provider_id)).status_code == 200
    await control(client, login, "advance")
    assert (await sync(client, headers, provider_id)).status_code == 200
    before = await accounts_of(client, headers, provider_id)
    held = {
        name: {r["id"]: r for r in await transactions_of(client, headers, a["id"])}
        for name, a in before.items()
    }

    # A new Link of the same bank login: a new item, every account and transaction renamed.
    begun = await link(client, headers, provider_id, login)
    assert begun["mode"] == "new"
    await app.state.ctx.settle()
    stats = (await client.get(f"{PLAID}/_control/{login}")).json()
    assert stats["removed"] == [stats["items"][0]]  # the replaced item removed at Plaid
    after = await accounts_of(client, headers, provider_id)
    assert {n: a["id"] for n, a in after.items()} == {n: a["id"] for n, a in before.items()}
    resynced = await sync(client, headers, provider_id)
    assert resynced.status_code == 200, resynced.text
    assert resynced.json()["transactions"]["added"] == 0
    for name, account in after.items():
        rows = {r["id"]: r for r in await transactions_of(client, headers, account["id"])}
        assert rows.keys() == held[name].keys(), name
        assert {i: r["status"] for i, r in rows.items()} == {
            i: r["status"] for i, r in held[name].items()
        }


async def test_an_exchange_without_a_started_link_is_refused(plaid):
    client = plaid
    headers, provider_id, _ = await connected(client)
    again = await client.post(
        f"/api/v1/providers/{provider_id}/authorization/exchange",
        headers=headers,
        json={"public_token": "public-sandbox-nothing"},
    )
    assert is_problem(again, 409)


async def item_of(session, provider_id) -> str:
    state = await session.scalar(
        select(ProviderConnection.source_state).where(
            ProviderConnection.provider_id == uuid.UUID(provider_id)
        )
    )
    return state["item_id"]


async def signed(client, item_id, code="SYNC_UPDATES_AVAILABLE", age_seconds=0) -> tuple:
    made = await client.post(
        f"{PLAID}/_control/webhook",
        json={"item_id": item_id, "webhook_code": code, "age_seconds": age_seconds},
    )
    assert made.status_code == 200, made.text
    return made.json()["body"].encode(), made.json()["plaid_verification"]


async def deliver(client, raw: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Plaid-Verification"] = signature
    return await client.post("/api/v1/plaid/webhook", content=raw, headers=headers)


async def test_a_verified_sync_webhook_syncs_and_an_item_error_needs_the_person(
    plaid, app, session
):
    client = plaid
    headers, provider_id, login = await connected(client)
    assert (await sync(client, headers, provider_id)).status_code == 200
    item_id = await item_of(session, provider_id)
    await control(client, login, "advance")

    answer = await deliver(client, *await signed(client, item_id))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": "sync"}
    await app.state.ctx.settle()
    checking = (await accounts_of(client, headers, provider_id))["Plaid Checking"]
    coffee = next(
        r
        for r in await transactions_of(client, headers, checking["id"])
        if r["description"] == "Blue Bottle Coffee"
    )
    assert coffee["status"] == "posted"  # the webhook's sync read the bank's step 1

    hook = await client.post(
        "/api/v1/webhooks",
        headers=headers,
        json={
            "url": "https://hooks.example.com/in",
            "events": ["connection.error", "connection.reauth_required"],
        },
    )
    assert hook.status_code == 201, hook.text
    ending = await deliver(client, *await signed(client, item_id, "PENDING_EXPIRATION"))
    assert ending.json() == {"received": "reauth_required"}
    notices = (await session.scalars(select(WebhookDelivery.payload))).all()
    assert [(n["type"], n["data"]["status"]) for n in notices] == [
        ("connection.reauth_required", "active")
    ]
    assert notices[0]["data"]["reconnect_by"]

    hurt = await deliver(client, *await signed(client, item_id, "ERROR"))
    assert hurt.json() == {"received": "needs_person"}
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert (status["status"], status["error"].split(":")[0]) == ("error", "ITEM_LOGIN_REQUIRED")
    assert "update mode" in status["error"]
    repaired = await deliver(client, *await signed(client, item_id, "LOGIN_REPAIRED"))
    assert repaired.json() == {"received": "repaired"}
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert status["status"] == "active"
    unknown = await deliver(client, *await signed(client, "no-such-item"))
    assert unknown.json() == {"received": "unknown_item"}


async def test_an_unsigned_or_badly_signed_webhook_is_refused(plaid, app, session):
    client = plaid
    _, provider_id, _ = await connected(client)
    item_id = await item_of(session, provider_id)
    raw, signature = await signed(client, item_id)
    header, claims, _ = signature.split(".")

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    kid = json.loads(base64.urlsafe_b64decode(header + "=="))["kid"]
    refusals = {
        "unsigned": (raw, None),
        "not a JWT": (raw, "nonsense"),
        "another body": (raw.replace(b"true", b"false"), signature),
        "stale": await signed(client, item_id, age_seconds=6 * 60),
        "alg none": (raw, f"{b64({'alg': 'none', 'kid': kid})}.{claims}."),
        "HS256": (raw, f"{b64({'alg': 'HS256', 'kid': kid})}.{claims}.c2ln"),
        "unknown key": (raw, f"{b64({'alg': 'ES256', 'kid': 'nokey'})}.{claims}.c2ln"),
        "bad signature": (raw, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")),
    }
    for why, (body, header_value) in refusals.items():
        refused = await deliver(client, body, header_value)
        assert is_problem(refused, 401), (why, refused.text)
    # The same signature on the body it was made for is believed.
    assert (await deliver(client, raw, signature)).json() == {"received": "sync"}
    await app.state.ctx.settle()


async def test_the_link_page_opens_link_and_hands_the_public_token_back_once(plaid):
    client = plaid
    headers = await signed_in(client, f"plaid-{uuid.uuid4().hex[:6]}")
    made = await client.post(
        "/api/v1/providers", headers=headers, json={"provider_key": "plaid", "alias": "Plaid"}
    )
    provider_id = made.json()["id"]
    begun = (
        await client.post(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    path = httpx.URL(begun["link_url"]).path
    page = await client.get(path)
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    # Offline: the look-alike's stand-in script, from this API; nothing from elsewhere.
    assert "script-src 'self'" in policy
    assert "cdn.plaid.com" not in policy
    # The page's one inline style carries the answer's nonce (no 'unsafe-inline' for it).
    nonce = policy.split("style-src 'nonce-")[1].split("'")[0]
    assert f'<style nonce="{nonce}">' in page.text
    assert '<script src="/sandbox/plaid/link-initialize.js">' in page.text
    assert f'data-token="{begun["link_token"]}"' in page.text
    for script in ("/sandbox/plaid/link-initialize.js", "/api/v1/link/link.js"):
        served = await client.get(script)
        assert (served.status_code, served.headers["content-type"]) == (
            200,
            "text/javascript; charset=utf-8",
        )
        assert "Plaid.create" in served.text or "create:" in served.text

    completed = await client.post(
        f"{PLAID}/link/complete", json={"link_token": begun["link_token"], "username": "u1"}
    )
    body = {"public_token": completed.json()["public_token"]}
    exchanged = await client.post(f"{path}/exchange", json=body)
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.json()["status"] == "active"
    assert is_problem(await client.post(f"{path}/exchange", json=body), 404)
    assert (await client.get(path)).status_code == 400  # used: the page says so
