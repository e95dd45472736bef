"""Enable Banking as real banks answer it where clients broke (issue 36's review): the period
of transactions a strict bank serves (90 days inclusive, or fewer, its refusal naming the
earliest day or not), a listing cut short, accounts without an identification hash, the
session a reconnection replaces closed only once the new one is committed, a session refused
here closed at once."""

import uuid
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, text

from dashtam_api.connections import refresh
from dashtam_api.connections import service as connections
from dashtam_api.sources import enablebanking
from dashtam_api.sync import service as sync_service
from dashtam_models import ProviderAuditLog, ProviderConnection
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.api.test_enablebanking_lookalike import headers as app_headers
from tests.api.test_enablebanking_source import (
    EB,
    consent,
    holdings,
    provider,
    status_of,
    sync,
)


@pytest.fixture
async def eb(app, client):
    """The client, with the app's shared pool pointed at the app itself (as in
    test_enablebanking_source.py)."""
    ctx = app.state.ctx
    saved = ctx.transport
    ctx.transport = httpx.ASGITransport(app=app)
    try:
        yield client
    finally:
        ctx.transport = saved


GERMAN = {"name": "Testbank Deutschland", "country": "DE"}
NORDIC = {"name": "Nordic Test Bank", "country": "FI"}
CARDS_ONLY = {"name": "Kartenbank", "country": "DE"}


async def _connected(client, settings, bank: dict | None = None) -> tuple[dict, str, str]:
    headers = await signed_in(client, f"ebr-{uuid.uuid4().hex[:6]}")
    provider_id = await provider(client, headers)
    psu = f"psu-{uuid.uuid4().hex[:8]}"
    outcome = await consent(client, settings, headers, provider_id, psu, **_bank(bank))
    assert outcome["outcome"] == "connected", outcome
    return headers, provider_id, psu


def _bank(bank: dict | None) -> dict:
    return {"bank": bank} if bank else {}


def _oldest(listed: list[dict]) -> date:
    return min(date.fromisoformat(t["occurred_at"][:10]) for t in listed)


async def test_a_strict_bank_is_asked_for_90_days_inclusive_never_91(eb, test_settings, app):
    today = datetime.now(UTC).date()
    sent = app_headers(test_settings)
    headers, provider_id, psu = await _connected(eb, test_settings)
    first = await sync(eb, headers, provider_id)
    assert first.status_code == 200, first.text
    for listed in (await holdings(eb, headers, provider_id)).values():
        # The whole 90 days at once, not a shorter period after a refusal.
        assert _oldest(listed) == today - timedelta(days=89)
    status = await status_of(eb, headers, provider_id)
    assert status["sync_error"] is None
    # The look-alike refuses 91 days as strict banks do.
    uid = await _a_uid(eb, app, test_settings, f"{psu}:Sandbox Bank|FI")
    too_long = await eb.get(
        f"{EB}/accounts/{uid}/transactions",
        headers=sent,
        params={"date_from": (today - timedelta(days=90)).isoformat()},
    )
    assert too_long.status_code == 422
    assert too_long.json()["error"] == "WRONG_TRANSACTIONS_PERIOD"


async def _a_uid(client, app, settings, psu_at_bank: str) -> str:
    """A uid of the PSU's latest session at the bank, from the look-alike's own record."""
    session_id = await app.state.ctx.redis.get(f"sandbox:eb:latest:{psu_at_bank}")
    found = await client.get(f"{EB}/sessions/{session_id}", headers=app_headers(settings))
    return found.json()["accounts"][0]


async def test_a_bank_naming_its_earliest_day_is_asked_again_from_it(eb, test_settings):
    headers, provider_id, _ = await _connected(eb, test_settings, GERMAN)
    first = await sync(eb, headers, provider_id)
    assert first.status_code == 200, first.text
    today = datetime.now(UTC).date()
    for listed in (await holdings(eb, headers, provider_id)).values():
        # Testbank Deutschland serves 60 days and says so: read from that day, not fewer.
        assert today - timedelta(days=59) <= _oldest(listed) <= today - timedelta(days=55)


async def test_a_refusal_naming_no_day_is_asked_again_for_the_last_30(eb, test_settings):
    headers, provider_id, psu = await _connected(eb, test_settings)
    # The first account's balances pass; its transactions' period is refused, once.
    await eb.post(
        f"{EB}/_control/{psu}/fail", json={"kind": "WRONG_TRANSACTIONS_PERIOD", "after": 1}
    )
    first = await sync(eb, headers, provider_id)
    assert first.status_code == 200, first.text
    today = datetime.now(UTC).date()
    oldest = sorted(
        _oldest(listed) for listed in (await holdings(eb, headers, provider_id)).values()
    )
    assert oldest[0] < today - timedelta(days=80)  # the other account: 90 days
    assert today - timedelta(days=29) <= oldest[1] <= today - timedelta(days=25)


async def test_a_listing_cut_short_cancels_no_pending_it_did_not_reach(eb, test_settings):
    headers, provider_id, psu = await _connected(eb, test_settings)
    assert (await sync(eb, headers, provider_id)).status_code == 200
    pendings = [
        t for ts in (await holdings(eb, headers, provider_id)).values() for t in ts
        if t["status"] == "pending"
    ]  # fmt: skip
    assert len(pendings) == 2
    # Pages of one entry, and the bank hands its first key back: the listing stops early.
    await eb.post(f"{EB}/_control/{psu}/paging", json={"size": 1, "repeat_key": True})
    cut = await sync(eb, headers, provider_id)
    assert cut.status_code == 200, cut.text
    assert cut.json()["transactions"]["removed"] == 0
    after = {t["id"]: t for ts in (await holdings(eb, headers, provider_id)).values() for t in ts}
    assert [after[p["id"]]["status"] for p in pendings] == ["pending", "pending"]
    assert "cut_short" in (await status_of(eb, headers, provider_id))["sync_error"]
    # Whole again: the payment books onto its pending row.
    await eb.post(f"{EB}/_control/{psu}/paging", json={})
    assert (await sync(eb, headers, provider_id)).status_code == 200
    after = {t["id"]: t for ts in (await holdings(eb, headers, provider_id)).values() for t in ts}
    assert [after[p["id"]]["status"] for p in pendings] == ["posted", "posted"]


async def test_an_account_without_a_hash_or_iban_is_kept_across_reconnections(eb, test_settings):
    headers, provider_id, psu = await _connected(eb, test_settings, GERMAN)
    assert (await sync(eb, headers, provider_id)).status_code == 200
    before = await holdings(eb, headers, provider_id)
    assert len(before) == 2  # the Girokonto (a hash) and the card (its masked number only)
    again = await consent(eb, test_settings, headers, provider_id, psu, bank=GERMAN)
    assert again["outcome"] == "connected"
    second = await sync(eb, headers, provider_id)
    assert second.status_code == 200, second.text
    after = await holdings(eb, headers, provider_id)
    assert set(after) == set(before)  # no account added by the new uids
    accounts = (await eb.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)).json()[
        "items"
    ]
    assert sorted(a["name"] for a in accounts) == ["Girokonto account", "Kreditkarte account"]


async def test_an_account_known_only_by_its_uid_is_left_out_and_said(eb, test_settings):
    headers, provider_id, _ = await _connected(eb, test_settings, NORDIC)
    assert (await sync(eb, headers, provider_id)).status_code == 200
    accounts = (await eb.get(f"/api/v1/providers/{provider_id}/accounts", headers=headers)).json()[
        "items"
    ]
    assert [a["name"] for a in accounts] == ["Everyday account"]
    said = (await status_of(eb, headers, provider_id))["sync_error"]
    assert "Prepaid account" in said
    assert "no lasting identity" in said


@pytest.mark.commits  # the refusal's audit row is written outside the request's transaction
async def test_a_session_refused_here_is_closed_at_the_bank(eb, test_settings, app, connection):
    headers = await signed_in(eb, f"ebr-{uuid.uuid4().hex[:6]}")
    provider_id = await provider(eb, headers)
    psu = f"psu-{uuid.uuid4().hex[:8]}"
    started = await eb.post(
        f"/api/v1/providers/{provider_id}/authorization", headers=headers, json={"bank": CARDS_ONLY}
    )
    page = urlsplit(started.json()["authorization_url"])
    approved = await eb.get(f"{page.path}/approve", params={"psu": psu})
    query = {k: v[0] for k, v in parse_qs(urlsplit(approved.headers["location"]).query).items()}
    answer = await eb.post(
        "/api/v1/oauth/callback",
        json=query,
        headers={"X-Dashtam-Callback-Secret": test_settings.CALLBACK_SHARED_SECRET},
    )
    assert is_problem(answer, 502)
    assert answer.json()["institution_error"] == "NO_ACCOUNTS_ADDED"
    assert "Prepaid account" in answer.json()["detail"]
    redis = app.state.ctx.redis
    opened = await redis.get(f"sandbox:eb:latest:{psu}:Kartenbank|DE")
    shown = await eb.get(f"{EB}/sessions/{opened}", headers=app_headers(test_settings))
    assert shown.json()["status"] == "CLOSED"
    assert (await status_of(eb, headers, provider_id))["status"] != "active"


async def test_the_replaced_session_is_closed_only_once_the_new_one_is_committed(
    eb, test_settings, app
):
    ctx = app.state.ctx
    headers, provider_id, psu = await _connected(eb, test_settings)
    redis = ctx.redis
    latest = f"sandbox:eb:latest:{psu}:Sandbox Bank|FI"
    old = await redis.get(latest)
    sent = app_headers(test_settings)

    async def code_and_state() -> dict:
        started = await eb.post(
            f"/api/v1/providers/{provider_id}/authorization",
            headers=headers,
            json={"bank": {"name": "Sandbox Bank", "country": "FI"}},
        )
        page = urlsplit(started.json()["authorization_url"])
        approved = await eb.get(f"{page.path}/approve", params={"psu": psu})
        return {k: v[0] for k, v in parse_qs(urlsplit(approved.headers["location"]).query).items()}

    # A new consent whose commit never comes: the old session is not closed.
    query = await code_and_state()
    async with ctx.sessions() as session:
        outcome = await connections.complete(
            session=session, db=ctx.db, redis=redis, settings=ctx.settings,
            registry=ctx.registry, vault=ctx.vault, tls=ctx.tls, state=query["state"],
            code=query["code"], error=None, error_description=None, ip=None, user_agent=None,
            ctx=ctx,
        )  # fmt: skip
        assert outcome["outcome"] == "connected"
        await session.rollback()
    await ctx.settle()
    shown = await eb.get(f"{EB}/sessions/{old}", headers=sent)
    assert shown.json()["status"] == "REVOKED"  # replaced at the bank, never closed by us

    # Committed (the callback's request): the session it replaces is closed after it.
    replaced = old  # the connection still holds it: the new session was rolled back
    assert (await consent(eb, test_settings, headers, provider_id, psu))["outcome"] == "connected"
    await ctx.settle()
    shown = await eb.get(f"{EB}/sessions/{replaced}", headers=sent)
    assert shown.json()["status"] == "CLOSED"


async def test_a_bank_requiring_psu_headers_is_read_when_the_person_syncs_and_never_unattended(
    eb, test_settings, app, session
):
    ctx = app.state.ctx
    banks = await eb.get(
        f"{EB}/aspsps", headers=app_headers(test_settings), params={"country": "DE"}
    )
    german = next(b for b in banks.json()["aspsps"] if b["name"] == GERMAN["name"])
    assert german["required_psu_headers"] == ["Psu-Ip-Address", "Psu-User-Agent"]
    headers, provider_id, psu = await _connected(eb, test_settings, GERMAN)
    # The person's own sync carries their address and user agent: attended, not counted.
    mine = await eb.post(
        f"/api/v1/providers/{provider_id}/sync", headers=headers | {"User-Agent": "Firefox/140"}
    )
    assert mine.status_code == 200, mine.text
    assert mine.json()["accounts"] == 2
    assert (await eb.get(f"{EB}/_control/{psu}")).json() == {}  # no unattended read
    # The background loop does not try (the bank would refuse) and waits a day.
    connection_id = await session.scalar(
        select(ProviderConnection.id).where(ProviderConnection.provider_id == provider_id)
    )
    loop = await sync_service.sync_connection(
        ctx, connection_id, trigger=refresh.Trigger.BACKGROUND, stale_only=False
    )
    assert loop.kind == "over_budget"
    assert loop.retry_at > datetime.now(UTC) + timedelta(hours=23)
    shown = await status_of(eb, headers, provider_id)
    assert shown["status"] == "active"
    assert "only while you are there" in shown["sync_error"]
    assert (await eb.get(f"{EB}/_control/{psu}")).json() == {}


async def test_the_lookalike_refuses_an_unattended_read_of_a_bank_requiring_psu_headers(
    eb, test_settings, app
):
    _, _, psu = await _connected(eb, test_settings, GERMAN)
    uid = await _a_uid(eb, app, test_settings, f"{psu}:{GERMAN['name']}|DE")
    sent = app_headers(test_settings)
    unattended = await eb.get(f"{EB}/accounts/{uid}/balances", headers=sent)
    assert unattended.status_code == 429
    assert unattended.json()["error"] == "ASPSP_RATE_LIMIT_EXCEEDED"
    attended = await eb.get(
        f"{EB}/accounts/{uid}/balances", headers=sent | {"Psu-Ip-Address": "192.0.2.1"}
    )
    assert attended.status_code == 200


def test_psu_headers_are_the_persons_public_address_and_agent(test_settings):
    production = test_settings.model_copy(update={"ENVIRONMENT": "production"})
    person = {"ip": "93.184.216.34", "user_agent": "Firefox/140\r\nX-Evil: 1"}
    assert enablebanking.attended(person, production) == {
        "Psu-Ip-Address": "93.184.216.34",
        "Psu-User-Agent": "Firefox/140X-Evil: 1",
    }
    # A private or loopback address is refused by banks (actualbudget/actual#8032): not sent.
    for ip in ("10.1.2.3", "127.0.0.1", "::1", "not an address", None):
        assert enablebanking.attended({"ip": ip}, production) is None
    assert enablebanking.attended(None, production) is None
    assert enablebanking.attended({"ip": "127.0.0.1"}, test_settings) == {
        "Psu-Ip-Address": "127.0.0.1"
    }


@pytest.mark.commits  # the refusal's audit row is written outside the request's transaction
async def test_a_refused_auth_is_audited_authorization_failed(
    eb, test_settings, connection, session
):
    headers = await signed_in(eb, f"ebr-{uuid.uuid4().hex[:6]}")
    provider_id = await provider(eb, headers)
    await eb.post(f"{EB}/_control/_auth/fail", json={"kind": "ASPSP_ERROR"})
    refused = await eb.post(
        f"/api/v1/providers/{provider_id}/authorization",
        headers=headers | {"User-Agent": "Firefox/140"},
        json={"bank": {"name": "Sandbox Bank", "country": "FI"}},
    )
    assert is_problem(refused, 502)
    assert refused.json()["institution_error"] == "ASPSP_ERROR"
    rows = (
        await session.execute(
            select(ProviderAuditLog.action, ProviderAuditLog.details, ProviderAuditLog.user_agent)
            .where(ProviderAuditLog.provider_id == uuid.UUID(provider_id))
        )
    ).all()  # fmt: skip
    assert [(r.action, r.details["error"], r.details["step"], r.user_agent) for r in rows] == [
        ("authorization_failed", "ASPSP_ERROR", "auth", "Firefox/140")
    ]


async def test_an_account_quiet_for_months_is_read_back_90_days_at_most(eb, test_settings, session):
    headers, provider_id, _ = await _connected(eb, test_settings)
    assert (await sync(eb, headers, provider_id)).status_code == 200
    # Nothing new for months: the last sync's window would now start 200 days back.
    await session.execute(
        text(
            "UPDATE transactions SET posted_at = posted_at - interval '200 days',"
            " transacted_at = transacted_at - interval '200 days'"
        )
    )
    await session.commit()
    again = await sync(eb, headers, provider_id)
    assert again.status_code == 200, again.text
    assert (await status_of(eb, headers, provider_id))["sync_error"] is None
    # All 90 days were read again (not a shorter period after a refusal): every row is back.
    today = datetime.now(UTC).date()
    for listed in (await holdings(eb, headers, provider_id)).values():
        assert _oldest(listed) == today - timedelta(days=89)


async def test_booked_only_reads_no_pending_and_the_booked_payment_once(eb, test_settings, app):
    ctx = app.state.ctx
    saved = ctx.settings
    ctx.settings = saved.model_copy(update={"ENABLE_BANKING_BOOKED_ONLY": True})
    try:
        headers, provider_id, _ = await _connected(eb, test_settings)
        assert (await sync(eb, headers, provider_id)).status_code == 200
        first = await holdings(eb, headers, provider_id)
        assert not [t for ts in first.values() for t in ts if t["status"] != "posted"]
        second = await sync(eb, headers, provider_id)
        assert second.json()["transactions"]["added"] == 4  # the card payment, the salary
        for listed in (await holdings(eb, headers, provider_id)).values():
            assert [t["status"] for t in listed if t["amount"] == "-6.40"] == ["posted"]
    finally:
        ctx.settings = saved
