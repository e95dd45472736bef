"""The pages mailed links open: a form for a new password, a button that confirms an address
(no script; a click, because mail scanners open links), and what came of each. A link that
does not work is a 400 here (the form was not accepted), as the API's 404 says for its token."""

import html

from fastapi import Form, Request
from fastapi.responses import HTMLResponse

from dashtam_api.auth import resets, verification
from dashtam_api.deps import EndedSessionsDep, PasswordsDep, SessionDep, where
from dashtam_api.errors import ProblemError
from dashtam_api.routing import api_router
from dashtam_core.pages import page_headers

router = api_router(include_in_schema=False)
POLICY = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
STYLE = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
        f"<style>{STYLE}</style></head><body><h1>{title}</h1>{body}</body></html>",
        status_code=status,
        headers=page_headers(POLICY),
    )


def _refused(exc: ProblemError) -> HTMLResponse:
    status = 400 if exc.status == 404 else exc.status  # the form, not a page, was not found
    return _page("This link does not work", f"<p>{html.escape(exc.detail)}</p>", status)


@router.get("/reset-password")
async def reset_form(token: str = "") -> HTMLResponse:
    return _page(
        "Choose a new password",
        '<form method="post" action="/reset-password">'
        f'<input type="hidden" name="token" value="{html.escape(token[:100])}">'
        "<p><label>New password (12 characters or more)<br>"
        '<input type="password" name="password" minlength="12" maxlength="256" required '
        'autocomplete="new-password"></label></p>'
        "<p><button>Set the password</button></p></form>",
    )


@router.post("/reset-password")
async def reset_submit(
    request: Request,
    session: SessionDep,
    passwords: PasswordsDep,
    ended: EndedSessionsDep,
    token: str = Form("", max_length=100),
    password: str = Form("", max_length=256),
) -> HTMLResponse:
    if len(password) < 12:
        return _page("Choose a new password", "<p>The password needs 12 characters.</p>", 400)
    try:
        await resets.complete(
            session=session,
            passwords=passwords,
            ended=ended,
            token=token,
            password=password,
            where=where(request),
        )
    except ProblemError as exc:
        return _refused(exc)
    return _page(
        "Password changed",
        "<p>Sign in with the new password. Every device that was signed in is signed out.</p>",
    )


@router.get("/verify-email")
async def verify_form(token: str = "") -> HTMLResponse:
    return _page(
        "Confirm your address",
        '<form method="post" action="/verify-email">'
        f'<input type="hidden" name="token" value="{html.escape(token[:100])}">'
        "<p><button>Confirm my address</button></p></form>",
    )


@router.post("/verify-email")
async def verify_submit(
    request: Request, session: SessionDep, token: str = Form("", max_length=100)
) -> HTMLResponse:
    try:
        user = await verification.verify(session=session, token=token, where=where(request))
    except ProblemError as exc:
        return _refused(exc)
    return _page("Address confirmed", f"<p>{html.escape(user.email)} is yours. Thank you.</p>")
