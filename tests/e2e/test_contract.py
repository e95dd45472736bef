"""The API keeps its OpenAPI contract, checked by schemathesis against the real HTTPS API: every
operation, signed in, with generated requests valid and not; no server error, no status or
content type the document does not list, every answer shaped as documented, and every request
the document allows accepted (or refused with a status it declares for a reason the schema
cannot see).

Bounded to fit the suite (8 cases per operation and 16 sequences of linked calls, as many as
before there were two seeds): half from seed 0, the same requests every run, half from one
random seed, printed (so every run explores a little; the printed command replays it, deeper). `inv test --contract-deep` runs it with many more cases from one
seed it prints (docs/architecture.md, "The OpenAPI contract").

The bearer the operations are called with stays signed in throughout: the operations that end
a session (logout, ending one session or every other one) are called with a throwaway sign-in of
their own, so that no other operation is left answering 401 to a dead token.
"""

import asyncio
import os
import secrets
import ssl
from collections import defaultdict
from http.cookiejar import DefaultCookiePolicy

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.fixtures.database import TABLES
from tests.helpers import execute

# The suite's bounded run: seed 0 (the same cases every run) and one random seed. `inv test
# --contract-deep` sets these variables: many more cases, from the one seed it prints (the same
# seed replays the same run).
DEEP = os.environ.get("DASHTAM_CONTRACT_DEEP") == "1"
SEED = int(os.environ.get("DASHTAM_CONTRACT_SEED", "0"))
SEEDS = [SEED] if DEEP else [0, secrets.randbelow(2**32)]
# The suite's bound stands (8 cases per operation, 15-16 sequences, ~10 s), shared by its two
# seeds.
EXAMPLES = 100 if DEEP else 4  # per operation and seed
STATEFUL_EXAMPLES = 100 if DEEP else 8  # sequences of up to 6 linked calls, per seed
# What ends sessions of the person it is called by: called by another person (whose own
# session survives them: logout ends the session of a refresh token no fuzzer guesses, and the
# others end a session by an id or every session but the caller's).
ENDS_A_SESSION = {"auth-logout", "auth-end-session", "auth-end-other-sessions"}
PASSWORD = "a contract is a contract"


def _replay_hint(run_seed: int) -> None:
    # Shown with a failure (pytest prints a failing test's output).
    print(
        f"contract: seed {run_seed}, {EXAMPLES} cases per operation; replay: "
        f"inv test --contract-deep --contract-seed {run_seed}"
    )


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


def _sign_in(live_servers, who: str = "contract") -> dict[str, str]:
    credentials = {"email": f"{who}@example.com", "password": PASSWORD}
    tls = ssl.create_default_context(cafile=live_servers.ca_file)
    with httpx.Client(base_url=live_servers.api_url, verify=tls) as http:
        http.post("/api/v1/auth/register", json=credentials)
        token = http.post("/api/v1/auth/login", json=credentials).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _play(operation, run_seed, http_session, live_servers, headers) -> list[int]:
    """The operation's cases from this seed, each checked; the statuses they were answered."""
    statuses = []

    @seed(run_seed)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def keeps_the_contract(case):
        response = case.call_and_validate(
            session=http_session, headers=headers, verify=live_servers.ca_file
        )
        statuses.append(response.status_code)

    keeps_the_contract()
    return statuses


@pytest.mark.commits  # with `connection`: what the API wrote is truncated afterwards
def test_every_operation_keeps_the_contract(api_schema, live_servers, http_session, connection):
    # schemathesis's own pytest plugin reads a pytest attribute that pytest 9 no longer has:
    # the operations are walked here, each with Hypothesis directly.
    signed_in, ender = _sign_in(live_servers), _sign_in(live_servers, "ender")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    answered: dict[str, set[int]] = defaultdict(set)
    for run_seed in SEEDS:
        _replay_hint(run_seed)
        for operation in operations:
            name = operation.definition.raw.get("operationId", operation.label)
            headers = ender if name in ENDS_A_SESSION else signed_in
            for status in _play(operation, run_seed, http_session, live_servers, headers):
                answered[name].add(status)
    # The bearer lived through it all: every operation it opens answered it (something other
    # than 401, at least once), so the rest was really exercised.
    bearer = {
        o.definition.raw["operationId"]
        for o in operations
        if any("HTTPBearer" in r for r in o.definition.raw.get("security", ()))
    } - ENDS_A_SESSION
    reached = sorted(name for name in bearer if answered[name] - {401})
    print(f"contract: {len(reached)} of {len(bearer)} signed-in operations answered, not 401")
    assert reached == sorted(bearer)
    assert http_session.get(
        f"{live_servers.api_url}/api/v1/auth/me", headers=signed_in, verify=live_servers.ca_file
    ).ok


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
                response, additional_checks=additional_checks, transport_kwargs=kwargs
            )

    for run_seed in SEEDS:
        _replay_hint(run_seed)
        run_state_machine_as_test(
            seed(run_seed)(Workflow),
            settings=settings(
                max_examples=STATEFUL_EXAMPLES,
                stateful_step_count=6,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
