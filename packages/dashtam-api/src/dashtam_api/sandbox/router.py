"""A built-in OAuth2 institution for development and tests (mounted only there, at /sandbox).

A real authorization server: an approve/deny page, authorization codes bound to the redirect URI
and the PKCE challenge, a token endpoint with client authentication (HTTP Basic or form),
expiring access tokens, rotating refresh tokens, revocation, a small accounts/positions API,
and control endpoints that make the next calls fail, answer a page instead of JSON, or answer
late, for tests of the failure paths.
"""

import asyncio
import base64
import hmac
import secrets
from datetime import date
from html import escape
from typing import Annotated, Literal
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import Form, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from dashtam_api.deps import RedisDep, SettingsDep
from dashtam_api.providers.registry import redirect_uri
from dashtam_api.routing import api_router
from dashtam_api.sandbox import activity, data, store
from dashtam_core.config import Settings
from dashtam_core.pages import page_headers

router = api_router(prefix="/sandbox", tags=["sandbox"], include_in_schema=False)

SCOPES = {"accounts", "positions"}


def _oauth_error(status: int, error: str, description: str, headers=None) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _page(settings: Settings, title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title>"
        "</head><body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
        f"<main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    # The approval form posts here and is redirected to the callback server: browsers hold a
    # form's redirects to form-action too.
    callback = urlsplit(redirect_uri(settings))
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"form-action 'self' {callback.scheme}://{callback.netloc}"
    )
    return HTMLResponse(html, status_code=status, headers=page_headers(policy))


class AuthorizationRequest(BaseModel):
    """The parameters of an authorization request: query string on GET, form on POST."""

    client_id: str = ""
    redirect_uri: str = ""
    response_type: str = ""
    state: str = ""
    scope: str = "accounts"
    code_challenge: str = ""
    code_challenge_method: str = ""

    def problem(self, settings: Settings) -> str | None:
        """Why this request is refused without a redirect (RFC 6749 4.1.2.1), or None."""
        if not hmac.compare_digest(self.client_id, settings.SANDBOX_CLIENT_ID):
            return "Unknown client."
        if self.redirect_uri != redirect_uri(settings):
            return "The redirect URI is not registered for this client."
        if self.response_type != "code":
            return "Only response_type=code is supported."
        if not self.code_challenge or self.code_challenge_method != "S256":
            return "PKCE with S256 is required."
        if not set(self.scope.split()) <= SCOPES:
            return "Unknown scope requested."
        return None


class AuthorizationDecision(AuthorizationRequest):
    decision: Literal["approve", "deny"]


def _invalid(settings: Settings, problem: str) -> HTMLResponse:
    return _page(settings, "Sandbox: invalid request", f"<p>{escape(problem)}</p>", 400)


def _back(redirect: str, **params: str) -> RedirectResponse:
    return RedirectResponse(f"{redirect}?{urlencode(params)}", status_code=303)


@router.get("/oauth/authorize")
async def authorize_page(
    request: Request,
    settings: SettingsDep,
    redis: RedisDep,
    query: Annotated[AuthorizationRequest, Query()],
):
    problem = query.problem(settings)
    if problem:
        return _invalid(settings, problem)
    failure = await store.take_failure(redis, "authorize")
    if failure:
        return _back(
            query.redirect_uri,
            error=failure.get("error", "server_error"),
            error_description="Injected failure",
            state=query.state,
        )
    hidden = "".join(
        f"<input type='hidden' name='{escape(k)}' value='{escape(v, quote=True)}'>"
        for k, v in query.model_dump().items()
    )
    body = (
        f"<p><b>Dashtam</b> asks to read your {escape(', '.join(query.scope.split()))}.</p>"
        f"<form method='post' action='{escape(str(request.url.path))}'>{hidden}"
        "<button name='decision' value='approve'>Approve</button> "
        "<button name='decision' value='deny'>Deny</button></form>"
    )
    return _page(settings, "Dashtam Sandbox Bank", body)


@router.post("/oauth/authorize")
async def authorize_decision(
    settings: SettingsDep,
    redis: RedisDep,
    form: Annotated[AuthorizationDecision, Form()],
):
    problem = form.problem(settings)
    if problem:
        return _invalid(settings, problem)
    if form.decision == "deny":
        return _back(
            form.redirect_uri,
            error="access_denied",
            error_description="The account holder denied access.",
            state=form.state,
        )
    code = await store.new_code(
        redis,
        {
            "client_id": form.client_id,
            "redirect_uri": form.redirect_uri,
            "code_challenge": form.code_challenge,
            "scope": form.scope,
            # Each approval is a new account holder, with their own money and counters.
            "subject": secrets.token_hex(8),
        },
    )
    return _back(form.redirect_uri, code=code, state=form.state)


def _client_credentials(
    settings: Settings, authorization: str | None, form_id: str | None, form_secret: str | None
) -> bool:
    client_id, secret = form_id, form_secret
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:]).decode()
        except ValueError:
            return False
        client_id, _, secret = decoded.partition(":")
    return (
        bool(client_id and secret)
        and hmac.compare_digest(client_id, settings.SANDBOX_CLIENT_ID)
        and hmac.compare_digest(secret, settings.SANDBOX_CLIENT_SECRET)
    )


@router.post("/oauth/token")
async def token(
    settings: SettingsDep,
    redis: RedisDep,
    grant_type: Annotated[str, Form()] = "",
    code: Annotated[str, Form()] = "",
    redirect_uri: Annotated[str, Form()] = "",
    code_verifier: Annotated[str, Form()] = "",
    refresh_token: Annotated[str, Form()] = "",
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    authorization: Annotated[str | None, Header()] = None,
):
    if settings.SANDBOX_TOKEN_LATENCY_SECONDS:
        await asyncio.sleep(settings.SANDBOX_TOKEN_LATENCY_SECONDS)
    await store.take_delay(redis, "token")
    failure = await store.take_failure(redis, "token")
    if failure:
        if failure.get("malformed"):
            return _malformed()
        status = int(failure.get("status", 500))
        if status >= 500:
            return JSONResponse({"message": "sandbox is down"}, status_code=status)
        return _oauth_error(status, failure.get("error", "invalid_grant"), "Injected failure")
    if not _client_credentials(settings, authorization, client_id, client_secret):
        return _oauth_error(
            401,
            "invalid_client",
            "Client authentication failed.",
            {"WWW-Authenticate": 'Basic realm="sandbox"'},
        )
    if grant_type == "authorization_code":
        grant = await store.take_code(redis, code)
        if grant is None:
            return _oauth_error(400, "invalid_grant", "Unknown, expired or used code.")
        if grant["redirect_uri"] != redirect_uri:
            return _oauth_error(400, "invalid_grant", "redirect_uri does not match.")
        if (
            not code_verifier
            or create_s256_code_challenge(code_verifier) != grant["code_challenge"]
        ):
            return _oauth_error(400, "invalid_grant", "PKCE verification failed.")
        tokens = await store.issue_tokens(
            redis,
            client_id=settings.SANDBOX_CLIENT_ID,
            scope=grant["scope"],
            subject=grant["subject"],
        )
    elif grant_type == "refresh_token":
        grant = await store.take_refresh(redis, refresh_token)
        if grant is None:
            return _oauth_error(400, "invalid_grant", "Unknown or already used refresh token.")
        tokens = await store.issue_tokens(
            redis,
            client_id=settings.SANDBOX_CLIENT_ID,
            scope=grant["scope"],
            subject=grant.get("subject", ""),
        )
    else:
        return _oauth_error(
            400, "unsupported_grant_type", "Use authorization_code or refresh_token."
        )
    return JSONResponse(tokens, headers={"Cache-Control": "no-store"})


@router.post("/oauth/revoke")
async def revoke(
    settings: SettingsDep,
    redis: RedisDep,
    token: Annotated[str, Form()] = "",
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    authorization: Annotated[str | None, Header()] = None,
):
    await store.take_delay(redis, "revoke")
    failure = await store.take_failure(redis, "revoke")
    if failure:
        if failure.get("malformed"):
            return _malformed()
        return JSONResponse(
            {"message": "sandbox is down"}, status_code=int(failure.get("status", 503))
        )
    if not _client_credentials(settings, authorization, client_id, client_secret):
        return _oauth_error(401, "invalid_client", "Client authentication failed.")
    await store.revoke(redis, token)  # RFC 7009: 200 whether or not the token was known
    return JSONResponse({})


async def _bearer_grant(redis, authorization: str | None) -> dict | None:
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    return await store.access_grant(redis, authorization[7:])


def _invalid_token() -> JSONResponse:
    return _oauth_error(
        401,
        "invalid_token",
        "A valid access token is required.",
        {"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _malformed() -> HTMLResponse:
    """What a proxy in front of an institution answers while it is being worked on: 200, and a
    page instead of JSON."""
    return HTMLResponse("<html><body><h1>Down for maintenance</h1></body></html>")


async def _api_failure(redis) -> Response | None:
    await store.take_delay(redis, "api")
    failure = await store.take_failure(redis, "api")
    if failure is None:
        return None
    if failure.get("malformed"):
        return _malformed()
    status = int(failure.get("status", 500))
    if status == 401:
        return _invalid_token()
    return JSONResponse({"message": "sandbox API failure"}, status_code=status)


async def _api_grant(redis, authorization: str | None) -> dict | Response:
    """The account holder's grant behind the bearer token, or the answer refusing the call (an
    injected failure first: a real API's outage comes before any token check)."""
    failed = await _api_failure(redis)
    if failed:
        return failed
    grant = await _bearer_grant(redis, authorization)
    return _invalid_token() if grant is None else grant


@router.get("/api/accounts")
async def accounts(redis: RedisDep, authorization: Annotated[str | None, Header()] = None):
    """The account holder's accounts with balances; each call is the next step of their data."""
    grant = await _api_grant(redis, authorization)
    if isinstance(grant, Response):
        return grant
    step = await store.count_sync(redis, grant.get("subject", ""))
    return data.as_strings({"accounts": data.accounts(step), "step": step})


@router.get("/api/accounts/{account_id}/positions")
async def positions(
    account_id: str, redis: RedisDep, authorization: Annotated[str | None, Header()] = None
):
    grant = await _api_grant(redis, authorization)
    if isinstance(grant, Response):
        return grant
    if "positions" not in grant["scope"].split():
        return _oauth_error(403, "insufficient_scope", "The positions scope is required.")
    step = await store.current_sync(redis, grant.get("subject", ""))
    held = data.positions(account_id, step)
    if held is None:
        return _oauth_error(404, "not_found", "No such account.")
    return data.as_strings({"account_id": account_id, "positions": held, "step": step})


TRANSACTIONS_PAGE = 100


@router.get("/api/accounts/{account_id}/transactions")
async def transactions(
    account_id: str,
    redis: RedisDep,
    start: Annotated[date, Query()],
    end: Annotated[date, Query()],
    page: Annotated[int, Query(ge=1)] = 1,
    authorization: Annotated[str | None, Header()] = None,
):
    """The account's transactions dated start..end (the posted day, or the day made while
    pending), oldest first, TRANSACTIONS_PAGE at a time (``next_page`` until the last)."""
    grant = await _api_grant(redis, authorization)
    if isinstance(grant, Response):
        return grant
    if account_id not in data.ACCOUNT_IDS:
        return _oauth_error(404, "not_found", "No such account.")
    subject = grant.get("subject", "")
    step = await store.current_sync(redis, subject)
    day_of = await store.step_days(redis, subject)
    listed = [
        t
        for t in activity.listing(account_id, step, day_of)
        if start <= date.fromisoformat((t["posted"] or t["transacted_at"])[:10]) <= end
    ]
    first = (page - 1) * TRANSACTIONS_PAGE
    more = len(listed) > first + TRANSACTIONS_PAGE
    return data.as_strings(
        {
            "account_id": account_id,
            "transactions": listed[first : first + TRANSACTIONS_PAGE],
            "next_page": page + 1 if more else None,
            "step": step,
        }
    )


def _control_refused(settings: Settings, authorization: str | None) -> JSONResponse | None:
    """The control endpoints answer only the sandbox's own client (HTTP Basic)."""
    if _client_credentials(settings, authorization, None, None):
        return None
    return _oauth_error(401, "invalid_client", "Client authentication failed.")


class Failure(BaseModel):
    endpoint: Literal["authorize", "token", "revoke", "api"]
    status: int = Field(default=500, ge=400, le=599)
    error: str = Field(default="server_error", max_length=50)
    # How many calls in a row (0: cancel what is left of an earlier one).
    times: int = Field(default=1, ge=0, le=100_000)
    # 200 with an HTML page instead of JSON (status and error are then unused).
    malformed: bool = False


@router.post("/_control/fail", status_code=204)
async def inject_failure(
    body: Failure,
    settings: SettingsDep,
    redis: RedisDep,
    authorization: Annotated[str | None, Header()] = None,
):
    """Make the next `times` calls of an endpoint fail (client credentials required)."""
    if refused := _control_refused(settings, authorization):
        return refused
    await store.set_failure(redis, body.endpoint, body.model_dump())
    return None


class Delay(BaseModel):
    endpoint: Literal["token", "revoke", "api"]
    seconds: float = Field(gt=0, le=30)
    # How many calls in a row (0: cancel what is left of an earlier one).
    times: int = Field(default=1, ge=0, le=100_000)


@router.post("/_control/delay", status_code=204)
async def inject_delay(
    body: Delay,
    settings: SettingsDep,
    redis: RedisDep,
    authorization: Annotated[str | None, Header()] = None,
):
    """Make the next `times` calls of an endpoint answer `seconds` late (a slow institution)."""
    if refused := _control_refused(settings, authorization):
        return refused
    await store.set_delay(redis, body.endpoint, body.model_dump())
    return None


@router.get("/_control/subjects/{subject}")
async def subject_stats(
    subject: str,
    settings: SettingsDep,
    redis: RedisDep,
    authorization: Annotated[str | None, Header()] = None,
):
    """How often the sandbox saw one account holder: refreshes, reused refresh tokens, syncs."""
    if refused := _control_refused(settings, authorization):
        return refused
    return await store.subject_stats(redis, subject[:100])
