"""Two dispatcher processes share one outbox: every event acknowledged once, none sent twice."""

import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import func, select, text

from dashtam_api.webhooks import signing
from dashtam_core.vault import Vault, webhook_secret_context
from dashtam_models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.fixtures.environment import ROOT, TEST_ENV_FILE
from tests.fixtures.factories import create_user

pytestmark = pytest.mark.commits  # the processes read what this test committed

EVENTS = 500


def _dispatchers(count: int) -> list[subprocess.Popen]:
    env = {**os.environ, "DASHTAM_ENV_FILE": str(TEST_ENV_FILE)}  # this worker's database
    return [
        subprocess.Popen(
            [sys.executable, "-m", "dashtam_api.jobs", "webhooks", "--until-idle"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]


async def test_two_dispatchers_deliver_each_event_exactly_once(session, test_settings, receiver):
    user = await create_user(session)
    vault = Vault.from_spec(test_settings.TOKEN_ENCRYPTION_KEYS)
    endpoint_id = uuid.uuid4()
    session.add(
        WebhookEndpoint(
            id=endpoint_id,
            user_id=user.id,
            url=receiver.url,
            events=["sync.succeeded"],
            secret_encrypted=vault.seal(
                signing.new_secret(), context=webhook_secret_context(endpoint_id)
            ),
            key_id=vault.current_key_id,
        )
    )
    await session.flush()
    await session.execute(
        text(
            "SELECT webhook_emit(:user, 'webhook.test', jsonb_build_object('n', n), :endpoint) "
            "FROM generate_series(1, :events) AS n"
        ),
        {"user": user.id, "endpoint": endpoint_id, "events": EVENTS},
    )
    await session.commit()

    delivered = []
    for process in _dispatchers(2):
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err
        summary = dict(p.split("=") for p in out.strip().splitlines()[-1].split(": ")[1].split())
        delivered.append(int(summary.get("delivered", 0)))

    assert sum(delivered) == EVENTS
    ids = receiver.ids()
    assert len(ids) == EVENTS
    assert len(set(ids)) == EVENTS  # none sent twice
    assert max(receiver.most_in_flight.values()) == 1  # nor two attempts at once
    statuses = await session.execute(
        select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    )
    assert dict(statuses.all()) == {"delivered": EVENTS}
    assert await session.scalar(select(func.count()).select_from(WebhookAttempt)) == EVENTS
