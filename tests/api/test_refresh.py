"""Refreshing a connection's tokens against a local server that answers like Schwab: the
rotation cases, expiry, failures (threshold, invalid_grant, transient with back-off and retry)
and recovery by reconnecting. The refresh's own transaction joins the test's (rolled back)."""

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from dashtam_api.connections import refresh
from dashtam_api.jobs import loops
from dashtam_core.vault import token_context
from dashtam_models import ProviderAuditLog, ProviderConnection, ProviderToken
from tests.api.test_auth import is_problem
from tests.api.test_connections import callback, signed_in, start
from tests.fixtures.institution import GOOD_CODE


async def connected_schwab(client, settings) -> tuple[dict, str]:
    """A signed-in person with a connected Schwab provider: (headers, provider id)."""
    headers = await signed_in(client)
    provider_id, query = await start(client, headers, "schwab")
    outcome = await callback(client, settings, state=query["state"][0], code=GOOD_CODE)
    assert outcome.json()["outcome"] == "connected", outcome.text
    return headers, provider_id


async def stored_token(session) -> ProviderToken:
    return await session.scalar(select(ProviderToken).execution_options(populate_existing=True))


def plain(ctx, token: ProviderToken, column: str) -> str:
    sealed = {"access": token.access_token_encrypted, "refresh": token.refresh_token_encrypted}
    return ctx.vault.open(sealed[column], context=token_context(token.connection_id, column))


async def audit_rows(session, action: str) -> list[ProviderAuditLog]:
    return list(
        (
            await session.scalars(
                select(ProviderAuditLog)
                .where(ProviderAuditLog.action == action)
                .order_by(ProviderAuditLog.created_at)
            )
        ).all()
    )


def context(client):
    return client.app.state.ctx


@pytest.mark.parametrize(
    ("mode", "rotation"), [("rotate", "rotated"), ("same", "same"), ("none", "kept")]
)
async def test_the_three_rotation_cases(
    institution_client, institution, test_settings, session, mode, rotation
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    before = await stored_token(session)
    old_refresh = plain(context(client), before, "refresh")
    old_deadline = before.refresh_expires_at
    institution.refresh_mode = mode

    response = await client.post(
        f"/api/v1/providers/{provider_id}/authorization/refresh", headers=headers
    )
    body = response.json()
    assert response.status_code == 200, response.text
    assert body["status"] == "active"
    assert body["last_refreshed_at"] is not None

    call = institution.refresh_calls()[-1]
    assert call["form"]["refresh_token"] == old_refresh  # presented once, as held
    assert institution.basic_credentials(call) == ("schwab-client", "schwab-secret")
    after = await stored_token(session)
    held = plain(context(client), after, "refresh")
    assert plain(context(client), after, "access") == institution.issued[-1]["access_token"]
    if mode == "rotate":
        assert held == institution.issued[-1]["refresh_token"] != old_refresh
        # A new refresh token lives Schwab's 7 days from now.
        assert after.refresh_expires_at > old_deadline
    else:
        assert held == old_refresh
        assert after.refresh_expires_at == old_deadline  # the deadline runs from the connect
    # Never stored in plaintext, whichever case.
    assert held.encode() not in after.refresh_token_encrypted
    (audited,) = await audit_rows(session, "refreshed")
    assert audited.details["rotation"] == rotation
    assert audited.details["trigger"] == "on_demand"
    assert old_refresh not in str(audited.details)


async def test_a_lapsed_refresh_token_expires_the_connection(
    institution_client, institution, test_settings, session
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    path = f"/api/v1/providers/{provider_id}/authorization"
    status = (await client.get(path, headers=headers)).json()
    assert status["reconnect_by"] == status["refresh_expires_at"]
    assert status["action"] is None
    await session.execute(
        # An hour back: the test transaction's now() is its start, before Python's clock.
        update(ProviderToken).values(refresh_expires_at=datetime.now(UTC) - timedelta(hours=1))
    )
    shown = (await client.get(path, headers=headers)).json()
    assert (shown["status"], shown["action"]) == ("expired", "reconnect")

    refused = is_problem(await client.post(f"{path}/refresh", headers=headers), 409)
    assert refused["action"] == "reconnect"
    assert "reconnect" in refused["detail"]
    assert institution.refresh_calls() == []  # nothing presented to the institution
    connection = await session.scalar(
        select(ProviderConnection).execution_options(populate_existing=True)
    )
    assert connection.status == "expired"
    assert "reconnect" in connection.error_message
    assert len(await audit_rows(session, "expired")) == 1


async def test_the_refresher_expires_lapsed_connections(institution_client, test_settings, session):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    await session.execute(
        update(ProviderToken).values(refresh_expires_at=datetime.now(UTC) - timedelta(minutes=1))
    )
    counts = await loops.refresh_round(context(client))
    assert counts["expired"] == 1
    assert counts["refreshed"] == 0
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert status["status"] == "expired"
    assert status["error"].startswith("the authorization expired at")


async def test_failures_back_off_and_turn_into_error_at_the_threshold(
    institution_client, institution, test_settings, session
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    path = f"/api/v1/providers/{provider_id}/authorization"
    threshold = test_settings.REFRESH_MAX_FAILURES
    institution.token_responses.extend(
        [(401, {"error": "invalid_client", "error_description": "bad secret"})] * threshold
    )
    for attempt in range(1, threshold + 1):
        problem = is_problem(await client.post(f"{path}/refresh", headers=headers), 502)
        assert problem["institution_error"] == "invalid_client"
        status = (await client.get(path, headers=headers)).json()
        assert status["refresh_failures"] == attempt
        if attempt < threshold:
            assert status["status"] == "active"
            retry_at = datetime.fromisoformat(status["retry_at"])
            wait = refresh.backoff(test_settings, attempt).total_seconds()
            assert 0 < (retry_at - datetime.now(UTC)).total_seconds() <= wait
        else:
            assert (status["status"], status["action"]) == ("error", "reconnect")
            assert f"{threshold} refreshes failed in a row" in status["error"]
            assert problem["action"] == "reconnect"
    failed = await audit_rows(session, "refresh_failed")
    assert [a.details["failures"] for a in failed] == list(range(1, threshold + 1))
    assert failed[-1].details["status"] == "error"


async def test_an_institution_that_stays_down_never_turns_a_connection_into_error(
    institution_client, institution, test_settings
):
    """Transient failures back off without end; the first answer that will not change after
    the threshold ends it."""
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    path = f"/api/v1/providers/{provider_id}/authorization"
    threshold = test_settings.REFRESH_MAX_FAILURES
    institution.token_responses.extend([(503, {"message": "down"})] * (threshold + 2))
    for _ in range(threshold + 2):
        problem = is_problem(await client.post(f"{path}/refresh", headers=headers), 502)
        assert (problem["institution_error"], problem["transient"]) == ("http_503", True)
    status = (await client.get(path, headers=headers)).json()
    assert (status["status"], status["refresh_failures"]) == ("active", threshold + 2)
    assert status["retry_at"] is not None

    institution.token_responses.append((200, "<html>not a token</html>"))
    problem = is_problem(await client.post(f"{path}/refresh", headers=headers), 502)
    assert (problem["institution_error"], problem["action"]) == ("invalid_response", "reconnect")
    assert (await client.get(path, headers=headers)).json()["status"] == "error"


async def test_a_refresh_whose_commit_was_lost_is_never_presented_again(
    institution_client, institution, test_settings, session
):
    """Our database went away after the institution had rotated the refresh token and before
    the refresh committed. Presenting the old token again would be refused (invalid_grant: the
    person would have to reconnect); the next refresh stores the answer kept for it instead."""
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    ctx = context(client)
    connection_id = (await stored_token(session)).connection_id
    async with ctx.sessions() as job:
        outcome = await refresh.refresh(ctx, job, connection_id, trigger=refresh.Trigger.ON_DEMAND)
        assert outcome.kind is refresh.Kind.REFRESHED
        await job.rollback()  # the commit that never reached the database
    issued = institution.issued[-1]
    assert (await stored_token(session)).refresh_token_encrypted is not None
    assert await audit_rows(session, "refreshed") == []

    path = f"/api/v1/providers/{provider_id}/authorization"
    response = await client.post(f"{path}/refresh", headers=headers)

    assert response.status_code == 200, response.text
    assert len(institution.refresh_calls()) == 1  # the spent token was not presented again
    token = await stored_token(session)
    context_of = {"context": token_context(connection_id, "refresh")}
    assert ctx.vault.open(token.refresh_token_encrypted, **context_of) == issued["refresh_token"]
    (refreshed,) = await audit_rows(session, "refreshed")
    assert "recovered" in refreshed.details
    # Saved now: the next refresh goes to the institution with the token it issued last.
    assert (await client.post(f"{path}/refresh", headers=headers)).status_code == 200
    assert len(institution.refresh_calls()) == 2
    assert institution.refresh_calls()[-1]["form"]["refresh_token"] == issued["refresh_token"]


def test_back_off_doubles_and_is_capped(test_settings):
    settings = test_settings.model_copy(
        update={"REFRESH_BACKOFF_SECONDS": 30.0, "REFRESH_BACKOFF_MAX_SECONDS": 100.0}
    )
    assert [refresh.backoff(settings, n).total_seconds() for n in (1, 2, 3, 4)] == [
        30,
        60,
        100,
        100,
    ]


async def test_invalid_grant_is_an_error_at_once(
    institution_client, institution, test_settings, session
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    path = f"/api/v1/providers/{provider_id}/authorization"
    institution.token_responses.append(
        (400, {"error": "invalid_grant", "error_description": "refresh token revoked"})
    )
    problem = is_problem(await client.post(f"{path}/refresh", headers=headers), 502)
    assert problem["institution_error"] == "invalid_grant"
    assert problem["transient"] is False
    assert "reconnect" in problem["detail"]
    status = (await client.get(path, headers=headers)).json()
    assert (status["status"], status["refresh_failures"]) == ("error", 1)
    (failed,) = await audit_rows(session, "refresh_failed")
    assert failed.details["error"] == "invalid_grant"
    assert failed.details["error_description"] == "refresh token revoked"
    # An errored connection is not refreshed again until the person reconnects.
    again = is_problem(await client.post(f"{path}/refresh", headers=headers), 409)
    assert again["action"] == "reconnect"
    assert len(institution.refresh_calls()) == 1


@pytest.mark.parametrize(
    "answer",
    [
        (503, "<html>Service Unavailable</html>"),
        (429, "slow down"),
        (400, {"error": "temporarily_unavailable"}),
    ],
)
async def test_transient_failures_back_off_then_the_refresher_retries(
    institution_client, institution, test_settings, session, answer
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    path = f"/api/v1/providers/{provider_id}/authorization"
    institution.token_responses.append(answer)
    problem = is_problem(await client.post(f"{path}/refresh", headers=headers), 502)
    assert problem["transient"] is True
    status = (await client.get(path, headers=headers)).json()
    assert (status["status"], status["refresh_failures"]) == ("active", 1)
    assert status["retry_at"] is not None

    # Due now, but backing off: the refresher leaves it alone...
    await session.execute(
        update(ProviderToken).values(expires_at=datetime.now(UTC) + timedelta(seconds=30))
    )
    ctx = context(client)
    assert (await loops.refresh_round(ctx))["refreshed"] == 0
    assert len(institution.refresh_calls()) == 1
    # ...until the back-off has passed; then one retry succeeds and clears the failures.
    await session.execute(
        update(ProviderConnection).values(
            # An hour back, not a second: the refresher compares with the test transaction's
            # now(), its start, which a loaded run leaves seconds behind Python's clock.
            refresh_not_before=datetime.now(UTC) - timedelta(hours=1)
        )
    )
    assert (await loops.refresh_round(ctx))["refreshed"] == 1
    status = (await client.get(path, headers=headers)).json()
    assert (status["status"], status["refresh_failures"], status["retry_at"]) == (
        "active",
        0,
        None,
    )
    assert status["error"] is None
    refreshed = await audit_rows(session, "refreshed")
    assert [a.details["trigger"] for a in refreshed] == ["background"]


async def test_an_unreachable_institution_is_transient_and_tried_again(
    institution_client, institution, test_settings, session, caplog
):
    """A refused connection carried nothing: unlike a refresh that may have arrived, it is sent
    again (INSTITUTION_RETRIES, 2 in tests), one warning line per retry."""
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    ctx = context(client)
    # A port nobody listens on: the connection is refused.
    unreachable = replace(ctx.registry["schwab"], token_url="https://127.0.0.1:9/token")
    client.app.state.ctx = replace(ctx, registry={**ctx.registry, "schwab": unreachable})
    try:
        with caplog.at_level(logging.WARNING, logger="dashtam_api.upstream"):
            problem = is_problem(
                await client.post(
                    f"/api/v1/providers/{provider_id}/authorization/refresh", headers=headers
                ),
                502,
            )
    finally:
        client.app.state.ctx = ctx
    assert (problem["institution_error"], problem["transient"]) == ("unreachable", True)
    retries = [r.getMessage() for r in caplog.records if r.name == "dashtam_api.upstream"]
    assert len(retries) == test_settings.INSTITUTION_RETRIES == 2, retries
    assert all(m.startswith("127.0.0.1/token unreachable (ConnectError)") for m in retries)


async def test_reconnecting_recovers_an_errored_connection(
    institution_client, institution, test_settings, session
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    path = f"/api/v1/providers/{provider_id}/authorization"
    institution.token_responses.append((400, {"error": "invalid_grant"}))
    await client.post(f"{path}/refresh", headers=headers)
    assert (await client.get(path, headers=headers)).json()["status"] == "error"

    reconnect = await client.post(path, headers=headers)
    assert reconnect.status_code == 201
    state = reconnect.json()["authorization_url"].split("state=")[1].split("&")[0]
    assert (await callback(client, test_settings, state=state, code=GOOD_CODE)).status_code == 200
    status = (await client.get(path, headers=headers)).json()
    assert (status["status"], status["action"], status["error"]) == ("active", None, None)
    assert status["refresh_failures"] == 0
    refreshed = await client.post(f"{path}/refresh", headers=headers)
    assert refreshed.status_code == 200, refreshed.text


async def test_the_refresher_refreshes_only_what_is_due(
    institution_client, institution, test_settings, session
):
    client = institution_client
    await connected_schwab(client, test_settings)
    ctx = context(client)
    # 30 minutes left, the window is 5: nothing to do.
    assert (await loops.refresh_round(ctx))["refreshed"] == 0
    window = timedelta(seconds=test_settings.REFRESH_WINDOW_SECONDS)
    await session.execute(
        update(ProviderToken).values(expires_at=datetime.now(UTC) + window - timedelta(seconds=5))
    )
    counts = await loops.refresh_round(ctx)
    assert counts["refreshed"] == 1
    # Refreshed once; the next round finds it 30 minutes from expiry again.
    assert (await loops.refresh_round(ctx))["refreshed"] == 0
    assert len(institution.refresh_calls()) == 1


async def test_refresh_of_someone_elses_provider_is_404(institution_client, test_settings, session):
    client = institution_client
    _, provider_id = await connected_schwab(client, test_settings)
    stranger = await signed_in(client, "stranger")
    response = await client.post(
        f"/api/v1/providers/{provider_id}/authorization/refresh", headers=stranger
    )
    is_problem(response, 404)


async def test_a_pending_connection_cannot_be_refreshed(institution_client, test_settings):
    client = institution_client
    headers = await signed_in(client)
    provider_id, _ = await start(client, headers, "schwab")
    problem = is_problem(
        await client.post(
            f"/api/v1/providers/{provider_id}/authorization/refresh", headers=headers
        ),
        409,
    )
    assert problem["action"] == "connect"
