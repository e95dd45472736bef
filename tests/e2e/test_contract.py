"""The API keeps its OpenAPI contract, checked by schemathesis against the real HTTPS API: every
operation, signed in, with generated requests valid and not; no server error, no status or
content type the document does not list, every answer shaped as documented.

Bounded to fit the suite (a few examples per operation, 15 sequences of linked calls, seed 0:
the same requests every run, so a failure replays); `inv test --contract-deep` runs it with
many more cases from a seed it prints (docs/architecture.md, "The OpenAPI contract").
"""

import asyncio
import os
import ssl
from http.cookiejar import DefaultCookiePolicy

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.checks import positive_data_acceptance

from tests.fixtures.database import TABLES
from tests.helpers import execute

# The suite's bounded run: the same cases every run (seed 0). `inv test --contract-deep` sets
# these variables: many more cases, from a seed it prints (the same seed replays the same run).
DEEP = os.environ.get("DASHTAM_CONTRACT_DEEP") == "1"
SEED = int(os.environ.get("DASHTAM_CONTRACT_SEED", "0"))
EXAMPLES = 100 if DEEP else 8  # per operation
STATEFUL_EXAMPLES = 100 if DEEP else 15  # sequences of up to 6 linked calls


def _replay_hint() -> None:
    # Shown with a failure (pytest prints a failing test's output).
    how = f"inv test --contract-deep --contract-seed {SEED}" if DEEP else "inv test --e2e"
    print(f"contract: seed {SEED}, {EXAMPLES} cases per operation; replay: {how}")


@pytest.fixture(scope="module")
def api_schema(live_servers):
    return schemathesis.openapi.from_url(
        f"{live_servers.api_url}/openapi.json", verify=live_servers.ca_file
    )


@pytest.fixture(scope="module")
def http_session(live_servers):
    """One keep-alive session for every case: a connection (and TLS handshake) per request was
    a third of the test's CPU, client and server. No cookies kept, so each case still stands
    alone (the API sets none; a cookie would otherwise carry from one case into the next)."""
    with requests.Session() as session:
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        yield session


@pytest.fixture(scope="module")
def signed_in(live_servers) -> dict[str, str]:
    credentials = {"email": "contract@example.com", "password": "a contract is a contract"}
    tls = ssl.create_default_context(cafile=live_servers.ca_file)
    with httpx.Client(base_url=live_servers.api_url, verify=tls) as http:
        http.post("/api/v1/auth/register", json=credentials)
        token = http.post("/api/v1/auth/login", json=credentials).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.commits  # with `connection`: what the API wrote is truncated afterwards
def test_every_operation_keeps_the_contract(
    api_schema, signed_in, live_servers, http_session, connection
):
    # schemathesis's own pytest plugin reads a pytest attribute that pytest 9 no longer has:
    # the operations are walked here, each with Hypothesis directly.
    _replay_hint()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @seed(SEED)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def keeps_the_contract(case):
            # positive_data_acceptance expects every schema-valid request to be accepted; an
            # e-mail at a reserved domain (.test) is format: email and still refused.
            case.call_and_validate(
                session=http_session,
                headers=signed_in,
                verify=live_servers.ca_file,
                excluded_checks=[positive_data_acceptance],
            )

        keeps_the_contract()


@pytest.mark.commits  # each sequence truncates after itself; `connection` after the last
def test_linked_operations_keep_the_contract(
    api_schema, live_servers, http_session, worker_settings, connection
):
    """The stateful phase: operations chained by the links schemathesis finds (a provider that
    was created is then read, renamed, connected, deleted), each answer checked as above. Every
    sequence starts from an empty database and a new person, so that each is the same
    whenever Hypothesis plays it again."""
    tls = ssl.create_default_context(cafile=live_servers.ca_file)

    class Workflow(api_schema.as_state_machine()):
        def setup(self):
            credentials = {"email": "linked@example.com", "password": "a contract is a contract"}
            with httpx.Client(base_url=live_servers.api_url, verify=tls) as http:
                http.post("/api/v1/auth/register", json=credentials)
                token = http.post("/api/v1/auth/login", json=credentials).json()["access_token"]
            self.headers = {"Authorization": f"Bearer {token}"}

        def teardown(self):
            asyncio.run(execute(worker_settings.DATABASE_URL, f"TRUNCATE {TABLES} CASCADE"))

        def get_call_kwargs(self, case):
            return {
                "session": http_session,
                "headers": self.headers,
                "verify": live_servers.ca_file,
            }

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=[positive_data_acceptance],
                transport_kwargs=kwargs,
            )

    _replay_hint()
    run_state_machine_as_test(
        seed(SEED)(Workflow),
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
