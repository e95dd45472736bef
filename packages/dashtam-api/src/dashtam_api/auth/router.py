import uuid
from typing import Annotated

from fastapi import Request, Response

from dashtam_api.auth import resets, service, sessions, totp, verification
from dashtam_api.auth.schemas import (
    LoginRequest,
    RecoveryCodes,
    RefreshRequest,
    RegisterRequest,
    ResetAsk,
    ResetAsked,
    ResetComplete,
    SecondFactorChallenge,
    SecondFactorLogin,
    SecurityEventPage,
    SecurityEventQuery,
    SessionList,
    SessionsEnded,
    TokenPair,
    TotpConfirm,
    TotpDisable,
    TotpEnrollment,
    UpdateMeRequest,
    UserOut,
    VerifyEmail,
)
from dashtam_api.deps import (
    ContextDep,
    CurrentSessionDep,
    CurrentUserDep,
    EndedSessionsDep,
    PasswordsDep,
    RedisDep,
    SessionDep,
    SettingsDep,
    SignInSessionDep,
    VaultDep,
    client_ip,
    where,
)
from dashtam_api.openapi import problems
from dashtam_api.query_strings import QueryModel, QueryRoute
from dashtam_api.routing import api_router
from dashtam_api.unit_of_work import after_commit

router = api_router(prefix="/api/v1/auth", tags=["auth"], route_class=QueryRoute)
SecurityEventQueryDep = Annotated[SecurityEventQuery, QueryModel(SecurityEventQuery)]


@router.post(
    "/register",
    status_code=201,
    response_model=UserOut,
    responses=problems(403, 409),
    name="register",
)
async def register(
    body: RegisterRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
    ctx: ContextDep,
) -> UserOut:
    """Create an account, as REGISTRATION allows: open, with an invitation, or not at all."""
    user = await service.register(
        session=session,
        settings=settings,
        passwords=passwords,
        email=body.email,
        password=body.password,
        name=body.name,
        invitation=body.invitation,
        where=where(request),
    )
    after_commit(session, lambda: verification.schedule(ctx=ctx, user_id=user.id))
    return UserOut.of(user)


@router.post(
    "/login",
    response_model=TokenPair | SecondFactorChallenge,
    responses=problems(401, 429),
    name="login",
)
async def login(
    body: LoginRequest,
    request: Request,
    session: SignInSessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
) -> TokenPair | dict:
    return await service.login(
        session=session,
        redis=redis,
        settings=settings,
        passwords=passwords,
        email=body.email,
        password=body.password,
        user_agent=request.headers.get("user-agent"),
        ip=client_ip(request),
    )


@router.post(
    "/login/second-factor",
    response_model=TokenPair,
    responses=problems(401, 429),
    name="login_second_factor",
)
async def login_second_factor(
    body: SecondFactorLogin,
    request: Request,
    session: SignInSessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    vault: VaultDep,
) -> TokenPair:
    """Complete a sign-in the password began: a TOTP code (good once) or a recovery code."""
    return await service.login_second_factor(
        session=session,
        redis=redis,
        settings=settings,
        vault=vault,
        challenge=body.challenge,
        code=body.code,
        recovery_code=body.recovery_code,
        user_agent=request.headers.get("user-agent"),
        ip=client_ip(request),
    )


@router.post(
    "/totp",
    status_code=201,
    response_model=TotpEnrollment,
    responses=problems(409),
    name="totp_enroll",
)
async def totp_enroll(user: CurrentUserDep, session: SessionDep, vault: VaultDep) -> dict:
    """A new TOTP secret and its otpauth:// URI (shown once); it counts once confirmed."""
    enrolled = await totp.enroll(session=session, vault=vault, user=user)
    return enrolled


@router.post(
    "/totp/confirm", response_model=RecoveryCodes, responses=problems(403, 409), name="totp_confirm"
)
async def totp_confirm(
    body: TotpConfirm, request: Request, user: CurrentUserDep, session: SessionDep, vault: VaultDep
) -> dict:
    """Turn the second factor on with a code from the new secret; answers ten recovery codes."""
    codes = await totp.confirm(
        session=session, vault=vault, user=user, code=body.code, where=where(request)
    )
    return codes


@router.post("/totp/disable", status_code=204, responses=problems(403, 409), name="totp_disable")
async def totp_disable(
    body: TotpDisable, request: Request, user: CurrentUserDep, session: SessionDep, vault: VaultDep
) -> Response:
    """Turn the second factor off, with a current code or a recovery code."""
    await totp.disable(
        session=session,
        vault=vault,
        user=user,
        code=body.code,
        recovery_code=body.recovery_code,
        where=where(request),
    )
    return Response(status_code=204)


@router.post("/refresh", response_model=TokenPair, responses=problems(401), name="refresh")
async def refresh(
    body: RefreshRequest,
    request: Request,
    session: SignInSessionDep,
    settings: SettingsDep,
    ended: EndedSessionsDep,
) -> TokenPair:
    # A detected reuse revokes the family before refusing: the sign-in session keeps that.
    return await service.refresh(
        session=session,
        settings=settings,
        ended=ended,
        token=body.refresh_token,
        user_agent=request.headers.get("user-agent"),
        ip=client_ip(request),
    )


@router.post("/logout", status_code=204, name="logout")
async def logout(
    body: RefreshRequest,
    request: Request,
    user: CurrentUserDep,
    session: SessionDep,
    ended: EndedSessionsDep,
) -> Response:
    await service.logout(
        session=session, ended=ended, user=user, token=body.refresh_token, where=where(request)
    )
    return Response(status_code=204)


@router.get("/me", response_model=UserOut, name="me")
async def me(user: CurrentUserDep) -> UserOut:
    return UserOut.of(user)


@router.patch("/me", response_model=UserOut, responses=problems(403), name="update_me")
async def update_me(
    body: UpdateMeRequest,
    request: Request,
    user: CurrentUserDep,
    current: CurrentSessionDep,
    session: SessionDep,
    passwords: PasswordsDep,
    ended: EndedSessionsDep,
) -> UserOut:
    """Change the name or the password; a new password ends every other session."""
    user = await service.update_me(
        session=session,
        passwords=passwords,
        ended=ended,
        user=user,
        current=current,
        name=body.name,
        password=body.password,
        current_password=body.current_password,
        where=where(request),
    )
    return UserOut.of(user)


@router.get("/sessions", response_model=SessionList, name="list_sessions")
async def list_sessions(
    user: CurrentUserDep, current: CurrentSessionDep, session: SessionDep
) -> dict:
    """Your open sessions (sign-ins), the one this request is made with marked `current`."""
    return await sessions.listed(session=session, user=user, current=current)


@router.delete(
    "/sessions/{session_id}", status_code=204, responses=problems(404), name="end_session"
)
async def end_session(
    session_id: uuid.UUID,
    request: Request,
    user: CurrentUserDep,
    session: SessionDep,
    ended: EndedSessionsDep,
) -> Response:
    """End one session: its refresh token stops now, its access token within seconds."""
    await sessions.end_one(
        session=session, ended=ended, user=user, session_id=session_id, where=where(request)
    )
    return Response(status_code=204)


@router.delete("/sessions", response_model=SessionsEnded, name="end_other_sessions")
async def end_other_sessions(
    request: Request,
    user: CurrentUserDep,
    current: CurrentSessionDep,
    session: SessionDep,
    ended: EndedSessionsDep,
) -> dict:
    """Sign out everywhere else: every session but this one ends."""
    count = await sessions.end_others(
        session=session, ended=ended, user=user, current=current, where=where(request)
    )
    return {"ended": count}


@router.get(
    "/security-events",
    response_model=SecurityEventPage,
    responses=problems(400),
    name="security_events",
)
async def security_events(
    user: CurrentUserDep, session: SessionDep, query: SecurityEventQueryDep
) -> dict:
    """Your account's security audit, newest first: sign-ins and refusals (with where they came
    from), sessions ended, password and second-factor changes."""
    return await sessions.security_events(
        session=session, user=user, limit=query.limit, cursor=query.cursor
    )


@router.post(
    "/password-reset",
    status_code=202,
    response_model=ResetAsked,
    responses=problems(409),
    name="password_reset",
)
async def password_reset(body: ResetAsk, request: Request, ctx: ContextDep) -> dict:
    """Mail a single-use link to reset the password. The same answer, as fast, whether the
    address has an account or not."""
    resets.ask(ctx=ctx, email=body.email, where=where(request))
    return {"detail": resets.ASKED}


@router.post(
    "/password-reset/complete",
    status_code=204,
    responses=problems(404),
    name="password_reset_complete",
)
async def password_reset_complete(
    body: ResetComplete,
    request: Request,
    session: SessionDep,
    passwords: PasswordsDep,
    ended: EndedSessionsDep,
) -> Response:
    """Set a new password with the link's token; every session of the account ends. A token
    that opens no link (used, expired, never sent) is a 404."""
    await resets.complete(
        session=session,
        passwords=passwords,
        ended=ended,
        token=body.token,
        password=body.password,
        where=where(request),
    )
    return Response(status_code=204)


@router.post(
    "/verify-email",
    status_code=204,
    responses=problems(404),
    name="verify_email",
)
async def verify_email(body: VerifyEmail, request: Request, session: SessionDep) -> Response:
    """Prove the address with the token of the link mailed to it (404: no open link has it)."""
    await verification.verify(session=session, token=body.token, where=where(request))
    return Response(status_code=204)


@router.post(
    "/verify-email/resend",
    status_code=202,
    response_model=ResetAsked,
    responses=problems(409),
    name="verify_email_resend",
)
async def verify_email_resend(request: Request, user: CurrentUserDep, ctx: ContextDep) -> dict:
    """Mail a new link to prove your address."""
    verification.resend(ctx=ctx, user=user)
    return {"detail": f"A link to confirm {user.email} is on its way."}
