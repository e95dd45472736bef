"""/metrics on the in-process app: counters that move with real traffic, labelled by route
template; refreshes, syncs and connections by status; refused outside METRICS_ALLOW_FROM.
(Several worker processes into one scrape: tests/e2e/test_metrics_workers.py.)"""

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from dashtam_models import ProviderConnection
from tests.api.test_refresh import connected_schwab


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, keyed by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return samples(response.text)


def requests_of(scraped, method: str, route: str, status: int) -> float:
    labels = frozenset({"method": method, "route": route, "status": str(status)}.items())
    return scraped.get(("dashtam_http_requests_total", labels), 0.0)


async def test_requests_are_counted_by_route_template_and_status(client, auth_headers):
    before = await scrape(client)
    for _ in range(3):
        assert (await client.get("/health")).status_code == 200
    missing = f"/api/v1/providers/{uuid.uuid4()}"
    assert (await client.get(missing, headers=auth_headers)).status_code == 404
    assert (await client.get("/no/such/path")).status_code == 404
    assert (await client.request("BREW", "/health")).status_code == 405
    after = await scrape(client)

    def moved(method, route, status):
        return requests_of(after, method, route, status) - requests_of(
            before, method, route, status
        )

    assert moved("GET", "/health", 200) == 3
    assert moved("GET", "/api/v1/providers/{provider_id}", 404) == 1
    assert moved("GET", "other", 404) == 1  # an unknown path is never a label of its own
    assert moved("other", "/health", 405) == 1  # nor an invented method
    count = (
        "dashtam_http_request_duration_seconds_count",
        frozenset({"method": "GET", "route": "/health"}.items()),
    )
    assert after[count] - before.get(count, 0) == 3
    text = (await client.get("/metrics")).text
    assert missing not in text
    assert "/no/such/path" not in text


async def test_outside_the_allow_list_metrics_is_an_unknown_path(app):
    """The public port gives nothing away: the same answer as any path that does not exist."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as outsider:
        refused = await outsider.get("/metrics")
        unknown = await outsider.get("/no-such-page")
    assert refused.status_code == unknown.status_code == 404
    assert refused.json() == unknown.json()
    assert "dashtam" not in refused.text


@pytest.mark.parametrize("spec", ["10.0.0.0/8,::1", "not-a-network", "10.0.0.0/33"])
def test_the_allow_list_setting_is_checked(test_settings, spec):
    from dashtam_core.config import Settings

    values = {**test_settings.model_dump(), "METRICS_ALLOW_FROM": spec}
    if spec.startswith("10.0.0.0/8"):
        assert spec == Settings(**values).METRICS_ALLOW_FROM
    else:
        with pytest.raises(ValueError, match="is not an IP address or network"):
            Settings(**values)


async def test_refreshes_syncs_and_connections_are_counted(
    institution_client, institution, test_settings, session
):
    client = institution_client
    before = await scrape(client)
    headers, provider_id = await connected_schwab(client, test_settings)
    refreshed = await client.post(
        f"/api/v1/providers/{provider_id}/authorization/refresh", headers=headers
    )
    assert refreshed.status_code == 200, refreshed.text
    for _ in range(2):
        synced = await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers)
        assert synced.status_code == 200, synced.text
    after = await scrape(client)

    def moved(name, **labels):
        key = (name, frozenset(labels.items()))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("dashtam_refreshes_total", trigger="on_demand", outcome="refreshed") == 1
    assert moved("dashtam_syncs_total", outcome="synced") == 2
    counted = await session.scalar(
        select(func.count()).where(ProviderConnection.status == "active")
    )
    assert after[("dashtam_connections", frozenset({"status": "active"}.items()))] == counted
    assert after[("dashtam_connections", frozenset({"status": "revoked"}.items()))] == 0
