"""Bodies refused before they are read (dashtam_api/body_limit.py): an import without
credentials or length, or too large; any other request over its limit."""

import asyncio
import json

import pytest

from dashtam_api.body_limit import BodyLimit

IMPORT = "/api/v1/accounts/5f2b1b5c-ebad-407f-8d5b-63687994943e/imports"


def answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict | None, bool]:
    """(status, problem, whether the body was read) for one request through the limit."""
    read = []

    async def app(scope, receive, send):
        read.append(await receive())
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        return {"type": "http.request", "body": b"x", "more_body": False}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    limit = BodyLimit(app, import_max_bytes=10_000, request_max_bytes=1_000)
    asyncio.run(limit(scope, receive, send))
    status = sent[0]["status"]
    body = sent[1]["body"]
    return status, json.loads(body) if body else None, bool(read)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", IMPORT, {"content-length": "500"}, 401),  # no credentials: the body unread
        ("POST", IMPORT, {"authorization": "Bearer x"}, 411),  # no length said
        ("POST", IMPORT, {"authorization": "Bearer x", "content-length": "10001"}, 413),
        ("POST", IMPORT, {"authorization": "Bearer x", "content-length": "ten"}, 413),
        ("POST", "/api/v1/auth/login", {"content-length": "1001"}, 413),
        ("PATCH", "/api/v1/auth/me", {"content-length": "999999999"}, 413),
    ],
)
def test_refused_before_the_body_is_read(method, path, headers, status):
    got, problem, read = answer(method, path, headers)
    assert (got, problem["status"], read) == (status, status, False)


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", IMPORT, {"authorization": "Bearer x", "content-length": "10000"}),
        ("POST", "/api/v1/auth/login", {"content-length": "1000"}),
        ("POST", "/api/v1/auth/login", {}),  # chunked JSON: the endpoint's own reading
        ("GET", IMPORT.removesuffix("/imports"), {}),
    ],
)
def test_within_the_limits_the_app_reads_it(method, path, headers):
    assert answer(method, path, headers) == (201, None, True)
