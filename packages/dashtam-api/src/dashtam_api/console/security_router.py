"""The console's security pages (issue 37): sessions (end one, end all others), the account's
security events, changing the password, the TOTP second factor (its QR code drawn here as SVG,
the recovery codes shown once), and administrators' invitations. Every action is the API's own
service: the same audit, the same rules (a new password ends every other session)."""

import uuid
from typing import Annotated

import segno
from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from pydantic import ValidationError

from dashtam_api.auth import invitations, sessions, totp
from dashtam_api.auth import service as auth
from dashtam_api.auth.schemas import UpdateMeRequest
from dashtam_api.console import pages
from dashtam_api.deps import (
    ContextDep,
    EndedSessionsDep,
    PasswordsDep,
    SessionDep,
    where,
)
from dashtam_api.errors import ProblemError
from dashtam_api.routing import api_router
from dashtam_api.unit_of_work import discard

router = api_router(prefix="/app", include_in_schema=False)

DONE = {
    "ended": "That session has ended.",
    "others": "Every other session has ended.",
    "password": "Password changed; every other session has ended.",
    "off": "The second factor is off.",
    "revoked": "The invitation no longer works.",
}


def qr_svg(uri: str) -> Markup:
    """The otpauth URI as an SVG QR code (drawn here: nothing fetched, no script)."""
    svg = segno.make(uri, error="m").svg_inline(scale=4, title="QR code for your authenticator app")
    return Markup(svg)  # noqa: S704 -- segno's own SVG, of a URI it encoded


async def _security(request, session, ctx, visitor, *, status=200, **shown) -> Response:
    user = visitor.user
    return pages.page(
        "security.html",
        status=status,
        visitor=visitor,
        settings=ctx.settings,
        title="Security",
        page="security",
        sessions=(await sessions.listed(session=session, user=user, current=visitor.session_id))[
            "items"
        ],
        events=(await sessions.security_events(session=session, user=user, limit=20, cursor=None))[
            "items"
        ],
        totp_on=user.totp_enabled_at is not None,
        notice=DONE.get(request.query_params.get("done", "")),
        **{"problem": None, "enrolling": None, "recovery_codes": None} | shown,
    )


async def _refused(request, session, ctx, visitor, problem: str, status: int = 200) -> Response:
    await discard(session)
    await visitor.reread(session)
    return await _security(request, session, ctx, visitor, status=status, problem=problem)


async def _checked(request, session, ctx, ended, csrf):
    """(the visitor, None), or (None, the answer to give instead)."""

    async def expired(visitor):
        return await _security(request, session, ctx, visitor, problem=pages.EXPIRED)

    return await pages.form_visitor(request, session, ctx, ended, csrf, expired)


@router.get("/security")
async def security_page(
    request: Request, session: SessionDep, ctx: ContextDep, ended: EndedSessionsDep
) -> Response:
    visitor = await pages.visitor_of(request, session, ctx, ended)
    if visitor is None:
        return pages.to_sign_in()
    return await _security(request, session, ctx, visitor)


@router.post("/security/sessions/{session_id}/end")
async def end_session(
    session_id: str,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor, answer = await _checked(request, session, ctx, ended, csrf)
    if answer is not None:
        return answer
    try:
        await sessions.end_one(
            session=session,
            ended=ended,
            user=visitor.user,
            session_id=uuid.UUID(session_id),
            where=where(request),
        )
    except (ValueError, ProblemError):
        return await _refused(request, session, ctx, visitor, "No such open session.")
    if uuid.UUID(session_id) == visitor.session_id:
        return pages.to_sign_in()
    return RedirectResponse("/app/security?done=ended", status_code=303)


@router.post("/security/sessions/end-others")
async def end_other_sessions(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor, answer = await _checked(request, session, ctx, ended, csrf)
    if answer is not None:
        return answer
    await sessions.end_others(
        session=session,
        ended=ended,
        user=visitor.user,
        current=visitor.session_id,
        where=where(request),
    )
    return RedirectResponse("/app/security?done=others", status_code=303)


@router.post("/security/password")
async def change_password(
    request: Request,
    session: SessionDep,
    passwords: PasswordsDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    current_password: Annotated[str, Form(max_length=256)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor, answer = await _checked(request, session, ctx, ended, csrf)
    if answer is not None:
        return answer
    try:
        body = UpdateMeRequest(password=password, current_password=current_password)
        await auth.update_me(
            session=session,
            passwords=passwords,
            ended=ended,
            user=visitor.user,
            current=visitor.session_id,
            name=None,
            password=body.password,
            current_password=body.current_password,
            where=where(request),
        )
    except ValidationError:
        return await _refused(
            request, session, ctx, visitor, "The new password needs 12 characters or more."
        )
    except ProblemError as exc:
        return await _refused(request, session, ctx, visitor, exc.detail)
    return RedirectResponse("/app/security?done=password", status_code=303)


@router.post("/security/totp")
async def enroll_totp(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor, answer = await _checked(request, session, ctx, ended, csrf)
    if answer is not None:
        return answer
    try:
        enrolled = await totp.enroll(session=session, vault=ctx.vault, user=visitor.user)
    except ProblemError as exc:
        return await _refused(request, session, ctx, visitor, exc.detail)
    shown = {"secret": enrolled["secret"], "qr": qr_svg(enrolled["otpauth_uri"])}
    return await _security(request, session, ctx, visitor, enrolling=shown)


@router.post("/security/totp/confirm")
async def confirm_totp(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    code: Annotated[str, Form(max_length=12)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor, answer = await _checked(request, session, ctx, ended, csrf)
    if answer is not None:
        return answer
    try:
        codes = await totp.confirm(
            session=session,
            vault=ctx.vault,
            user=visitor.user,
            code=code.strip().replace(" ", ""),
            where=where(request),
        )
    except ProblemError as exc:
        # The secret stays enrolled: enrolling again shows a new one.
        return await _security(request, session, ctx, visitor, problem=exc.detail)
    return await _security(request, session, ctx, visitor, recovery_codes=codes["recovery_codes"])


@router.post("/security/totp/disable")
async def disable_totp(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    code: Annotated[str, Form(max_length=40)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor, answer = await _checked(request, session, ctx, ended, csrf)
    if answer is not None:
        return answer
    given = code.strip().replace(" ", "")
    is_totp = given.isdigit() and len(given) == 6
    try:
        await totp.disable(
            session=session,
            vault=ctx.vault,
            user=visitor.user,
            code=given if is_totp else None,
            recovery_code=None if is_totp else given,
            where=where(request),
        )
    except ProblemError as exc:
        return await _refused(request, session, ctx, visitor, exc.detail)
    return RedirectResponse("/app/security?done=off", status_code=303)


async def _invitations(request, session, ctx, visitor, *, status=200, **shown) -> Response:
    return pages.page(
        "invitations.html",
        status=status,
        visitor=visitor,
        settings=ctx.settings,
        title="Invitations",
        page="invitations",
        invitations=(await invitations.listed(session=session))["items"],
        registration=ctx.settings.registration,
        notice=DONE.get(request.query_params.get("done", "")),
        **{"problem": None, "made": None} | shown,
    )


def _not_admin(visitor, ctx) -> Response:
    return pages.page(
        "message.html",
        status=403,
        visitor=visitor,
        settings=ctx.settings,
        title="For administrators",
        page="invitations",
        text="Only an administrator invites people.",
    )


async def _admin_form(request, session, ctx, ended, csrf):
    """An administrator's form with its page's token: (visitor, None), or (None, the answer)."""

    async def expired(visitor):
        if not visitor.user.is_admin:  # never the invitations, whatever the form
            return _not_admin(visitor, ctx)
        return await _invitations(request, session, ctx, visitor, problem=pages.EXPIRED)

    visitor, answer = await pages.form_visitor(request, session, ctx, ended, csrf, expired)
    if visitor is not None and not visitor.user.is_admin:
        return None, _not_admin(visitor, ctx)
    return visitor, answer


@router.get("/admin/invitations")
async def invitations_page(
    request: Request, session: SessionDep, ctx: ContextDep, ended: EndedSessionsDep
) -> Response:
    visitor = await pages.visitor_of(request, session, ctx, ended)
    if visitor is None:
        return pages.to_sign_in()
    if not visitor.user.is_admin:
        return _not_admin(visitor, ctx)
    return await _invitations(request, session, ctx, visitor)


@router.post("/admin/invitations")
async def invite(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    email: Annotated[str, Form(max_length=254)] = "",
    note: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor, answer = await _admin_form(request, session, ctx, ended, csrf)
    if answer is not None:
        return answer
    made = await invitations.create(
        session=session,
        settings=ctx.settings,
        admin=visitor.user,
        email=email.strip().lower() or None,
        note=note.strip() or None,
        where=where(request),
    )
    link = f"{ctx.settings.API_BASE_URL.rstrip('/')}/app/register?invitation={made['token']}"
    return await _invitations(request, session, ctx, visitor, made={"link": link, **made})


@router.post("/admin/invitations/{invitation_id}/revoke")
async def revoke_invitation(
    invitation_id: str,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor, answer = await _admin_form(request, session, ctx, ended, csrf)
    if answer is not None:
        return answer
    try:
        await invitations.revoke(
            session=session,
            admin=visitor.user,
            invitation_id=uuid.UUID(invitation_id),
            where=where(request),
        )
    except (ValueError, ProblemError):
        return await _invitations(
            request, session, ctx, visitor, problem="No such open invitation."
        )
    return RedirectResponse("/app/admin/invitations?done=revoked", status_code=303)
