"""Security headers on every answer: every operation of the OpenAPI document, plus what the
document does not list (health, docs, metrics, an unknown path), with and without credentials;
Strict-Transport-Security over HTTPS (the real server)."""

import re
import ssl
import uuid

import httpx

from tests.api.test_connections import signed_in


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


def _assert_secured(answer: httpx.Response, *, credentials: bool) -> None:
    where = f"{answer.request.method} {answer.request.url.path} -> {answer.status_code}"
    assert answer.headers.get("x-content-type-options") == "nosniff", where
    assert answer.headers.get("referrer-policy") == "no-referrer", where
    if credentials:
        assert "no-store" in answer.headers.get("cache-control", ""), where
    assert "strict-transport-security" not in answer.headers, where  # plain http here


async def test_every_answer_carries_the_security_headers(client):
    headers = await signed_in(client, "headers")
    document = (await client.get("/openapi.json")).json()
    operations = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) > 35
    for method, path in operations:
        for credentials in (headers, {}):
            # An empty JSON body: the answer may be anything (201, 404, 422, 401...); the
            # headers must be there whatever it is.
            answer = await client.request(
                method,
                _concrete(path),
                headers=credentials,
                json={} if method in ("POST", "PUT", "PATCH") else None,
            )
            assert answer.status_code < 500, f"{method} {path}: {answer.text}"
            _assert_secured(answer, credentials=bool(credentials))
    for path in ("/health", "/docs", "/openapi.json", "/metrics", "/no/such/path"):
        _assert_secured(await client.get(path), credentials=False)


def test_strict_transport_security_over_https(live_servers):
    tls = ssl.create_default_context(cafile=live_servers.ca_file)
    answer = httpx.get(f"{live_servers.api_url}/health", verify=tls)
    # Five minutes in testing (localhost is every local server's host); a year in production.
    assert answer.headers["strict-transport-security"] == "max-age=300"
    assert answer.headers["x-content-type-options"] == "nosniff"
