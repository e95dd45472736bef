"""The real servers over HTTPS, verifying the project's CA (certs/ca.pem).

They are this worker's own servers on the test ports (see tests/fixtures/servers.py): the
development servers are never touched.
"""

import ssl

import httpx
import pytest


def verified(live_servers) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=live_servers.ca_file)


def test_api_health_over_https(live_servers):
    response = httpx.get(f"{live_servers.api_url}/health", verify=verified(live_servers))
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert response.json()["environment"] == "testing"


def test_callback_health_over_https(live_servers):
    response = httpx.get(f"{live_servers.callback_url}/health", verify=verified(live_servers))
    assert response.status_code == 200
    assert response.json()["service"] == "callback"


def test_the_certificate_is_not_trusted_without_the_project_ca(live_servers):
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{live_servers.api_url}/health")


def test_plain_http_is_not_served(live_servers):
    with pytest.raises(httpx.HTTPError):
        httpx.get(live_servers.api_url.replace("https://", "http://") + "/health", timeout=3)


def test_the_live_server_tests_share_one_worker(live_servers, request):
    """Every test on the live servers is in one xdist group, so that a parallel run starts
    them in one worker, not in each (an API and a callback server, ~3 s of CPU per worker).
    In an xdist worker dealing out groups, the group is a suffix of the test's id: present
    only when the marker was there before xdist's collection hook ran."""
    (group,) = [m.args for m in request.node.iter_markers("xdist_group")]
    assert group == ("live-servers",)
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@live-servers"), request.node.nodeid
