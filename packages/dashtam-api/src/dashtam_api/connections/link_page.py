"""The page that opens Plaid Link (the ``link_url`` of POST .../authorization for kind
``link``), and where it hands the public token back. The page's address carries a one-time
token (Valkey, LINK_SECONDS) bound to the person and the provider that started the Link: the
browser needs no other credential, and the token works once.

Plaid's one script comes from cdn.plaid.com (unbundled, unversioned, as Plaid requires), Link
runs in a frame of its own from there and talks to Plaid's API of the environment
(PLAID_ENV's host): the page's policy is the one Plaid publishes for Link in its nonce form
(plaid.com/docs/link/web, "CSP directives": ``default-src``, ``script-src`` and ``frame-src``
cdn.plaid.com, ``connect-src`` the environment's host, styles by the page's nonce), plus this
API ('self') for the page's own script and the exchange it posts. The nonce is new for every
answer; no 'unsafe-inline' for scripts (for style attributes only, which cannot carry a
nonce). Offline (development and testing without a real team's keys) the look-alike's
stand-in (``/sandbox/plaid/link-initialize.js``, the same Plaid.create/open/onSuccess
contract) is loaded from this API instead and nothing comes from elsewhere. The page's own
script is a file of this package (no inline script)."""

import html
import json
import secrets
import uuid
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from dashtam_api.auth import queries as auth_queries
from dashtam_api.connections import link
from dashtam_api.connections.schemas import AuthorizationStatus, LinkExchange
from dashtam_api.deps import ContextDep, RedisDep, SessionDep, where
from dashtam_api.errors import NotFound
from dashtam_api.routing import api_router
from dashtam_core.pages import page_headers

router = api_router(prefix="/api/v1/link", include_in_schema=False)
SCRIPT = (Path(__file__).parent / "link_static" / "link.js").read_bytes()
PLAID_SCRIPT = "https://cdn.plaid.com/link/v2/stable/link-initialize.js"
STYLE = "body{font-family:system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem}"


def _plaid_script(ctx) -> str:
    spec = ctx.registry.get("plaid")
    if spec is not None and spec.api_base_url.endswith("/sandbox/plaid"):
        return "/sandbox/plaid/link-initialize.js"
    return PLAID_SCRIPT


def _policy(script: str, nonce: str, plaid_env: str) -> str:
    styles = (
        f"style-src 'nonce-{nonce}'; style-src-elem 'nonce-{nonce}'; style-src-attr 'unsafe-inline'"
    )
    if script.startswith("https://"):
        return (
            f"default-src https://cdn.plaid.com/; script-src 'self' 'nonce-{nonce}' {script}; "
            f"{styles}; frame-src https://cdn.plaid.com/; "
            f"connect-src 'self' https://{plaid_env}.plaid.com/"
        )
    return f"default-src 'none'; script-src 'self' 'nonce-{nonce}'; {styles}; connect-src 'self'"


@router.get("/link.js")
async def link_script() -> Response:
    return Response(
        SCRIPT,
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/{page_token}")
async def link_page(page_token: str, redis: RedisDep, ctx: ContextDep) -> HTMLResponse:
    pending = await redis.get(link.page_key(page_token))
    script = _plaid_script(ctx)
    if pending is None:
        body = "<p>This link has expired or was used: start the connection again.</p>"
        return _page(ctx, "This Link does not work", body, script, status=400)
    token = json.loads(pending)["link_token"]
    body = (
        f'<div id="link" data-token="{html.escape(token)}" '
        f'data-exchange="/api/v1/link/{html.escape(page_token)}/exchange"></div>'
        "<p>Dashtam reads your accounts through Plaid. Plaid opens in this page; sign in to "
        "your bank there.</p>"
        '<p><button id="open" disabled>Connect your bank</button></p>'
        '<p id="said" role="status"></p>'
        f'<script src="{script}"></script><script src="/api/v1/link/link.js"></script>'
    )
    return _page(ctx, "Connect with Plaid", body, script)


def _page(ctx, title: str, body: str, script: str, status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<style nonce="{nonce}">{STYLE}</style></head><body><main><h1>{title}</h1>{body}'
        "</main></body></html>",
        status_code=status,
        headers=page_headers(_policy(script, nonce, ctx.settings.PLAID_ENV)),
    )


@router.post("/{page_token}/exchange", response_model=AuthorizationStatus)
async def link_page_exchange(
    page_token: str,
    body: LinkExchange,
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    ctx: ContextDep,
) -> dict:
    """The public token of the page's Link, exchanged for the person who started it (once)."""
    pending = await redis.getdel(link.page_key(page_token))
    if pending is None:
        raise NotFound("This Link has expired or was used: start the connection again.")
    started = json.loads(pending)
    user = await auth_queries.user_by_id(session, user_id=uuid.UUID(started["user_id"]))
    if user is None or not user.is_active:
        raise NotFound("This Link has expired or was used: start the connection again.")
    return await link.exchange(
        ctx=ctx, session=session, redis=redis, user=user,
        provider_id=uuid.UUID(started["provider_id"]),
        public_token=body.public_token, where=where(request),
    )  # fmt: skip
