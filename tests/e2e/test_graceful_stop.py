"""Stopping the API (`inv down`, SIGTERM) lets a request under way finish within the grace
period, refuses new ones meanwhile, and then the process is gone.

A server of its own (not the shared test servers), on a free port, whose sandbox token endpoint
answers two seconds late: the request in flight when the stop begins.
"""

import ssl
import threading
import time

import httpx

from infra import apps
from infra.runtime import process
from tests.fixtures.servers import LAYOUT, own_api


def test_a_request_under_way_finishes_when_the_api_stops(worker_settings):
    api = apps.APPS[0]
    with own_api(
        worker_settings, "graceful", SANDBOX_TOKEN_LATENCY_SECONDS="2", SHUTDOWN_GRACE_SECONDS="8"
    ) as server:
        pid_name, port = server.pid_name, server.port
        pid_file = LAYOUT.pid_file(pid_name)
        url = server.url
        tls = ssl.create_default_context(cafile=str(LAYOUT.ca_file))
        answers: list = []

        def slow_request() -> None:
            try:
                answers.append(
                    httpx.post(f"{url}/sandbox/oauth/token", data={}, verify=tls, timeout=20)
                )
            except httpx.HTTPError as exc:
                answers.append(exc)

        in_flight = threading.Thread(target=slow_request)
        in_flight.start()
        time.sleep(0.7)  # the request is at the sandbox, sleeping through its latency
        started = time.monotonic()
        assert apps.stop_app(api, layout=LAYOUT, pid_name=pid_name)
        stopped_after = time.monotonic() - started
        in_flight.join(20)

        (answer,) = answers
        assert isinstance(answer, httpx.Response), answer  # answered, not cut off
        assert answer.status_code in (400, 401), answer.text  # the sandbox's own refusal
        assert 0.8 < stopped_after < 8, stopped_after  # it waited for the request, no longer
        assert process.running(pid_file) is None
        assert not process.port_in_use(port)
