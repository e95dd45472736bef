from fastapi import APIRouter, Request, Response

from dashtam_api.auth import service
from dashtam_api.auth.schemas import (
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    UpdateMeRequest,
    UserOut,
)
from dashtam_api.deps import CurrentUserDep, PasswordsDep, RedisDep, SessionDep, SettingsDep
from dashtam_api.openapi import problems

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/register", status_code=201, response_model=UserOut, responses=problems(409))
async def register(body: RegisterRequest, session: SessionDep, passwords: PasswordsDep) -> UserOut:
    user = await service.register(
        session=session,
        passwords=passwords,
        email=body.email,
        password=body.password,
        name=body.name,
    )
    await session.commit()
    return UserOut.model_validate(user)


@router.post("/login", response_model=TokenPair, responses=problems(401, 429))
async def login(
    body: LoginRequest,
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
) -> TokenPair:
    pair = await service.login(
        session=session,
        redis=redis,
        settings=settings,
        passwords=passwords,
        email=body.email,
        password=body.password,
        user_agent=request.headers.get("user-agent"),
    )
    await session.commit()
    return pair


@router.post("/refresh", response_model=TokenPair, responses=problems(401))
async def refresh(
    body: RefreshRequest, request: Request, session: SessionDep, settings: SettingsDep
) -> TokenPair:
    try:
        pair = await service.refresh(
            session=session,
            settings=settings,
            token=body.refresh_token,
            user_agent=request.headers.get("user-agent"),
        )
    except Exception:
        # A detected reuse revokes the family before refusing: keep that revocation.
        await session.commit()
        raise
    await session.commit()
    return pair


@router.post("/logout", status_code=204)
async def logout(body: RefreshRequest, user: CurrentUserDep, session: SessionDep) -> Response:
    await service.logout(session=session, user=user, token=body.refresh_token)
    await session.commit()
    return Response(status_code=204)


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUserDep) -> UserOut:
    return UserOut.model_validate(user)


@router.patch("/me", response_model=UserOut, responses=problems(403))
async def update_me(
    body: UpdateMeRequest, user: CurrentUserDep, session: SessionDep, passwords: PasswordsDep
) -> UserOut:
    user = await service.update_me(
        session=session,
        passwords=passwords,
        user=user,
        name=body.name,
        password=body.password,
        current_password=body.current_password,
    )
    await session.commit()
    return UserOut.model_validate(user)
