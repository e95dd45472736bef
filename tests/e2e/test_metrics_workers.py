"""Two uvicorn worker processes, one scrape: the API started as `inv up --workers 2` starts it
(infra gives it an empty PROMETHEUS_MULTIPROC_DIR), real HTTPS traffic spread over both, and
every scrape, whichever worker answers it, reports all of it."""

import ssl

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from infra import apps
from infra.runtime import process
from tests.e2e.test_graceful_stop import free_port
from tests.fixtures.environment import TEST_ENV_FILE, WORKER
from tests.fixtures.servers import LAYOUT

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
    api, pid_name, port = apps.APPS[0], f"test-metrics-{WORKER}", free_port()
    apps.start_app(
        api,
        layout=LAYOUT,
        env_file=TEST_ENV_FILE,
        reload=False,
        pid_name=pid_name,
        port=port,
        workers=2,
        env_overrides={
            "DATABASE_URL": worker_settings.DATABASE_URL,
            "REDIS_URL": worker_settings.REDIS_URL,
            "BACKGROUND_JOBS_ENABLED": "false",
        },
    )
    try:
        apps.wait_healthy(
            api, layout=LAYOUT, env_file=TEST_ENV_FILE, timeout=60, pid_name=pid_name, port=port
        )
        master = psutil.Process(process.running(LAYOUT.pid_file(pid_name)).pid)
        # uvicorn spawns its workers with multiprocessing (no resource tracker or other helper).
        workers = {
            str(child.pid)
            for child in master.children()
            if "spawn_main" in " ".join(child.cmdline())
        }
        tls = ssl.create_default_context(cafile=str(LAYOUT.ca_file))
        url = f"https://localhost:{port}"
        # wait_healthy's own probes count too: start from what a scrape says now.
        with httpx.Client(verify=tls) as http:
            start, _ = _health_count_and_pids(http.get(f"{url}/metrics").text)
        # A new connection per request: the kernel hands each to whichever worker accepts.
        for _ in range(REQUESTS):
            assert httpx.get(f"{url}/health", verify=tls).status_code == 200

        seen = []
        for _ in range(10):
            answer = httpx.get(f"{url}/metrics", verify=tls)
            assert answer.status_code == 200
            seen.append(_health_count_and_pids(answer.text))
        assert {count - start for count, _ in seen} == {REQUESTS}
        assert {frozenset(pids) for _, pids in seen} == {frozenset(workers)}
        assert len(workers) == 2
    finally:
        apps.stop_app(api, layout=LAYOUT, pid_name=pid_name)
