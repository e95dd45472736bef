"""The OAuth callback server: ``uvicorn dashtam_callback.main:create_app --factory``.

Institutions redirect the browser here (``/oauth/callback``). The server forwards ``code`` and
``state`` (or ``error``) to the API over HTTPS, verifying the project's CA and proving itself
with the shared secret, then shows a small page: success with the provider's alias, or the
error. Every text is escaped; the authorization code is never shown.
"""

import ssl
from html import escape

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from dashtam_callback import __version__
from dashtam_core.config import Settings, settings_or_exit
from dashtam_core.pages import page_headers

FORWARD_PATH = "/api/v1/oauth/callback"


def _page(title: str, message: str, status: int, back: str | None = None) -> HTMLResponse:
    """The page a person lands on from the institution; ``back``: the console's connections,
    where they came from (or "close this window" when they started from the API)."""
    onward = (
        f"<p><a href='{escape(back)}'>Back to your connections in Dashtam</a></p>"
        if back
        else "<p>You can close this window.</p>"
    )
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title></head>"
        "<body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
        f"<main><h1>{escape(title)}</h1><p>{escape(message)}</p>{onward}</main></body></html>"
    )
    policy = "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'"
    return HTMLResponse(html, status_code=status, headers=page_headers(policy))


def _tls(settings: Settings) -> ssl.SSLContext:
    # Only the project's CA: the API this forwards to is ours.
    return ssl.create_default_context(cafile=str(settings.CA_CERT_FILE))


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or settings_or_exit("dashtam-callback")
    forward_url = settings.API_BASE_URL.rstrip("/") + FORWARD_PATH
    console = settings.API_BASE_URL.rstrip("/") + "/app/connections"

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "healthy",
                "service": "callback",
                "version": __version__,
                "environment": settings.ENVIRONMENT,
            }
        )

    async def oauth_callback(request: Request) -> HTMLResponse:
        params = request.query_params
        state = params.get("state", "")
        if not state:
            return _page("Connection failed", "The institution's redirect carried no state.", 400)
        body = {
            "state": state[:200],
            "code": params.get("code"),
            "error": params.get("error"),
            "error_description": params.get("error_description"),
            "client_ip": request.client.host if request.client else None,
            "user_agent": request.headers.get("user-agent"),
        }
        body = {k: v for k, v in body.items() if v is not None}
        try:
            async with httpx.AsyncClient(verify=request.app.state.tls, timeout=30) as client:
                response = await client.post(
                    forward_url,
                    json=body,
                    headers={"X-Dashtam-Callback-Secret": settings.CALLBACK_SHARED_SECRET},
                )
        except httpx.HTTPError:
            return _page("Connection failed", "Dashtam's API could not be reached; try again.", 502)
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code == 200 and data.get("outcome") == "connected":
            return _page(
                "Connected",
                f"{data.get('provider_alias', 'Your provider')} is now connected to Dashtam.",
                200,
                console,
            )
        if response.status_code == 200 and data.get("outcome") == "denied":
            reason = data.get("error_description") or data.get("error") or "access was denied"
            return _page(
                "Not connected",
                f"{data.get('provider_alias', 'The provider')} was not connected: {reason}",
                200,
                console,
            )
        detail = data.get("detail") or "The connection could not be completed."
        status = 400 if response.status_code < 500 else 502
        return _page("Connection failed", str(detail), status)

    app = Starlette(routes=[Route("/health", health), Route("/oauth/callback", oauth_callback)])
    app.state.settings = settings
    app.state.tls = _tls(settings)
    return app
