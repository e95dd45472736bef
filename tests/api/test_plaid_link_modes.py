"""Plaid Link's two modes, and Plaid's answers without what they always have.

Update mode renews the item a connection holds (the same item, accounts, transactions and
cursor): when its login needs the person, when Plaid said its consent ends (PENDING_EXPIRATION,
PENDING_DISCONNECT: the connection still works), or when the client asks for it. An answer of
Plaid's missing its fields is a 502 problem, never a 500 (here Plaid is the look-alike behind a
transport that strips one endpoint's answer, the edge to the outside world)."""

import base64
import json
import uuid

import httpx
import pytest
from sqlalchemy import select

from dashtam_models import ProviderAuditLog, ProviderConnection
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.api.test_plaid_source import (
    PLAID,
    accounts_of,
    connected,
    deliver,
    item_of,
    link,
    signed,
    sync,
)
from tests.api.test_plaid_source import plaid as plaid  # the fixture


async def state_of(session, provider_id) -> dict:
    session.expire_all()
    return await session.scalar(
        select(ProviderConnection.source_state).where(
            ProviderConnection.provider_id == uuid.UUID(provider_id)
        )
    )


async def test_a_consent_plaid_says_ends_is_renewed_in_update_mode(plaid, session):
    client = plaid
    headers, provider_id, login = await connected(client)
    assert (await sync(client, headers, provider_id)).status_code == 200
    before = await accounts_of(client, headers, provider_id)
    item_id = await item_of(session, provider_id)
    ending = await deliver(client, *await signed(client, item_id, "PENDING_EXPIRATION"))
    assert ending.json() == {"received": "reauth_required"}
    assert (await state_of(session, provider_id))["reauth"]["code"] == "PENDING_EXPIRATION"

    # The connection is still active; its Link renews the same item.
    begun = await link(client, headers, provider_id, login)
    assert begun["mode"] == "update"
    stats = (await client.get(f"{PLAID}/_control/{login}")).json()
    assert (len(stats["items"]), stats["removed"]) == (1, [])
    state = await state_of(session, provider_id)
    assert (state["item_id"], "reauth" in state) == (item_id, False)
    assert state["cursor"]  # the same item's cursor
    after = await accounts_of(client, headers, provider_id)
    assert {n: a["id"] for n, a in after.items()} == {n: a["id"] for n, a in before.items()}
    renewed = await sync(client, headers, provider_id)
    assert renewed.json()["transactions"] == {"added": 0, "modified": 0, "removed": 0}
    # Renewed: the next Link is a new item again.
    assert (await link(client, headers, provider_id, login))["mode"] == "new"


async def test_the_client_asks_for_a_mode(plaid, session):
    client = plaid
    headers = await signed_in(client, f"plaid-{uuid.uuid4().hex[:6]}")
    made = await client.post(
        "/api/v1/providers", headers=headers, json={"provider_key": "plaid", "alias": "Plaid"}
    )
    provider_id = made.json()["id"]
    path = f"/api/v1/providers/{provider_id}/authorization"
    # Nothing to update before a first Link.
    refused = await client.post(path, headers=headers, json={"mode": "update"})
    assert is_problem(refused, 409)
    assert is_problem(await client.post(path, headers=headers, json={}), 422)
    assert is_problem(await client.post(path, headers=headers, json={"mode": "later"}), 422)
    login = f"user_{uuid.uuid4().hex[:8]}"
    await link(client, headers, provider_id, login)
    asked = await client.post(path, headers=headers, json={"mode": "update"})
    assert asked.status_code == 201, asked.text
    assert asked.json()["mode"] == "update"
    fresh = await client.post(
        path, headers=headers, json={"mode": "new", "products": ["investments"]}
    )
    assert fresh.json()["mode"] == "new"


class Stripping(httpx.AsyncBaseTransport):
    """The look-alike, with one endpoint's answers stripped to a request id."""

    def __init__(self, inner: httpx.AsyncBaseTransport, path: str):
        self.inner, self.path = inner, path

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = await self.inner.handle_async_request(request)
        if request.url.path.endswith(self.path):
            await answer.aread()
            return httpx.Response(200, json={"request_id": "stripped"})
        return answer


@pytest.fixture
def stripped(app):
    """Strip ``path``'s answers from here on (the plaid fixture restores the transport)."""

    def strip(path: str) -> None:
        app.state.ctx.transport = Stripping(app.state.ctx.transport, path)

    return strip


@pytest.mark.parametrize(
    "path", ["/link/token/create", "/item/public_token/exchange", "/accounts/get"]
)
async def test_a_plaid_answer_without_its_fields_is_a_502(plaid, stripped, path):
    client = plaid
    headers = await signed_in(client, f"plaid-{uuid.uuid4().hex[:6]}")
    made = await client.post(
        "/api/v1/providers", headers=headers, json={"provider_key": "plaid", "alias": "Plaid"}
    )
    provider_id = made.json()["id"]
    if path != "/link/token/create":
        begun = await client.post(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
        token = begun.json()["link_token"]
        completed = await client.post(f"{PLAID}/link/complete", json={"link_token": token})
    stripped(path)
    if path == "/link/token/create":
        answer = await client.post(
            f"/api/v1/providers/{provider_id}/authorization", headers=headers
        )
    else:
        answer = await client.post(
            f"/api/v1/providers/{provider_id}/authorization/exchange",
            headers=headers,
            json={"public_token": completed.json()["public_token"]},
        )
    assert is_problem(answer, 502), answer.text
    assert answer.json()["institution_error"] == "invalid_response"


async def test_a_verification_key_answer_without_its_key_is_not_a_500(
    plaid, app, session, stripped
):
    client = plaid
    _, provider_id, _ = await connected(client)
    raw, signature = await signed(client, await item_of(session, provider_id))
    header = json.loads(base64.urlsafe_b64decode(signature.split(".")[0] + "=="))
    await app.state.ctx.redis.delete(f"plaid:webhook-key:{header['kid']}")
    stripped("/webhook_verification_key/get")
    answer = await deliver(client, raw, signature)
    assert is_problem(answer, 502), answer.text
    assert answer.json()["institution_error"] == "invalid_response"


async def test_revoking_removes_the_item_at_plaid(plaid, session):
    client = plaid
    headers, provider_id, login = await connected(client)
    gone = await client.delete(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    assert gone.status_code == 204
    stats = (await client.get(f"{PLAID}/_control/{login}")).json()
    assert stats["removed"] == stats["items"]  # Plaid stops counting (and billing) it
    audit = (
        await session.scalars(
            select(ProviderAuditLog.details).where(ProviderAuditLog.action == "revoked")
        )
    ).all()
    assert audit == [{"at_institution": "revoked"}]


class Meanwhile(httpx.AsyncBaseTransport):
    """The look-alike; before it answers ``path`` the first time, ``then()`` happens (Plaid's
    webhook arriving while a sync reads)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, path: str, then):
        self.inner, self.path, self.then = inner, path, then

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(self.path) and self.then is not None:
            then, self.then = self.then, None
            await then()
        return await self.inner.handle_async_request(request)


async def test_a_notice_that_comes_while_a_sync_reads_is_kept(plaid, app, session):
    client = plaid
    headers, provider_id, login = await connected(client)
    assert (await sync(client, headers, provider_id)).status_code == 200
    ending = await signed(client, await item_of(session, provider_id), "PENDING_EXPIRATION")

    async def webhook():
        assert (await deliver(client, *ending)).json() == {"received": "reauth_required"}

    ctx = app.state.ctx
    ctx.transport = Meanwhile(ctx.transport, "/transactions/sync", webhook)
    assert (await sync(client, headers, provider_id)).status_code == 200
    # The sync's own state written, the notice set while it read kept with it.
    state = await state_of(session, provider_id)
    assert (state["reauth"]["code"], bool(state["cursor"])) == ("PENDING_EXPIRATION", True)
    assert (await link(client, headers, provider_id, login))["mode"] == "update"
