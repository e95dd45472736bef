"""An institution that times out, drops the connection, answers 5xx or answers garbage: each is a
502 or 504 problem naming what happened (never a 500), each is audited, and a call is sent again
only when that is safe (docs/architecture.md, "When an institution fails").

The institution is a local HTTPS server (tests/fixtures/institution.py) told how to answer the
next calls; the API runs in-process with a short per-call timeout, so that "no answer in time"
takes a fraction of a second.
"""

import pytest
from sqlalchemy import select, text

from dashtam_models import ProviderConnection
from tests.api.test_auth import is_problem
from tests.api.test_connections import callback, signed_in, start
from tests.api.test_refresh import audit_rows, connected_schwab
from tests.fixtures.institution import DROP, GOOD_CODE, SLOW, client_of, institution_settings

TIMEOUT_SECONDS = 0.4
LATE = (SLOW, TIMEOUT_SECONDS * 3)
HTML = (200, "<html><body>Down for maintenance</body></html>")
DOWN = (503, {"message": "down"})


@pytest.fixture
async def impatient_client(test_settings, connection, institution):
    """The API with a per-call timeout of TIMEOUT_SECONDS and two retries."""
    settings = institution_settings(
        test_settings,
        institution,
        OAUTH_HTTP_TIMEOUT_SECONDS=TIMEOUT_SECONDS,
        INSTITUTION_RETRIES=2,
    )
    async with client_of(settings, connection) as http:
        yield http


def calls_to(institution, path: str) -> int:
    return sum(1 for r in institution.requests if r["path"] == path)


def expected_status(error: str) -> int:
    return 504 if error == "timeout" else 502


@pytest.mark.parametrize(
    ("answers", "error", "transient", "sent"),
    [
        # Reads are idempotent: sent again on whatever may pass, up to 1 + 2 retries...
        ([DOWN] * 3, "http_503", True, 3),
        ([(500, "Internal Server Error")] * 3, "http_500", True, 3),
        ([(DROP, None)] * 3, "unreachable", True, 3),
        # ...but not past twice the per-call timeout (the second late answer ends it)...
        ([LATE] * 3, "timeout", True, 2),
        # ...nor for an answer that will not change.
        ([HTML], "invalid_response", False, 1),
        ([(403, {"message": "forbidden"})], "http_403", False, 1),
    ],
)
async def test_a_failing_data_api_is_a_clear_problem_audited_and_retried_when_it_may_pass(
    impatient_client, institution, test_settings, session, answers, error, transient, sent
):
    client = impatient_client
    headers, provider_id = await connected_schwab(client, test_settings)
    institution.data_responses.extend(answers)

    response = await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers)

    problem = is_problem(response, expected_status(error))
    assert (problem["institution_error"], problem["transient"]) == (error, transient)
    assert problem["title"] == (
        "Institution Timeout" if error == "timeout" else "Institution Error"
    )
    assert calls_to(institution, "/trader/v1/accounts/accountNumbers") == sent
    (failed,) = await audit_rows(session, "sync_failed")
    assert failed.details["error"] == error
    assert failed.details["transient"] is transient
    assert failed.details["trigger"] == "on_demand"
    connection = await session.scalar(
        select(ProviderConnection).execution_options(populate_existing=True)
    )
    # An institution's bad moment is not the connection's fault.
    assert connection.status == "active"
    assert connection.sync_error.startswith(error)
    assert connection.sync_lease_until is None  # the person may try again at once


async def test_a_data_api_that_recovers_within_the_retries_syncs(
    impatient_client, institution, test_settings, session
):
    client = impatient_client
    headers, provider_id = await connected_schwab(client, test_settings)
    institution.data_responses.extend([DOWN, (DROP, None)])

    response = await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["accounts"] == 2
    assert calls_to(institution, "/trader/v1/accounts/accountNumbers") == 3
    assert await audit_rows(session, "sync_failed") == []


async def test_a_short_retry_after_is_waited_for_a_long_one_answered_at_once(
    impatient_client, institution, test_settings
):
    client = impatient_client
    headers, provider_id = await connected_schwab(client, test_settings)
    sync = f"/api/v1/providers/{provider_id}/sync"
    institution.data_responses.append((429, {"message": "slow down"}, {"Retry-After": "0"}))
    assert (await client.post(sync, headers=headers)).status_code == 200
    assert calls_to(institution, "/trader/v1/accounts/accountNumbers") == 2

    institution.requests.clear()
    # A minute is longer than a request should wait: a problem now, not a reply in a minute.
    institution.data_responses.append((429, {"message": "slow down"}, {"Retry-After": "60"}))
    problem = is_problem(await client.post(sync, headers=headers), 502)
    assert (problem["institution_error"], problem["transient"]) == ("http_429", True)
    assert calls_to(institution, "/trader/v1/accounts/accountNumbers") == 1


@pytest.mark.parametrize(
    ("answer", "error", "transient"),
    [
        (DOWN, "http_503", True),
        ((DROP, None), "unreachable", True),
        (LATE, "timeout", True),
        (HTML, "invalid_response", False),
    ],
)
async def test_a_failing_token_endpoint_fails_the_refresh_once_never_resent(
    impatient_client, institution, test_settings, session, answer, error, transient
):
    client = impatient_client
    headers, provider_id = await connected_schwab(client, test_settings)
    institution.token_responses.append(answer)

    response = await client.post(
        f"/api/v1/providers/{provider_id}/authorization/refresh", headers=headers
    )

    problem = is_problem(response, expected_status(error))
    assert (problem["institution_error"], problem["transient"]) == (error, transient)
    # The refresh token may have been spent by the institution even when no answer came back:
    # presenting it again could be taken for a stolen token's replay. Sent once.
    assert len(institution.refresh_calls()) == 1
    (failed,) = await audit_rows(session, "refresh_failed")
    assert (failed.details["error"], failed.details["transient"]) == (error, transient)
    status = (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()
    assert (status["status"], status["refresh_failures"]) == ("active", 1)


@pytest.mark.parametrize(
    ("answers", "at_institution", "sent"),
    [
        ([DOWN], "revoked", 2),
        ([DOWN] * 3, "refused (503)", 3),
        ([(DROP, None)] * 3, "failed (unreachable)", 3),
        ([LATE] * 3, "failed (timeout)", 2),
        ([(400, {"error": "unsupported_token_type"})], "refused (400)", 1),
    ],
)
async def test_revocation_is_retried_and_the_connection_revoked_whatever_the_institution_says(
    impatient_client, institution, test_settings, session, answers, at_institution, sent
):
    client = impatient_client
    headers = await signed_in(client)
    provider_id, query = await start(client, headers, "acme")
    await callback(client, test_settings, state=query["state"][0], code=GOOD_CODE)
    institution.revoke_responses.extend(answers)
    path = f"/api/v1/providers/{provider_id}/authorization"

    assert (await client.delete(path, headers=headers)).status_code == 204

    assert calls_to(institution, "/revoke") == sent
    assert (await client.get(path, headers=headers)).json()["status"] == "revoked"
    assert await session.scalar(text("SELECT count(*) FROM provider_tokens")) == 0
    (revoked,) = await audit_rows(session, "revoked")
    assert revoked.details == {"at_institution": at_institution}
