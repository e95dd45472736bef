"""Security headers on every answer (pure ASGI: a few header tuples appended as it starts).

- ``X-Content-Type-Options: nosniff``: a browser never guesses a type the answer did not say.
- ``Referrer-Policy: no-referrer``: nothing of Dashtam's URLs leaks to where links lead.
- ``Cache-Control: no-store`` on answers to requests that carried credentials (an
  ``Authorization`` header): no proxy or browser keeps a person's data (an answer that set its
  own Cache-Control keeps it).
- ``Strict-Transport-Security`` on answers over HTTPS: browsers come back over HTTPS only.
  ``HSTS_MAX_AGE_SECONDS`` (a year; five minutes in development and testing, where the host is
  ``localhost``: a browser would otherwise force HTTPS on every other local development server
  for a year, whatever its port).
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALWAYS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, hsts_seconds: int) -> None:
        self.app = app
        self._hsts = (b"strict-transport-security", f"max-age={hsts_seconds}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = scope.get("scheme") == "https"
        credentials = any(name == b"authorization" for name, _ in scope["headers"])

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}  # an answer's own ones stand
                headers += (h for h in ALWAYS if h[0] not in present)
                if secure and self._hsts[0] not in present:
                    headers.append(self._hsts)
                if credentials and NO_STORE[0] not in present:
                    headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)
