"""The size of a request's body, refused before it is read (pure ASGI).

FastAPI reads a request's body (a JSON document, a multipart upload spooled to disk) before it
resolves the endpoint's dependencies, authentication among them: without a limit here, anyone
could make the API read or store any amount before being told 401. So, before the app sees the
request:

- a file import (``POST /api/v1/accounts/{id}/imports``, or the console's
  ``POST /app/accounts/{id}/import``) must carry credentials (an Authorization header; the
  console's, its sign-in cookie; else 401, the body unread), say its length
  (``Content-Length``; else 411) and be at most ``IMPORT_MAX_BYTES`` (else 413);
- any other request with a ``Content-Length`` over ``REQUEST_MAX_BYTES`` is a 413.

The server (h11) never lets a body run past its ``Content-Length``; a chunked body elsewhere
is left to the endpoint's own reading (JSON bodies are small; no client of ours sends one).
"""

import json
import re

from starlette.types import ASGIApp, Receive, Scope, Send

IMPORT_PATH = re.compile(r"^/api/v1/accounts/[^/]+/imports/?$")
CONSOLE_IMPORT_PATH = re.compile(r"^/app/accounts/[^/]+/import/?$")
# The console's sign-in cookies (console/cookies.py): either one is a credential to check.
CONSOLE_COOKIES = re.compile(rb"(^|;)\s*dashtam_(access|refresh)=[^;\s]")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, import_max_bytes: int, request_max_bytes: int) -> None:
        self.app = app
        self.import_max = import_max_bytes
        self.request_max = request_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        refusal = None
        path = scope["path"]
        console = CONSOLE_IMPORT_PATH.match(path)
        if scope["method"] == "POST" and (console or IMPORT_PATH.match(path)):
            credentials = (
                CONSOLE_COOKIES.search(headers.get(b"cookie", b""))
                if console
                else headers.get(b"authorization", b"").strip()
            )
            if not credentials:
                refusal = (401, "Authentication required.", [(b"www-authenticate", b"Bearer")])
            elif length is None:
                refusal = (411, "Say the file's length (Content-Length).", [])
            elif _over(length, self.import_max):
                refusal = (413, f"The file is larger than {self.import_max} bytes.", [])
        elif length is not None and _over(length, self.request_max):
            refusal = (413, f"The request is larger than {self.request_max} bytes.", [])
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail, extra = refusal
        body = json.dumps(
            {"type": "about:blank", "title": _TITLES[status], "status": status, "detail": detail}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    # The body is left unread: the connection cannot carry another request.
                    (b"connection", b"close"),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


_TITLES = {401: "Unauthorized", 411: "Length Required", 413: "Content Too Large"}


def _over(length: bytes, limit: int) -> bool:
    try:
        return int(length) > limit
    except ValueError:
        return True  # not a length: refused as too large to say
