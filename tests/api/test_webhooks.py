"""Webhooks end to end against a real HTTPS receiver: registration and its refusals, Standard
Webhooks signatures checked with the specification's own library, the events a connection and
a sync emit, retries (receiver down, slow, 410, a day of failures), and the outbox's promise
(a rollback sends nothing)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook, WebhookVerificationError

from dashtam_api.sandbox.seed import connected_sandbox
from dashtam_api.webhooks import dispatch, notices, targets
from dashtam_models import (
    ProviderConnection,
    ProviderToken,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.api.test_auth import is_problem
from tests.api.test_connections import callback, signed_in, start
from tests.api.test_sync import synced
from tests.fixtures.institution import GOOD_CODE, client_of

EVENTS = ["connection.active", "connection.error", "sync.succeeded", "sync.failed"]


async def registered(client, headers, url, events=EVENTS, **extra) -> dict:
    answer = await client.post(
        "/api/v1/webhooks", headers=headers, json={"url": url, "events": events, **extra}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def dispatched(ctx) -> dict:
    """One dispatcher pass over what is due, with its own pool."""
    sender = dispatch.Sender(ctx)
    try:
        return dict(await dispatch.deliver_due(ctx, sender))
    finally:
        await sender.aclose()


# PostgreSQL's now() in a test is its transaction's start, earlier than Python's clock by as long
# as the test has run: moments meant to be past are set an hour back, not a second.
AN_HOUR = timedelta(hours=1)


async def make_due(session) -> None:
    """The retry's wait, skipped: every pending delivery due now."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status == "pending")
        .values(next_attempt_at=datetime.now(UTC) - AN_HOUR)
    )
    await session.commit()


def verified(secret: str, request: dict) -> dict:
    return Webhook(secret).verify(request["body"], request["headers"])


async def deliveries_of(client, headers, endpoint_id, **params) -> dict:
    answer = await client.get(
        f"/api/v1/webhooks/{endpoint_id}/deliveries", headers=headers, params=params
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_register_read_change_and_delete(client, test_settings):
    headers = await signed_in(client, "hooks")
    created = await registered(client, headers, "https://example.com/a", description="mine")
    assert created["secret"].startswith("whsec_")
    assert created["events"] == EVENTS
    assert created["enabled"] is True
    endpoint_id = created["id"]

    listed = (await client.get("/api/v1/webhooks", headers=headers)).json()["items"]
    assert [e["id"] for e in listed] == [endpoint_id]
    assert all("secret" not in e for e in listed)  # shown once, at creation
    one = (await client.get(f"/api/v1/webhooks/{endpoint_id}", headers=headers)).json()
    assert "secret" not in one
    assert one["description"] == "mine"

    changed = await client.patch(
        f"/api/v1/webhooks/{endpoint_id}",
        headers=headers,
        json={"events": ["sync.failed", "sync.failed"], "enabled": False},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["events"] == ["sync.failed"]
    assert changed.json()["disabled_reason"] == "disabled by its owner"
    enabled = await client.patch(
        f"/api/v1/webhooks/{endpoint_id}", headers=headers, json={"enabled": True}
    )
    assert enabled.json()["enabled"] is True
    assert enabled.json()["disabled_reason"] is None

    # Refusals are problems naming the field, never a 500.
    for body in (
        {"url": "ftp://example.com/", "events": EVENTS},
        {"url": "not a url", "events": EVENTS},
        {"url": "https://user:pw@example.com/", "events": EVENTS},
        {"url": "https://example.com/", "events": ["connection.exploded"]},
        {"url": "https://example.com/", "events": ["webhook.test"]},  # sent on request only
        {"url": "https://example.com/", "events": []},
    ):
        answer = await client.post("/api/v1/webhooks", headers=headers, json=body)
        is_problem(answer, 422)
    is_problem(
        await client.patch(f"/api/v1/webhooks/{endpoint_id}", headers=headers, json={"url": None}),
        422,
    )

    stranger = await signed_in(client, "hooks-stranger")
    for method in ("get", "delete"):
        is_problem(
            await client.request(method, f"/api/v1/webhooks/{endpoint_id}", headers=stranger), 404
        )
    is_problem(await client.post(f"/api/v1/webhooks/{endpoint_id}/test", headers=stranger), 404)
    is_problem(await client.get(f"/api/v1/webhooks/{uuid.uuid4()}", headers=headers), 404)

    assert (
        await client.delete(f"/api/v1/webhooks/{endpoint_id}", headers=headers)
    ).status_code == 204
    assert (await client.get("/api/v1/webhooks", headers=headers)).json()["items"] == []


async def test_secrets_are_sealed_and_the_test_event_verifies_with_standard_webhooks(
    client, session, receiver
):
    ctx = client._transport.app.state.ctx
    headers = await signed_in(client, "hooks-signed")
    created = await registered(client, headers, receiver.url)
    stored = await session.scalar(select(WebhookEndpoint.secret_encrypted))
    assert created["secret"].encode() not in stored  # sealed, never the plain secret

    sent = await client.post(f"/api/v1/webhooks/{created['id']}/test", headers=headers)
    assert sent.status_code == 202, sent.text
    assert (await dispatched(ctx)) == {"delivered": 1}
    (request,) = receiver.requests
    assert request["headers"]["webhook-id"] == sent.json()["event_id"]
    payload = verified(created["secret"], request)
    assert payload["type"] == "webhook.test"
    assert payload["data"] == {"endpoint_id": created["id"]}
    assert payload["timestamp"].endswith("Z")
    tampered = {**request, "body": request["body"].replace(b"webhook.test", b"webhook.best")}
    with pytest.raises(WebhookVerificationError):
        verified(created["secret"], tampered)

    # A new secret signs from now on; the old one verifies nothing more.
    rotated = await client.post(f"/api/v1/webhooks/{created['id']}/rotate-secret", headers=headers)
    new_secret = rotated.json()["secret"]
    assert new_secret != created["secret"]
    await client.post(f"/api/v1/webhooks/{created['id']}/test", headers=headers)
    await dispatched(ctx)
    assert verified(new_secret, receiver.requests[1])["type"] == "webhook.test"
    with pytest.raises(WebhookVerificationError):
        verified(created["secret"], receiver.requests[1])

    page = await deliveries_of(client, headers, created["id"])
    assert [a["status_code"] for a in page["items"]] == [204, 204]
    assert all(a["delivery_status"] == "delivered" and a["error"] is None for a in page["items"])
    assert page["items"][1]["event_id"] == sent.json()["event_id"]  # newest first
    first = await deliveries_of(client, headers, created["id"], limit=1)
    rest = await deliveries_of(client, headers, created["id"], limit=1, cursor=first["next_cursor"])
    assert [a["id"] for a in first["items"] + rest["items"]] == [a["id"] for a in page["items"]]
    assert rest["next_cursor"] is None


async def test_connecting_and_syncing_send_their_events(
    institution_client, institution, test_settings, receiver
):
    client = institution_client
    ctx = client.app.state.ctx
    headers = await signed_in(client)
    created = await registered(
        client, headers, receiver.url, events=["connection.active", "sync.succeeded", "sync.failed"]
    )
    provider_id, query = await start(client, headers, "schwab")
    await callback(client, test_settings, state=query["state"][0], code=GOOD_CODE)
    result = await synced(client, headers, provider_id)
    institution.data_responses.extend([(503, {"message": "down"})] * 3)
    await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers)

    assert (await dispatched(ctx)) == {"delivered": 3}
    payloads = {}
    for request in receiver.requests:
        payload = verified(created["secret"], request)
        payloads[payload["type"]] = payload["data"]
    assert set(payloads) == {"connection.active", "sync.succeeded", "sync.failed"}
    assert payloads["connection.active"]["provider_id"] == provider_id
    assert payloads["connection.active"]["previous_status"] == "pending"
    succeeded = payloads["sync.succeeded"]
    assert succeeded["run_id"] == result["run_id"]
    assert succeeded["counts"]["accounts"] == result["accounts"]
    assert succeeded["counts"]["positions"] == result["positions"]
    assert succeeded["counts"]["transactions"] == result["transactions"]
    assert payloads["sync.failed"]["error"]["code"] == "http_503"
    # Never a token or an account number in what is sent.
    sent = b"".join(r["body"] for r in receiver.requests).lower()
    assert b"token" not in sent
    assert b"hash" not in sent
    assert b"account_number" not in sent


async def test_a_receiver_down_gets_the_event_when_back_exactly_once(client, session, receiver):
    ctx = client._transport.app.state.ctx
    headers = await signed_in(client, "hooks-down")
    created = await registered(client, headers, receiver.url)
    receiver.stop()
    event_id = (
        await client.post(f"/api/v1/webhooks/{created['id']}/test", headers=headers)
    ).json()["event_id"]
    before = datetime.now(UTC)
    assert (await dispatched(ctx)) == {"retrying": 1}
    after = datetime.now(UTC)
    delivery = await session.scalar(
        select(WebhookDelivery).execution_options(populate_existing=True)
    )
    # The first retry 5 s after the attempt (+-20% jitter), the failure on record.
    next_at = delivery.next_attempt_at
    assert before + timedelta(seconds=4) <= next_at <= after + timedelta(seconds=6), (
        before,
        next_at,
        after,
    )
    assert delivery.last_error.startswith("could not connect")
    assert (await dispatched(ctx)) == {}  # not due yet: nothing sent

    receiver.start()
    await make_due(session)
    assert (await dispatched(ctx)) == {"delivered": 1}
    await make_due(session)
    assert (await dispatched(ctx)) == {}
    assert receiver.ids() == [event_id]
    page = await deliveries_of(client, headers, created["id"])
    assert [(a["attempt"], a["status_code"]) for a in page["items"]] == [(2, 204), (1, None)]
    assert page["items"][1]["error"].startswith("could not connect")


async def test_a_slow_receiver_times_out_and_the_retry_delivers(client, session, receiver):
    ctx = client._transport.app.state.ctx
    headers = await signed_in(client, "hooks-slow")
    created = await registered(client, headers, receiver.url)
    await client.post(f"/api/v1/webhooks/{created['id']}/test", headers=headers)
    receiver.answers.append((204, 3.0))
    hurried = dispatch.Sender(ctx)
    settings = ctx.settings
    ctx.settings = settings.model_copy(update={"WEBHOOK_TIMEOUT_SECONDS": 0.5})
    try:
        assert dict(await dispatch.deliver_due(ctx, hurried)) == {"retrying": 1}
    finally:
        ctx.settings = settings
        await hurried.aclose()
    await make_due(session)
    assert (await dispatched(ctx)) == {"delivered": 1}
    page = await deliveries_of(client, headers, created["id"])
    assert page["items"][1]["error"] == "no answer within 0.5s"
    assert 400 <= page["items"][1]["duration_ms"] < 2500


async def test_410_disables_at_once_and_a_day_of_failures_gives_up(client, session, receiver):
    ctx = client._transport.app.state.ctx
    headers = await signed_in(client, "hooks-gone")
    gone = await registered(client, headers, receiver.url)
    failing = await registered(client, headers, receiver.url + "?failing")
    await client.post(f"/api/v1/webhooks/{gone['id']}/test", headers=headers)
    receiver.answers.append((410, 0.0))
    assert (await dispatched(ctx)) == {"gone": 1, "disabled": 1}
    endpoint = (await client.get(f"/api/v1/webhooks/{gone['id']}", headers=headers)).json()
    assert endpoint["enabled"] is False
    assert "410" in endpoint["disabled_reason"]
    is_problem(await client.post(f"/api/v1/webhooks/{gone['id']}/test", headers=headers), 409)

    # The other endpoint fails (500) for a day: the delivery gives up, the endpoint stops.
    await client.post(f"/api/v1/webhooks/{failing['id']}/test", headers=headers)
    receiver.answers.extend([(302, 0.0), (500, 0.0)])
    assert (await dispatched(ctx)) == {"retrying": 1}
    a_day_ago = datetime.now(UTC) - timedelta(hours=24) - AN_HOUR
    await session.execute(
        update(WebhookDelivery)
        .values(created_at=a_day_ago, next_attempt_at=a_day_ago)
        .where(WebhookDelivery.endpoint_id == uuid.UUID(failing["id"]))
    )
    await session.execute(
        update(WebhookEndpoint)
        .values(failing_since=a_day_ago)
        .where(WebhookEndpoint.id == uuid.UUID(failing["id"]))
    )
    await session.commit()
    assert (await dispatched(ctx)) == {"given_up": 1, "disabled": 1}
    endpoint = (await client.get(f"/api/v1/webhooks/{failing['id']}", headers=headers)).json()
    assert endpoint["enabled"] is False
    assert endpoint["disabled_reason"].startswith("every delivery failed for 24 hours (since ")
    page = await deliveries_of(client, headers, failing["id"])
    assert page["items"][0]["error"] == "answered 500: nope"
    assert page["items"][1]["error"] == "answered 302 (redirects are not followed): nope"
    assert {a["delivery_status"] for a in page["items"]} == {"failed"}


def test_the_retry_schedule_grows_fourfold_to_its_cap(test_settings):
    delays = [dispatch.retry_delay(test_settings, n) for n in range(1, 10)]
    nominal = [5, 20, 80, 320, 1280, 5120, 20480, 21600, 21600]
    for delay, expected in zip(delays, nominal, strict=True):
        assert 0.8 * expected <= delay <= 1.2 * expected


async def test_a_rollback_sends_nothing_and_a_commit_is_kept(
    client, session, receiver, test_settings
):
    ctx = client._transport.app.state.ctx
    headers, provider_id = await connected_sandbox_of(client)
    created = await registered(client, headers, receiver.url, events=["connection.error"])
    connection_id = await session.scalar(
        select(ProviderConnection.id).where(
            ProviderConnection.provider_id == uuid.UUID(provider_id)
        )
    )
    # An error status written and rolled back: no event.
    savepoint = await session.begin_nested()
    await session.execute(update(ProviderConnection).values(status="error"))
    await savepoint.rollback()
    assert await session.scalar(select(WebhookDelivery.id)) is None
    assert (await dispatched(ctx)) == {}
    # The same, committed: one event.
    await session.execute(
        update(ProviderConnection).values(status="error", error_message="gone bad")
    )
    await session.commit()
    assert (await dispatched(ctx)) == {"delivered": 1}
    payload = verified(created["secret"], receiver.requests[0])
    assert payload["type"] == "connection.error"
    assert payload["data"]["connection_id"] == str(connection_id)
    assert payload["data"]["detail"] == "gone bad"


async def connected_sandbox_of(client) -> tuple[dict, str]:
    """A person with a sandbox connection (the built-in institution, no script needed)."""
    headers = await signed_in(client, f"hooks-{uuid.uuid4().hex[:6]}")
    me = (await client.get("/api/v1/auth/me", headers=headers)).json()
    ctx = client._transport.app.state.ctx
    async with ctx.sessions() as session:
        user = await session.get(User, uuid.UUID(me["id"]))
        (seeded,) = await connected_sandbox(ctx, session, count=1, user=user)
        await session.commit()
    return headers, str(seeded.provider_id)


async def test_reauth_required_once_per_authorization_period(client, session, receiver):
    ctx = client._transport.app.state.ctx
    headers, provider_id = await connected_sandbox_of(client)
    created = await registered(client, headers, receiver.url, events=["connection.reauth_required"])
    token = await session.scalar(select(ProviderToken))
    # 49 hours left: not yet (the notice goes out within WEBHOOK_REAUTH_NOTICE_HOURS, 48).
    token.refresh_expires_at = datetime.now(UTC) + timedelta(hours=49)
    await session.commit()
    assert await notices.reauth_required(ctx) == 0
    deadline = datetime.now(UTC) + timedelta(hours=47)
    token.refresh_expires_at = deadline
    await session.commit()
    assert await notices.reauth_required(ctx) == 1
    assert await notices.reauth_required(ctx) == 0  # once per period
    # Signing in again brings a new deadline, and the next warning in its time.
    token.refresh_expires_at = deadline + timedelta(days=7)
    await session.commit()
    assert await notices.reauth_required(ctx) == 0
    token.refresh_expires_at = deadline + timedelta(minutes=30)
    await session.commit()
    assert await notices.reauth_required(ctx) == 1

    assert (await dispatched(ctx)) == {"delivered": 2}
    first, second = sorted(
        (verified(created["secret"], r) for r in receiver.requests),
        key=lambda p: p["data"]["reconnect_by"],
    )
    assert first["type"] == second["type"] == "connection.reauth_required"
    assert first["data"]["provider_id"] == provider_id
    assert datetime.fromisoformat(first["data"]["reconnect_by"]) == deadline
    assert datetime.fromisoformat(second["data"]["reconnect_by"]) == deadline + timedelta(
        minutes=30
    )


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # shared address space (CGNAT)
        ("169.254.169.254", False),  # cloud metadata
        ("0.0.0.0", False),  # noqa: S104 (an address to refuse, not to bind)
        ("224.0.0.1", False),
        ("::1", False),
        ("fd00:ec2::254", False),  # AWS metadata over IPv6
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),  # loopback in IPv6 clothing
    ],
)
def test_which_addresses_are_public(address, public):
    import ipaddress

    assert targets.public(ipaddress.ip_address(address)) is public


async def test_private_targets_are_refused_outside_development(
    client, test_settings, connection, receiver
):
    strict = test_settings.model_copy(update={"WEBHOOK_ALLOW_PRIVATE": False})
    async with client_of(strict, connection) as strict_client:
        headers = await signed_in(strict_client, "hooks-strict")
        for url in (
            "https://127.0.0.1/hooks",
            "https://[::1]/hooks",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.8/hooks",
            "https://localhost/hooks",
        ):
            answer = await strict_client.post(
                "/api/v1/webhooks", headers=headers, json={"url": url, "events": EVENTS}
            )
            is_problem(answer, 422)
            assert "public" in answer.text or "this machine" in answer.text, answer.text
    # A name that resolves to this machine (registered where that was allowed, or a name
    # that changed what it resolves to) is refused when it is resolved, before any
    # connection: the receiver hears nothing.
    ctx = client._transport.app.state.ctx
    headers = await signed_in(client, "hooks-resolved")
    created = await registered(client, headers, receiver.url)
    await client.post(f"/api/v1/webhooks/{created['id']}/test", headers=headers)
    settings = ctx.settings
    ctx.settings = strict
    try:
        assert (await dispatched(ctx)) == {"retrying": 1}
    finally:
        ctx.settings = settings
    page = await deliveries_of(client, headers, created["id"])
    assert page["items"][0]["error"].startswith("refused: localhost resolves to 127.0.0.1")
    assert receiver.requests == []

    production = test_settings.model_copy(update={"ENVIRONMENT": "production"})
    assert production.webhook_allow_private is False
    assert production.local_environment is False
    with pytest.raises(targets.RefusedTarget, match="https://"):
        targets.check_url("http://example.com/", allow_http=False, allow_private=False)


async def test_metrics_count_deliveries_and_show_the_outbox(client, session, receiver):
    from tests.api.test_metrics import scrape

    ctx = client._transport.app.state.ctx
    headers = await signed_in(client, "hooks-metrics")
    created = await registered(client, headers, receiver.url)
    for _ in range(2):
        await client.post(f"/api/v1/webhooks/{created['id']}/test", headers=headers)
    await session.execute(
        update(WebhookDelivery).values(next_attempt_at=datetime.now(UTC) - AN_HOUR)
    )
    await session.commit()
    before = await scrape(client)
    assert before[("dashtam_webhook_outbox_due", frozenset())] == 2
    assert before[("dashtam_webhook_outbox_oldest_due_seconds", frozenset())] >= 3000
    receiver.answers.append((500, 0.0))
    assert (await dispatched(ctx)) == {"delivered": 1, "retrying": 1}
    after = await scrape(client)

    def moved(outcome: str) -> float:
        key = (
            "dashtam_webhook_deliveries_total",
            frozenset({"event": "webhook.test", "outcome": outcome}.items()),
        )
        return after.get(key, 0) - before.get(key, 0)

    assert (moved("delivered"), moved("retrying")) == (1, 1)
    assert after[("dashtam_webhook_outbox_due", frozenset())] == 0  # the retry is not due yet
    assert after[("dashtam_webhook_outbox_oldest_due_seconds", frozenset())] == 0


async def test_an_answer_is_read_up_to_a_small_limit(client, session, receiver):
    """A receiver that answers a megabyte: the attempt keeps 200 characters of it (and the
    dispatcher stops reading at 2 KiB: dispatch.ANSWER_LIMIT)."""
    ctx = client._transport.app.state.ctx
    headers = await signed_in(client, "hooks-big")
    created = await registered(client, headers, receiver.url)
    await client.post(f"/api/v1/webhooks/{created['id']}/test", headers=headers)
    receiver.answers.append((500, 0.0, b"x" * 1_000_000))
    assert (await dispatched(ctx)) == {"retrying": 1}
    (attempt,) = (await deliveries_of(client, headers, created["id"]))["items"]
    assert attempt["error"] == "answered 500: " + "x" * dispatch.ERROR_EXCERPT
