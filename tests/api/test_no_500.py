"""No input makes the API answer 500: every route, hostile bodies, ids and headers."""

import re
import uuid

import pytest

GARBAGE_BODIES = [
    None,
    b"",
    b"{",
    b"[]",
    b"null",
    b'"text"',
    b"12345678901234567890123",
    b'{"email": {"$ne": 1}, "password": []}',
    b'{"alias": "\\u0000", "provider_key": "\\u0000"}',
    b'{"refresh_token": "' + b"A" * 5000 + b'"}',
    b'{"state": "s", "code": "c", "error": "' + "\u202e".encode() * 50 + b'"}',
    '{"name": "名前 \U0001f600", "alias": "\U0001f600"}'.encode(),
    b"\xff\xfe\x00garbage",
]
IDS = [str(uuid.uuid4()), "not-a-uuid", "0" * 500, "%00", "..%2F..%2Fetc"]


# Routes kept out of the OpenAPI document (the callback forward and the sandbox).
HIDDEN = [
    ("POST", "/api/v1/oauth/callback"),
    ("GET", "/sandbox/oauth/authorize"),
    ("POST", "/sandbox/oauth/authorize"),
    ("POST", "/sandbox/oauth/token"),
    ("POST", "/sandbox/oauth/revoke"),
    ("GET", "/sandbox/api/accounts"),
    ("GET", "/sandbox/api/accounts/{provider_id}/positions"),
    ("POST", "/sandbox/_control/fail"),
]


# What a route that reads no body is sent: none, and one it must not trip over unread.
UNREAD_BODIES = [None, b"\xff\xfe\x00garbage"]
PARAMETER = re.compile(r"\{[^}]+\}")


def routes(app) -> list[tuple[str, str, bool]]:
    """(method, path, whether it reads a body): the document's operations, then HIDDEN (whose
    POSTs read one)."""
    documented = [
        (method.upper(), path, "requestBody" in operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
    ]
    return documented + [(method, path, method == "POST") for method, path in HIDDEN]


def hostile_requests(app) -> list[tuple[str, str, bytes | None]]:
    """Every route with each hostile id in all its path parameters; every hostile body to each
    route that reads one, with an id that parses (the body is read only past the path's
    validation) and with each hostile id; the rest get UNREAD_BODIES. No request twice."""
    found = {}
    for method, path, reads_body in routes(app):
        urls = [PARAMETER.sub(hostile_id, path) for hostile_id in IDS] if "{" in path else [path]
        for url in urls:
            for body in GARBAGE_BODIES if reads_body else UNREAD_BODIES:
                found[(method, url, body)] = None
    return list(found)


@pytest.mark.parametrize("with_auth", [False, True])
async def test_every_route_survives_hostile_input(app, client, auth_headers, with_auth):
    headers = {"content-type": "application/json", **(auth_headers if with_auth else {})}
    sent = hostile_requests(app)
    for method, url, body in sent:
        response = await client.request(method, url, content=body, headers=headers)
        assert response.status_code < 500, (method, url, body, response.text[:300])
    assert len(sent) > 500


async def test_hostile_headers(client):
    for value in ("Bearer " + "x" * 10000, "Bearer \u00e9", "Bearer a.b", "Basic ::::", "Bearer"):
        response = await client.get(
            "/api/v1/auth/me", headers={"Authorization": value.encode("latin-1")}
        )
        assert response.status_code == 401
