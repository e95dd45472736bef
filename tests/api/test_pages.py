"""Every HTML page Dashtam serves (the API's docs, the sandbox's approval page, the callback
server's result page) carries the same protections: no framing, no MIME sniffing, no referrer,
not cached, and a content security policy that allows nothing from another origin. The docs
need nothing from the internet: every script and stylesheet they load comes from the API."""

import re
from urllib.parse import urlsplit

import httpx
import pytest

from dashtam_api.connections.oauth import new_code_verifier
from dashtam_callback.main import create_app as create_callback_app
from tests.api.test_sandbox import AUTHORIZE, params


def assert_page_headers(response: httpx.Response) -> dict[str, str]:
    """The protections every page carries; returns its policy's directives."""
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    directives = {}
    for part in response.headers["content-security-policy"].split(";"):
        name, _, value = part.strip().partition(" ")
        directives[name] = value
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert "'unsafe-eval'" not in response.headers["content-security-policy"]
    assert "<html lang='en'>" in response.text
    assert re.search(r"<title>[^<]+</title>", response.text)
    return directives


async def test_the_docs_load_only_from_the_api(client):
    page = await client.get("/docs")
    assert page.status_code == 200
    directives = assert_page_headers(page)
    assert directives["script-src"] == "'self'"  # no inline script, no CDN
    assert directives["connect-src"] == "'self'"
    references = re.findall(r"(?:src|href)='([^']+)'", page.text)
    assert references, page.text
    for reference in references:
        assert reference.startswith("/"), f"{reference} is not the API's own"
        asset = await client.get(reference)
        assert asset.status_code == 200, reference
    assert re.search(r"data-openapi-url='/openapi.json'", page.text)
    assert (await client.get("/openapi.json")).status_code == 200


async def test_the_approval_page_cannot_be_framed_and_posts_only_here_or_to_the_callback(
    client, test_settings
):
    page = await client.get(AUTHORIZE, params=params(test_settings, new_code_verifier()))
    assert page.status_code == 200
    directives = assert_page_headers(page)
    callback = urlsplit(test_settings.CALLBACK_BASE_URL)
    assert directives["form-action"].split() == ["'self'", f"{callback.scheme}://{callback.netloc}"]
    assert "<script" not in page.text  # readable and usable without scripts
    assert re.findall(r"<button name='decision' value='(\w+)'>(\w+)</button>", page.text) == [
        ("approve", "Approve"),
        ("deny", "Deny"),
    ]
    refused = await client.get(AUTHORIZE, params={"client_id": "nobody"})
    assert refused.status_code == 400
    assert_page_headers(refused)


@pytest.mark.parametrize("query", [{}, {"state": "s", "code": "c"}])
async def test_the_callback_page_carries_the_same_protections(test_settings, query):
    # With a state, the callback server forwards to an API that is not there: its "could not
    # be reached" page is a page like any other.
    settings = test_settings.model_copy(update={"API_BASE_URL": "https://127.0.0.1:9"})
    app = create_callback_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://callback") as http:
        page = await http.get("/oauth/callback", params=query)
    assert page.status_code in (400, 502)
    directives = assert_page_headers(page)
    assert directives["form-action"] == "'none'"
    assert "<script" not in page.text
