"""Two uvicorn worker processes, one scrape: the API started as `inv up --workers 2` starts it
(infra gives it an empty PROMETHEUS_MULTIPROC_DIR), real HTTPS traffic spread over both, and
every scrape, whichever worker answers it, reports all of it."""

import ssl

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from infra.runtime import process
from tests.fixtures.servers import LAYOUT, own_api

REQUESTS = 60


def _health_count_and_pids(text: str) -> tuple[float, set[str]]:
    count, pids = 0.0, set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "dashtam_http_requests_total" and sample.labels == {
                "method": "GET",
                "route": "/health",
                "status": "200",
            }:
                count = sample.value
            if sample.name == "dashtam_worker_start_time_seconds":
                pids.add(sample.labels["pid"])
    return count, pids


def test_two_workers_report_into_one_scrape(worker_settings):
    with own_api(worker_settings, "metrics", workers=2) as server:
        master = psutil.Process(process.running(LAYOUT.pid_file(server.pid_name)).pid)
        # uvicorn spawns its workers with multiprocessing (no resource tracker or other helper).
        workers = {
            str(child.pid)
            for child in master.children()
            if "spawn_main" in " ".join(child.cmdline())
        }
        tls = ssl.create_default_context(cafile=str(LAYOUT.ca_file))
        # wait_healthy's own probes count too: start from what a scrape says now.
        start, _ = _health_count_and_pids(httpx.get(f"{server.url}/metrics", verify=tls).text)
        # A new connection per request: the kernel hands each to whichever worker accepts.
        for _ in range(REQUESTS):
            assert httpx.get(f"{server.url}/health", verify=tls).status_code == 200

        seen = []
        for _ in range(10):
            answer = httpx.get(f"{server.url}/metrics", verify=tls)
            assert answer.status_code == 200
            seen.append(_health_count_and_pids(answer.text))
        assert {count - start for count, _ in seen} == {REQUESTS}
        assert {frozenset(pids) for _, pids in seen} == {frozenset(workers)}
        assert len(workers) == 2
