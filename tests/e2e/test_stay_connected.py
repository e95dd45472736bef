"""Staying connected and reading the money with the real HTTPS servers and the sandbox.

The refresher runs in separate processes (`python -m dashtam_api.jobs`), as it would beside the
API; the sandbox counts, per account holder, every refresh it sees and every refresh token
presented twice. Everything commits for real (`commits`: tables truncated afterwards).
"""

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text, update

from dashtam_api.context import AppContext
from dashtam_api.jobs import loops
from dashtam_api.sandbox import store
from dashtam_api.sandbox.seed import connected_sandbox
from dashtam_models import ProviderAuditLog, ProviderConnection, ProviderToken, User
from infra.demo import Browser
from tests.fixtures.environment import ROOT, TEST_ENV_FILE
from tests.helpers import authorization_url, connectable_provider

pytestmark = pytest.mark.commits


@pytest.fixture
async def ctx(worker_settings, live_servers):
    """The collaborators of a jobs process, pointed at this worker's servers."""
    settings = worker_settings.model_copy(update={"API_BASE_URL": live_servers.api_url})
    context = AppContext.open(settings)
    yield context
    await context.close()


def connected(api, browser) -> tuple[dict, str]:
    headers, path = connectable_provider(api)
    final = browser.authorize(authorization_url(api, headers, path))
    assert "<h1>Connected</h1>" in final.text
    return headers, path.removesuffix("/authorization")


async def test_connect_sync_read_refresh_and_sync_again(api, live_servers, session):
    browser = Browser(live_servers.ca_file)
    try:
        headers, provider = connected(api, browser)
    finally:
        browser.close()
    first = api.post(f"{provider}/sync", headers=headers)
    assert first.status_code == 200, first.text
    assert (first.json()["accounts"], first.json()["positions"]) == (2, 2)
    assert first.json()["transactions"]["added"] > 100  # 90 days of history, and today
    pending_before = {t["id"] for t in all_transactions(api, headers) if t["status"] == "pending"}
    assert pending_before

    accounts = api.get(f"{provider}/accounts", headers=headers).json()["items"]
    by_name = {a["name"]: a for a in accounts}
    checking, brokerage = by_name["Everyday Checking"], by_name["Brokerage"]
    assert checking["number_masked"] == "••••0001"
    assert checking["balance"]["current"] == "2450.17"  # step 1 of the documented series
    assert checking["balance"]["available"] == "2400.17"
    held = api.get(f"/api/v1/accounts/{brokerage['id']}/positions", headers=headers).json()
    vti = next(p for p in held["items"] if p["symbol"] == "VTI")
    assert (vti["quantity"], vti["price"], vti["market_value"]) == ("120.000", "267.92", "32150.40")
    total = Decimal(brokerage["balance"]["cash"]) + sum(
        Decimal(p["market_value"]) for p in held["items"]
    )
    assert Decimal(brokerage["balance"]["current"]) == total

    before = api.get(f"{provider}/authorization", headers=headers).json()
    refreshed = api.post(f"{provider}/authorization/refresh", headers=headers)
    assert refreshed.status_code == 200, refreshed.text
    after = refreshed.json()
    assert after["last_refreshed_at"] is not None
    assert after["expires_at"] > before["expires_at"]
    # The sandbox rotates refresh tokens and states their lifetime: a new deadline.
    assert after["reconnect_by"] > before["reconnect_by"]

    second = api.post(f"{provider}/sync", headers=headers)
    assert second.status_code == 200, second.text
    again = {a["name"]: a for a in api.get("/api/v1/accounts", headers=headers).json()["items"]}
    assert again["Everyday Checking"]["balance"]["current"] == "2460.42"  # + 10.25 per step
    held = api.get(f"/api/v1/accounts/{brokerage['id']}/positions", headers=headers).json()
    vti = next(p for p in held["items"] if p["symbol"] == "VTI")
    assert (vti["quantity"], vti["price"]) == ("120.125", "268.42")

    # The sandbox's clock moved a day: yesterday's pendings posted, as the same transactions.
    counts = second.json()["transactions"]
    assert counts["modified"] >= len(pending_before)
    assert counts["added"] >= 1
    after = all_transactions(api, headers)
    assert len({t["id"] for t in after}) == len(after)  # no duplicate across the pages
    now = {t["id"]: t for t in after}
    posted = [now[i] for i in pending_before if now[i]["status"] == "posted"]
    assert posted
    assert all(t["pending_external_id"] for t in posted)


def all_transactions(api, headers) -> list[dict]:
    """Every transaction of the person, page by page (cursor), newest first."""
    found, params = [], {"limit": 50}
    while True:
        page = api.get("/api/v1/transactions", headers=headers, params=params).json()
        found += page["items"]
        if page["next_cursor"] is None:
            return found
        params["cursor"] = page["next_cursor"]


async def test_sandbox_sync_refreshes_an_expired_access_token(api, live_servers, session, ctx):
    browser = Browser(live_servers.ca_file)
    try:
        headers, provider = connected(api, browser)
    finally:
        browser.close()
    await session.execute(
        update(ProviderToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.commit()
    result = api.post(f"{provider}/sync", headers=headers)
    assert result.status_code == 200, result.text
    assert result.json()["refreshed"] is True
    actions = (
        await session.scalars(select(ProviderAuditLog.action).order_by(ProviderAuditLog.created_at))
    ).all()
    assert actions == ["connected", "refreshed"]


def _refresher_processes(live_servers, count: int) -> list[subprocess.Popen]:
    env = {
        **os.environ,  # DATABASE_URL and REDIS_URL: this worker's database and Valkey index
        "DASHTAM_ENV_FILE": str(TEST_ENV_FILE),
        "API_BASE_URL": live_servers.api_url,  # where the sandbox institution answers
    }
    return [
        subprocess.Popen(
            [sys.executable, "-m", "dashtam_api.jobs", "refresh", "--until-idle"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]


def _refreshed_by(processes: list[subprocess.Popen]) -> list[int]:
    counts = []
    for process in processes:
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err
        last = out.strip().splitlines()[-1]  # "refresh: busy=3 not_due=40 refreshed=67"
        summary = dict(part.split("=") for part in last.split(": ", 1)[1].split())
        counts.append(int(summary.get("refreshed", 0)))
    return counts


async def test_three_refresher_processes_refresh_each_connection_exactly_once(
    live_servers, session, ctx
):
    seeded = await _seed(ctx, 200)
    for period in (1, 2):
        # Every access token expires within the refresher's window: all 200 are due.
        await session.execute(
            update(ProviderToken).values(expires_at=datetime.now(UTC) + timedelta(seconds=60))
        )
        await session.commit()
        if period == 1:
            counts = _refreshed_by(_refresher_processes(live_servers, 3))
        else:
            # Every refresh token was rotated by period 1's processes: three refreshers again,
            # in this process this time (three more interpreters would add CPU, not coverage),
            # each present the new one, once.
            rounds = [loops.until_idle(loops.refresh_round, ctx) for _ in range(3)]
            counts = [c.get("refreshed", 0) for c in await asyncio.gather(*rounds)]
        print(f"period {period}: refreshed per refresher {counts}")
        assert sum(counts) == 200, counts
        for one in seeded:
            stats = await store.subject_stats(ctx.redis, str(one.connection_id))
            assert stats["refreshes"] == period, (one.connection_id, stats)
            assert stats["reused"] == 0
    statuses = dict(
        (
            await session.execute(
                select(ProviderConnection.status, func.count()).group_by(ProviderConnection.status)
            )
        ).all()
    )
    assert statuses == {"active": 200}
    per_connection = (
        await session.execute(
            text(
                "SELECT count(*) FROM provider_audit_logs WHERE action = 'refreshed' "
                "GROUP BY connection_id"
            )
        )
    ).scalars()
    assert sorted(set(per_connection)) == [2]


async def test_an_on_demand_refresh_racing_the_refresher_refreshes_once(
    api, live_servers, session, ctx, worker_settings
):
    headers, _ = connectable_provider(api)  # a person who can call the API
    me = api.get("/api/v1/auth/me", headers=headers).json()
    user = await session.get(User, me["id"])
    (one,) = await _seed(ctx, 1, user=user)
    client = (worker_settings.SANDBOX_CLIENT_ID, worker_settings.SANDBOX_CLIENT_SECRET)
    slow = api.post(
        "/sandbox/_control/delay", json={"endpoint": "token", "seconds": 2}, auth=client
    )
    assert slow.status_code == 204

    background = asyncio.create_task(loops.refresh_round(ctx))
    await _until_the_slow_token_call_began(ctx)  # the refresher holds the row lock now
    on_demand = await asyncio.to_thread(
        api.post, f"/api/v1/providers/{one.provider_id}/authorization/refresh", headers=headers
    )
    counts = await background

    assert on_demand.status_code == 200, on_demand.text
    assert on_demand.json()["status"] == "active"
    assert counts["refreshed"] == 1
    stats = await store.subject_stats(ctx.redis, str(one.connection_id))
    assert (stats["refreshes"], stats["reused"]) == (1, 0)
    refreshed = (
        await session.scalars(
            select(ProviderAuditLog).where(ProviderAuditLog.action == "refreshed")
        )
    ).all()
    assert [r.details["trigger"] for r in refreshed] == ["background"]


async def _seed(ctx: AppContext, count: int, user: User | None = None, expires_in: int = 60):
    async with ctx.sessions() as seeding:
        if user is not None:
            user = await seeding.merge(user)
        seeded = await connected_sandbox(
            ctx, seeding, count=count, user=user, expires_in=expires_in
        )
        await seeding.commit()
    return seeded


async def _until_the_slow_token_call_began(ctx: AppContext, timeout: float = 10) -> None:
    """The sandbox takes the injected delay when a token call arrives: once it is gone, a
    refresh is at the institution, holding its connection's lock for the next two seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if not await ctx.redis.exists(f"{store.PREFIX}delay:token"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no refresh reached the institution")


async def test_stopping_the_loops_lets_a_refresh_under_way_finish(
    api, live_servers, session, ctx, worker_settings
):
    """The stop signal comes while the institution is answering: the refresh still completes
    and is kept (cut in half, a rotated refresh token would be lost), and nothing new starts."""
    # Due for the refresher (window 5 min), not for a sync's refresh on use (margin 1 min).
    seeded = await _seed(ctx, 2, expires_in=120)
    client = (worker_settings.SANDBOX_CLIENT_ID, worker_settings.SANDBOX_CLIENT_SECRET)
    slow = api.post(
        "/sandbox/_control/delay", json={"endpoint": "token", "seconds": 1}, auth=client
    )
    assert slow.status_code == 204
    settings = ctx.settings.model_copy(update={"REFRESH_CONCURRENCY": 1})
    jobs = loops.Jobs(AppContext.open(settings))
    jobs.start()
    try:
        await _until_the_slow_token_call_began(ctx)
        await asyncio.wait_for(jobs.wind_down(), 30)
    finally:
        await jobs.ctx.close()
    stats = [await store.subject_stats(ctx.redis, str(s.connection_id)) for s in seeded]
    assert sorted(s["refreshes"] for s in stats) == [0, 1]  # the one under way, not the next
    refreshed = (
        await session.scalars(
            select(ProviderAuditLog.connection_id).where(ProviderAuditLog.action == "refreshed")
        )
    ).all()
    assert len(refreshed) == 1
