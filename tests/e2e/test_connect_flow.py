"""The whole connect flow with the real API, callback and sandbox servers over HTTPS.

A browser's path, followed by Location headers: the institution's page, the decision, the
redirect to the callback server, its forward to the API. The servers commit for real, so every
test here is marked `commits` (tables truncated afterwards).
"""

import os
import subprocess

import pytest
from sqlalchemy import select, text

from dashtam_core.vault import Vault, token_context
from dashtam_models import ProviderAuditLog, ProviderToken
from infra.demo import Browser
from infra.runtime.binaries import postgres_bin_dir
from tests.helpers import authorization_url, connectable_provider

pytestmark = pytest.mark.commits


@pytest.fixture
def browser(live_servers):
    b = Browser(live_servers.ca_file)
    yield b
    b.close()


async def plaintext_tokens(session, worker_settings) -> tuple[str, str]:
    row = await session.scalar(select(ProviderToken))
    vault = Vault.from_spec(worker_settings.TOKEN_ENCRYPTION_KEYS)
    access = vault.open(
        row.access_token_encrypted, context=token_context(row.connection_id, "access")
    )
    refresh = vault.open(
        row.refresh_token_encrypted, context=token_context(row.connection_id, "refresh")
    )
    return access, refresh


def database_dump(worker_settings) -> str:
    url = worker_settings.database_url
    result = subprocess.run(
        [
            str(postgres_bin_dir() / "pg_dump"),
            "-h",
            url.host,
            "-p",
            str(url.port),
            "-U",
            url.username,
            "--data-only",
            "--inserts",
            url.database,
        ],
        env={**os.environ, "PGPASSWORD": url.password},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


async def test_complete_flow_stores_only_sealed_tokens(
    api, browser, session, worker_settings, live_servers
):
    headers, path = connectable_provider(api)
    final = browser.authorize(authorization_url(api, headers, path))
    assert final.status_code == 200
    assert "<h1>Connected</h1>" in final.text
    assert "E2E &lt;Bank&gt; is now connected" in final.text  # escaped, never raw
    assert [s.status for s in browser.steps] == [200, 303, 200]
    assert "code=" not in final.text

    status = api.get(path, headers=headers).json()
    assert status["status"] == "active"
    assert status["scope"] == "accounts positions"

    access, refresh = await plaintext_tokens(session, worker_settings)
    stored = (
        await session.execute(
            text(
                "SELECT encode(access_token_encrypted, 'escape') || encode(refresh_token_encrypted, "
                "'escape') FROM provider_tokens"
            )
        )
    ).scalar()
    assert access not in stored
    assert refresh not in stored
    dump = database_dump(worker_settings)
    assert "provider_tokens" in dump  # the dump holds the table's rows...
    assert access not in dump  # ...but never the tokens
    assert refresh not in dump

    # The institution accepts the token Dashtam holds.
    accounts = api.get("/sandbox/api/accounts", headers={"Authorization": f"Bearer {access}"})
    assert accounts.status_code == 200
    assert accounts.json()["accounts"][0]["id"].startswith("SBX-")

    actions = (await session.scalars(select(ProviderAuditLog.action))).all()
    assert actions == ["connected"]


async def test_replayed_callback_is_refused(api, browser, session):
    headers, path = connectable_provider(api)
    browser.authorize(authorization_url(api, headers, path))
    callback_url = browser.redirects[-1]
    replay = browser.http.get(callback_url)
    assert replay.status_code == 400
    assert "already used" in replay.text
    assert api.get(path, headers=headers).json()["status"] == "active"
    assert await session.scalar(text("SELECT count(*) FROM provider_tokens")) == 1


async def test_denied_authorization_stays_pending_and_is_audited(api, browser, session):
    headers, path = connectable_provider(api)
    final = browser.authorize(authorization_url(api, headers, path), decision="deny")
    assert final.status_code == 200
    assert "<h1>Not connected</h1>" in final.text
    assert api.get(path, headers=headers).json()["status"] == "pending"
    audit = await session.scalar(select(ProviderAuditLog))
    assert audit.action == "authorization_denied"
    assert audit.details["error"] == "access_denied"
    assert audit.ip_address is not None
    assert await session.scalar(text("SELECT count(*) FROM provider_tokens")) == 0


async def test_institution_failure_shows_an_error_and_keeps_its_audit_row(
    api, browser, session, live_servers, worker_settings
):
    headers, path = connectable_provider(api)
    url = authorization_url(api, headers, path)
    control = api.post(
        "/sandbox/_control/fail",
        json={"endpoint": "token", "status": 500},
        auth=(worker_settings.SANDBOX_CLIENT_ID, worker_settings.SANDBOX_CLIENT_SECRET),
    )
    assert control.status_code == 204
    final = browser.authorize(url)
    assert final.status_code == 502
    assert "<h1>Connection failed</h1>" in final.text
    assert worker_settings.SANDBOX_CLIENT_SECRET not in final.text
    status = api.get(path, headers=headers).json()
    assert status["status"] == "error"
    actions = (await session.scalars(select(ProviderAuditLog.action))).all()
    assert actions == ["authorization_failed"]


async def test_revoke_reaches_the_institution(api, browser, session, worker_settings):
    headers, path = connectable_provider(api)
    browser.authorize(authorization_url(api, headers, path))
    _, refresh = await plaintext_tokens(session, worker_settings)
    await session.rollback()  # end the read so the next queries see the server's commits
    assert api.delete(path, headers=headers).status_code == 204
    assert api.get(path, headers=headers).json()["status"] == "revoked"
    assert await session.scalar(text("SELECT count(*) FROM provider_tokens")) == 0
    # The institution no longer honours the refresh token Dashtam held.
    client = (worker_settings.SANDBOX_CLIENT_ID, worker_settings.SANDBOX_CLIENT_SECRET)
    reuse = api.post(
        "/sandbox/oauth/token",
        auth=client,
        data={"grant_type": "refresh_token", "refresh_token": refresh},
    )
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    audit = (
        await session.scalars(select(ProviderAuditLog).order_by(ProviderAuditLog.created_at))
    ).all()
    assert [a.action for a in audit] == ["connected", "revoked"]
    assert audit[-1].details == {"at_institution": "revoked"}


async def test_a_simplefin_app_reads_the_sandbox_over_https(api, browser, live_servers, connection):
    """What a budgeting app does, over the real servers: a person connects the sandbox and
    syncs it, makes a setup token; the app (a client written from the protocol) claims it and
    reads accounts and transactions, pending ones included, verifying the project's CA.
    (``connection``: what the servers committed is truncated afterwards.)"""
    import ssl

    import httpx

    from tests.fixtures.simplefin_client import Refused, SimplefinClient

    headers, path = connectable_provider(api)
    browser.authorize(authorization_url(api, headers, path))
    synced = api.post(path.replace("/authorization", "/sync"), headers=headers)
    assert synced.status_code == 200, synced.text
    made = api.post("/api/v1/simplefin/setup-tokens", headers=headers, json={"label": "e2e"})
    assert made.status_code == 201, made.text

    tls = ssl.create_default_context(cafile=live_servers.ca_file)
    async with httpx.AsyncClient(verify=tls, timeout=30) as http:
        app = SimplefinClient(http)
        access_url = await app.claim(made.json()["setup_token"])
        assert access_url.startswith("https://")
        assert "@localhost:" in access_url
        everything = await app.accounts(access_url, pending=1)
        posted_only = await app.accounts(access_url)
        with pytest.raises(Refused):
            await app.claim(made.json()["setup_token"])
    accounts = api.get("/api/v1/accounts", headers=headers).json()["items"]
    assert {a["id"] for a in everything["accounts"]} == {a["id"] for a in accounts}
    served = [t for a in everything["accounts"] for t in a["transactions"]]
    pending = [t for t in served if t.get("pending")]
    assert pending
    assert all(t["posted"] == 0 for t in pending)
    assert len(served) > len(pending) > 0
    assert sum(len(a["transactions"]) for a in posted_only["accounts"]) == len(served) - len(
        pending
    )
