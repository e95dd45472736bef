"""What the public Plaid webhook endpoint spends and believes: made-up signing keys cost Plaid
a bounded number of calls for the whole deployment, a body is read no further than its cap
even when it says nothing of its length, a webhook is believed once, and a key Plaid has
expired is refused once Plaid says so (asked again when a new key appears); a webhook that
comes while a sync runs is synced once that one is done."""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from dashtam_api.plaid_webhooks.router import MAX_BODY_BYTES
from dashtam_api.plaid_webhooks.verify import KEY_FETCHES
from dashtam_api.sync.service import WANTED
from dashtam_models import ProviderConnection
from tests.api.test_auth import is_problem
from tests.api.test_plaid_source import PLAID, connected, control, deliver, item_of, sync
from tests.api.test_plaid_source import plaid as plaid  # the fixture
from tests.api.test_plaid_source import signed as signed_for


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def signed(client, code: str, key: str = "main") -> tuple[bytes, str]:
    made = await client.post(
        f"{PLAID}/_control/webhook",
        json={"item_id": "no-such-item", "webhook_code": code, "key": key},
    )
    assert made.status_code == 200, made.text
    return made.json()["body"].encode(), made.json()["plaid_verification"]


async def test_made_up_keys_cost_plaid_a_bounded_number_of_calls(plaid):
    client = plaid
    claims = b64({"iat": 1, "request_body_sha256": "0" * 64})
    # A kid not of Plaid's shape is refused before anything is asked.
    for n in range(KEY_FETCHES + 5):
        odd = f"{b64({'alg': 'ES256', 'kid': f'nokey{n}'})}.{claims}.c2ln"
        refused = await deliver(client, b"{}", odd)
        assert is_problem(refused, 401)
        assert "no key of Plaid's" in refused.json()["detail"]
    # Each new one of Plaid's shape is asked for, up to the deployment's limit a minute.
    answers = []
    for _ in range(KEY_FETCHES + 3):
        made_up = f"{b64({'alg': 'ES256', 'kid': str(uuid.uuid4())})}.{claims}.c2ln"
        answers.append(await deliver(client, b"{}", made_up))
    assert [a.status_code for a in answers] == [401] * KEY_FETCHES + [503] * 3
    assert answers[-1].headers["retry-after"] == "60"
    assert is_problem(answers[-1], 503)


async def test_a_body_without_a_length_is_read_no_further_than_the_cap(plaid):
    client = plaid
    sent = []

    async def endless():
        for _ in range(64):
            sent.append(1)
            yield b" " * 4096

    answer = await client.post(
        "/api/v1/plaid/webhook",
        content=endless(),
        headers={"Content-Type": "application/json", "Plaid-Verification": "x.y.z"},
    )
    assert "content-length" not in answer.request.headers
    assert is_problem(answer, 413), answer.text
    assert len(sent) * 4096 <= MAX_BODY_BYTES + 4096  # the rest never read


async def test_a_webhook_is_believed_once(plaid):
    client = plaid
    raw, signature = await signed(client, "SYNC_UPDATES_AVAILABLE")
    assert (await deliver(client, raw, signature)).json() == {"received": "unknown_item"}
    replayed = await deliver(client, raw, signature)
    assert is_problem(replayed, 401)
    assert "delivered before" in replayed.json()["detail"]


async def test_a_key_plaid_expired_is_refused_once_a_new_key_appears(plaid):
    client = plaid
    name = f"k-{uuid.uuid4().hex[:8]}"
    first = await signed(client, "SYNC_UPDATES_AVAILABLE", name)
    later = await signed(client, "LOGIN_REPAIRED", name)  # the same key, delivered late
    assert (await deliver(client, *first)).json() == {"received": "unknown_item"}  # key cached
    # Plaid rotates: the key expires, webhooks come signed with a new one.
    rotated = await client.post(f"{PLAID}/_control/webhook-key/{name}/rotate")
    assert rotated.status_code == 204
    assert (await deliver(client, *await signed(client, "ERROR", name))).status_code == 200
    # The new kid had the cached keys asked for again: the old one is known expired now.
    refused = await deliver(client, *later)
    assert is_problem(refused, 401)
    assert "expired" in refused.json()["detail"]


async def test_a_webhook_during_a_running_sync_is_synced_once_that_one_is_done(plaid, app, session):
    client = plaid
    headers, provider_id, login = await connected(client)
    assert (await sync(client, headers, provider_id)).status_code == 200
    connection_id = await session.scalar(
        select(ProviderConnection.id).where(
            ProviderConnection.provider_id == uuid.UUID(provider_id)
        )
    )
    # A sync holds the claim (another process's, say) when Plaid says there is news.
    await session.execute(
        update(ProviderConnection)
        .where(ProviderConnection.id == connection_id)
        .values(sync_lease_until=datetime.now(UTC) + timedelta(minutes=5))
    )
    await control(client, login, "advance")
    raw, signature = await signed_for(client, await item_of(session, provider_id))
    assert (await deliver(client, raw, signature)).json() == {"received": "sync"}
    await app.state.ctx.settle()
    assert await app.state.ctx.redis.get(f"{WANTED}{connection_id}")  # wanted, not dropped
    calls = (await client.get(f"{PLAID}/_control/{login}")).json()["calls"]["transactions_sync"]

    # The running sync ends (here: its claim given back, a sync of the person's runs and
    # finishes): the one wanted runs after it.
    await session.execute(
        update(ProviderConnection)
        .where(ProviderConnection.id == connection_id)
        .values(sync_lease_until=None)
    )
    assert (await sync(client, headers, provider_id)).status_code == 200
    await app.state.ctx.settle()
    after = (await client.get(f"{PLAID}/_control/{login}")).json()["calls"]["transactions_sync"]
    assert after == calls + 2
    assert await app.state.ctx.redis.get(f"{WANTED}{connection_id}") is None
