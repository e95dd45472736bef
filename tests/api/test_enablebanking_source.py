"""Enable Banking as a source: a person picks a bank, consents at the look-alike's stand-in bank
page (sandbox/enablebanking.py), the bank's redirect is forwarded to /oauth/callback as the
callback server forwards it, and the connection syncs.

The app reaches the look-alike as it would Enable Banking, on its shared pool (ctx.transport),
here pointed at the app itself in-process.
"""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from dashtam_api.connections import refresh
from dashtam_api.jobs import loops
from dashtam_api.providers.registry import build_registry
from dashtam_api.sources import enablebanking_accounts
from dashtam_api.sources import enablebanking_api as api
from dashtam_api.webhooks import notices
from dashtam_core.vault import VaultError, token_context
from dashtam_models import ProviderAuditLog, ProviderToken
from tests.api.test_auth import is_problem
from tests.api.test_connections import callback, signed_in

EB = "/sandbox/enablebanking"
BANK = {"name": "Sandbox Bank", "country": "FI"}
BALANCES = ("current", "available")


@pytest.fixture
async def eb(app, client):
    """The client, with the app's shared pool pointed at the app itself."""
    ctx = app.state.ctx
    saved = ctx.transport
    ctx.transport = httpx.ASGITransport(app=app)
    try:
        yield client
    finally:
        ctx.transport = saved


async def provider(client, headers) -> str:
    made = await client.post(
        "/api/v1/providers",
        headers=headers,
        json={"provider_key": "enablebanking", "alias": f"My bank {uuid.uuid4().hex[:6]}"},
    )
    assert made.status_code == 201, made.text
    return made.json()["id"]


async def consent(client, settings, headers, provider_id, psu: str, bank=BANK) -> dict:
    """Start, approve at the stand-in bank as ``psu``, forward the redirect: the outcome."""
    started = await client.post(
        f"/api/v1/providers/{provider_id}/authorization", headers=headers, json={"bank": bank}
    )
    assert started.status_code == 201, started.text
    page = urlsplit(started.json()["authorization_url"])
    approved = await client.get(f"{page.path}/approve", params={"psu": psu})
    assert approved.status_code == 303
    redirect = urlsplit(approved.headers["location"])
    assert f"{redirect.scheme}://{redirect.netloc}{redirect.path}" == (
        settings.CALLBACK_BASE_URL + "/oauth/callback"
    )
    query = {k: v[0] for k, v in parse_qs(redirect.query).items()}
    outcome = await callback(client, settings, **query)
    assert outcome.status_code == 200, outcome.text
    return outcome.json()


async def connected(client, settings, who="eb") -> tuple[dict, str, str]:
    headers = await signed_in(client, f"{who}-{uuid.uuid4().hex[:6]}")
    provider_id = await provider(client, headers)
    psu = f"psu-{uuid.uuid4().hex[:8]}"
    assert (await consent(client, settings, headers, provider_id, psu))["outcome"] == "connected"
    return headers, provider_id, psu


async def sync(client, headers, provider_id) -> httpx.Response:
    return await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers)


async def holdings(client, headers, provider_id) -> dict[str, list[dict]]:
    """Each account's name to its transactions."""
    accounts = (
        await client.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)
    ).json()["items"]
    found = {}
    for account in accounts:
        page = await client.get(
            f"/api/v1/accounts/{account['id']}/transactions",
            headers=headers,
            params={"limit": 200, "from": "2000-01-01"},
        )
        assert page.status_code == 200, page.text
        found[account["id"]] = page.json()["items"]
    return found


async def status_of(client, headers, provider_id) -> dict:
    return (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()


async def test_the_provider_type_is_listed_and_banks_come_by_country(eb, auth_headers):
    types = (await eb.get("/api/v1/provider-types", headers=auth_headers)).json()
    listed = next(t for t in types if t["key"] == "enablebanking")
    assert (listed["kind"], listed["configured"], listed["supplies"]) == (
        "consent",
        True,
        ["bank"],
    )
    assert listed["supports"]["revocation"]
    assert not listed["supports"]["refresh"]
    provider_id = await provider(eb, auth_headers)
    banks = await eb.get(
        f"/api/v1/providers/{provider_id}/banks", headers=auth_headers, params={"country": "FI"}
    )
    assert banks.status_code == 200, banks.text
    by_name = {b["name"]: b for b in banks.json()["items"]}
    assert set(by_name) == {"Sandbox Bank", "Nordic Test Bank"}
    assert by_name["Nordic Test Bank"]["maximum_consent_validity"] == 90 * 86400
    bad = await eb.get(
        f"/api/v1/providers/{provider_id}/banks", headers=auth_headers, params={"country": "fi"}
    )
    assert is_problem(bad, 422)
    every = await eb.get(f"/api/v1/providers/{provider_id}/banks", headers=auth_headers)
    assert {b["country"] for b in every.json()["items"]} == {"FI", "DE"}


async def test_a_bank_not_listed_is_a_409_and_a_malformed_one_a_422(eb, auth_headers):
    provider_id = await provider(eb, auth_headers)
    path = f"/api/v1/providers/{provider_id}/authorization"
    unknown = await eb.post(
        path, headers=auth_headers, json={"bank": {"name": "No Such Bank", "country": "FI"}}
    )
    assert is_problem(unknown, 409)
    assert "No Such Bank" in unknown.json()["detail"]
    malformed = await eb.post(
        path, headers=auth_headers, json={"bank": {"name": "Sandbox Bank", "country": "Finland"}}
    )
    assert is_problem(malformed, 422)
    nothing = await eb.post(path, headers=auth_headers)
    assert is_problem(nothing, 409)
    assert "picking a bank" in nothing.json()["detail"]
    simplefin = await eb.post(
        "/api/v1/providers", headers=auth_headers, json={"provider_key": "simplefin", "alias": "S"}
    )
    elsewhere = await eb.post(
        f"/api/v1/providers/{simplefin.json()['id']}/authorization",
        headers=auth_headers,
        json={"bank": BANK},
    )
    assert is_problem(elsewhere, 409)
    assert "not connected by picking a bank" in elsewhere.json()["detail"]


async def test_connect_then_sync_twice_and_the_pending_books_without_a_duplicate(
    eb, app, test_settings, session
):
    client = eb
    headers, provider_id, _ = await connected(client, test_settings)
    status = await status_of(client, headers, provider_id)
    assert status["status"] == "active"
    # The bank gives 180 days: the consent ends then (reconnect_by), as asked of the bank.
    ends = datetime.fromisoformat(status["reconnect_by"])
    assert abs(ends - (datetime.now(UTC) + timedelta(days=180))) < timedelta(minutes=5)
    (stored,) = (await session.execute(select(ProviderToken))).scalars().all()
    # Sealed, bound to its connection: it opens in its own context only.
    vault = app.state.ctx.vault
    held = vault.open(
        stored.access_token_encrypted, context=token_context(stored.connection_id, "access")
    )
    assert enablebanking_accounts.held_of(held)[0]
    with pytest.raises(VaultError):
        vault.open(stored.access_token_encrypted, context=token_context(uuid.uuid4(), "access"))

    first = await sync(client, headers, provider_id)
    assert first.status_code == 200, first.text
    assert first.json()["accounts"] == 2
    added = first.json()["transactions"]["added"]
    # Sandbox Bank lists CLBD, ITAV and XPCD: booked is CLBD (the pending left out), available
    # ITAV (the pending in); XPCD, the pending in too, is not taken for the booked one.
    accounts = (
        await client.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)
    ).json()["items"]
    for account in accounts:
        balance = {k: Decimal(v) for k, v in account["balance"].items() if k in BALANCES}
        assert balance["available"] == balance["current"] - Decimal("6.40"), account
        assert account["currency"] == "EUR"
    before = await holdings(client, headers, provider_id)
    pendings = [t for ts in before.values() for t in ts if t["status"] == "pending"]
    assert len(pendings) == 2  # one per account, each with its own entry_reference
    assert all(t["amount"] == "-6.40" for t in pendings)

    second = await sync(client, headers, provider_id)
    assert second.status_code == 200, second.text
    # Only what changed: a salary per account; the card payment booked under a new
    # entry_reference took over its pending row instead of adding one.
    assert second.json()["transactions"]["added"] == 2
    after = await holdings(client, headers, provider_id)
    for account_id, listed in after.items():
        assert len(listed) == len(before[account_id]) + 1
        cafe = [t for t in listed if t["amount"] == "-6.40"]
        assert [t["status"] for t in cafe] == ["posted"]
        assert cafe[0]["id"] in {p["id"] for p in pendings}  # the same row, now posted
    assert added > 60


async def test_entries_without_a_reference_are_not_doubled_by_the_next_read(eb, test_settings):
    client = eb
    headers = await signed_in(client, f"nordic-{uuid.uuid4().hex[:6]}")
    provider_id = await provider(client, headers)
    nordic = {"name": "Nordic Test Bank", "country": "FI"}
    psu = f"psu-{uuid.uuid4().hex[:8]}"
    assert (await consent(client, test_settings, headers, provider_id, psu, nordic))[
        "outcome"
    ] == "connected"
    status = await status_of(client, headers, provider_id)
    # This bank gives 90 days at most: the consent asked for no more.
    ends = datetime.fromisoformat(status["reconnect_by"])
    assert ends < datetime.now(UTC) + timedelta(days=90, minutes=5)
    assert (await sync(client, headers, provider_id)).status_code == 200
    second = await sync(client, headers, provider_id)
    assert second.json()["transactions"]["added"] == 1  # the salary
    (listed,) = (await holdings(client, headers, provider_id)).values()
    assert len({(t["occurred_at"], t["amount"], t["description"]) for t in listed}) == len(listed)


async def test_a_reconnection_gets_new_uids_and_keeps_every_account_and_transaction(
    eb, test_settings
):
    client = eb
    headers, provider_id, psu = await connected(client, test_settings)
    assert (await sync(client, headers, provider_id)).status_code == 200
    before = await holdings(client, headers, provider_id)
    # A new consent (the old one is revoked at the bank): new uids, the same hashes.
    again = await consent(client, test_settings, headers, provider_id, psu)
    assert again["outcome"] == "connected"
    second = await sync(client, headers, provider_id)
    assert second.status_code == 200, second.text
    assert second.json()["transactions"]["added"] == 2  # the salaries, nothing doubled
    after = await holdings(client, headers, provider_id)
    assert set(after) == set(before)
    for account_id, listed in before.items():
        assert {t["id"] for t in listed} <= {t["id"] for t in after[account_id]}


async def test_the_banks_daily_limit_is_a_spent_budget_not_an_error(eb, test_settings):
    client = eb
    headers, provider_id, psu = await connected(client, test_settings)
    for _ in range(4):
        assert (await sync(client, headers, provider_id)).status_code == 200
    # Our own budget: four reads a day, the fifth waits.
    fifth = await sync(client, headers, provider_id)
    assert is_problem(fifth, 429)
    assert int(fifth.headers["Retry-After"]) > 3600
    reads = (await client.get(f"{EB}/_control/{psu}")).json()
    assert reads == {"balances": 8, "transactions": 8}  # two accounts, four reads each


async def test_a_429_from_the_bank_keeps_the_connection_healthy(eb, test_settings):
    client = eb
    headers, provider_id, psu = await connected(client, test_settings)
    await client.post(
        f"{EB}/_control/{psu}/fail", json={"kind": "ASPSP_RATE_LIMIT_EXCEEDED", "times": 1}
    )
    refused = await sync(client, headers, provider_id)
    assert is_problem(refused, 429)
    status = await status_of(client, headers, provider_id)
    assert status["status"] == "active"
    assert "ASPSP_RATE_LIMIT_EXCEEDED" in status["sync_error"]
    assert datetime.fromisoformat(status["next_sync_at"]) > datetime.now(UTC) + timedelta(hours=5)


async def test_a_429_part_way_keeps_the_accounts_read_and_waits(eb, test_settings):
    client = eb
    headers, provider_id, psu = await connected(client, test_settings)
    # The first account's two reads pass; the second account's balances are refused.
    await client.post(
        f"{EB}/_control/{psu}/fail", json={"kind": "ASPSP_RATE_LIMIT_EXCEEDED", "after": 2}
    )
    refused = await sync(client, headers, provider_id)
    assert is_problem(refused, 429)
    written = await holdings(client, headers, provider_id)
    assert len(written) == 1
    assert len(next(iter(written.values()))) > 30
    status = await status_of(client, headers, provider_id)
    assert status["status"] == "active"
    assert datetime.fromisoformat(status["next_sync_at"]) > datetime.now(UTC) + timedelta(hours=5)


def test_configured_only_with_an_application_outside_development(test_settings):
    production = test_settings.model_copy(update={"ENVIRONMENT": "production"})
    spec = build_registry(production)["enablebanking"]
    assert not spec.configured
    assert api.application(production) is None
    # (A key that signs: one that does not leaves it unconfigured, test_enablebanking_key.py.)
    key_file = str(api.application(test_settings).key_file)
    own = production.model_copy(
        update={"ENABLE_BANKING_APP_ID": "app-1", "ENABLE_BANKING_KEY_FILE": key_file}
    )
    assert build_registry(own)["enablebanking"].configured
    assert api.application(own).base_url == "https://api.enablebanking.com"
    # In testing, unconfigured: the look-alike, with the key `inv setup` made.
    local = api.application(test_settings)
    assert local.base_url == test_settings.API_BASE_URL + "/sandbox/enablebanking"
    assert local.key_file.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        ("EXPIRED_SESSION", "expired"),
        ("ASPSP_PSU_ACTION_REQUIRED", "error"),
        ("ASPSP_ERROR", "active"),
    ],
)
async def test_session_errors_are_mapped(eb, test_settings, failure, status):
    client = eb
    headers, provider_id, psu = await connected(client, test_settings)
    await client.post(f"{EB}/_control/{psu}/fail", json={"kind": failure})
    answer = await sync(client, headers, provider_id)
    assert is_problem(answer, 502)
    assert answer.json()["institution_error"] == failure
    shown = await status_of(client, headers, provider_id)
    assert shown["status"] == status
    if status != "active":
        assert shown["action"] == "reconnect"


async def test_revoke_closes_the_session_at_the_bank(eb, test_settings, session):
    client = eb
    headers, provider_id, _ = await connected(client, test_settings)
    revoked = await client.delete(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    assert revoked.status_code == 204
    audit = (
        (
            await session.execute(
                select(ProviderAuditLog).where(ProviderAuditLog.action == "revoked")
            )
        )
        .scalars()
        .all()
    )
    assert [a.details["at_institution"] for a in audit] == ["revoked"]


async def test_denied_at_the_bank_stays_pending(eb, test_settings, auth_headers):
    provider_id = await provider(eb, auth_headers)
    started = await eb.post(
        f"/api/v1/providers/{provider_id}/authorization", headers=auth_headers, json={"bank": BANK}
    )
    page = urlsplit(started.json()["authorization_url"]).path
    denied = await eb.post(page, data={"decision": "deny", "psu": "someone"})
    query = {k: v[0] for k, v in parse_qs(urlsplit(denied.headers["location"]).query).items()}
    assert query["error"] == "access_denied"
    outcome = await callback(eb, test_settings, **query)
    assert outcome.json()["outcome"] == "denied"
    assert (await status_of(eb, auth_headers, provider_id))["status"] == "pending"


async def test_the_consents_end_is_warned_of_then_expires_and_a_new_consent_mends_it(
    eb, app, test_settings, session
):
    client = eb
    ctx = app.state.ctx
    headers, provider_id, psu = await connected(client, test_settings)
    async with ctx.sessions() as job:
        year = datetime.now(UTC) + timedelta(days=365)
        due = await refresh.refresh_next_due(
            ctx, job, due_before=year, round_started=datetime.now(UTC)
        )
        await job.commit()
    assert due is None  # nothing to refresh: a consent is given again, not refreshed
    token = await session.scalar(select(ProviderToken))
    token.refresh_expires_at = datetime.now(UTC) + timedelta(hours=47)  # the consent's end
    await session.commit()
    assert await notices.reauth_required(ctx) == 1
    token.refresh_expires_at = datetime.now(UTC) - timedelta(minutes=1)
    await session.commit()
    assert await loops.expire_lapsed(ctx) == 1
    status = await status_of(client, headers, provider_id)
    assert (status["status"], status["action"]) == ("expired", "reconnect")
    assert (await consent(client, test_settings, headers, provider_id, psu))["outcome"] == (
        "connected"
    )
    status = await status_of(client, headers, provider_id)
    assert status["status"] == "active"
    assert datetime.fromisoformat(status["reconnect_by"]) > datetime.now(UTC) + timedelta(days=170)
