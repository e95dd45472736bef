"""The real servers over HTTPS, verifying the project's CA (certs/ca.pem).

They are the test environment's own servers on the test ports (8001/8183, shifted per xdist
worker), started here and stopped afterwards: the development servers are never touched.
"""

import ssl

import httpx
import pytest

from infra import apps
from infra.layout import Layout
from tests.conftest import ROOT, TEST_ENV_FILE, worker_number

LAYOUT = Layout(root=ROOT)


@pytest.fixture(scope="module")
def real_servers():
    offset = worker_number()
    started = {}
    try:
        for app, base in zip(apps.APPS, (8001, 8183), strict=True):
            port = base + offset * 10
            name = f"test-{app.name}-{offset}"
            apps.start_app(
                app, layout=LAYOUT, env_file=TEST_ENV_FILE, reload=False, pid_name=name, port=port
            )
            started[app.name] = (app, name, port)
        for app, name, port in started.values():
            apps.wait_healthy(
                app, layout=LAYOUT, env_file=TEST_ENV_FILE, timeout=60, pid_name=name, port=port
            )
        yield {key: port for key, (_, _, port) in started.items()}
    finally:
        for app, name, _ in started.values():
            apps.stop_app(app, layout=LAYOUT, pid_name=name)


def verified() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(LAYOUT.ca_file))


def test_api_health_over_https(real_servers):
    response = httpx.get(f"https://localhost:{real_servers['api']}/health", verify=verified())
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert response.json()["environment"] == "testing"


def test_callback_health_over_https(real_servers):
    response = httpx.get(f"https://localhost:{real_servers['callback']}/health", verify=verified())
    assert response.status_code == 200
    assert response.json()["service"] == "callback"


def test_the_certificate_is_not_trusted_without_the_project_ca(real_servers):
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://localhost:{real_servers['api']}/health")


def test_plain_http_is_not_served(real_servers):
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://localhost:{real_servers['api']}/health", timeout=3)
