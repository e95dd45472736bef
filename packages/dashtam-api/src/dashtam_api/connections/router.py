import hmac
import uuid
from typing import Annotated

from fastapi import Body, Header, Query, Request, Response

from dashtam_api.connections import api_tokens, consent, link, service, setup_tokens
from dashtam_api.connections.schemas import (
    ApiTokenAuthorization,
    AuthorizationCreate,
    AuthorizationStart,
    AuthorizationStatus,
    BankList,
    CallbackForward,
    CallbackOutcome,
    ConsentCreate,
    LinkCreate,
    LinkExchange,
    LinkStart,
    SetupTokenAuthorization,
)
from dashtam_api.deps import (
    ContextDep,
    CurrentUserDep,
    DatabaseDep,
    RedisDep,
    SessionDep,
    SettingsDep,
    VaultDep,
    client_ip,
    where,
)
from dashtam_api.errors import Conflict, Forbidden
from dashtam_api.openapi import problems
from dashtam_api.routing import api_router
from dashtam_api.sources.protocol import Kind

router = api_router(prefix="/api/v1", tags=["connections"])


@router.post(
    "/providers/{provider_id}/authorization",
    status_code=201,
    response_model=AuthorizationStart | AuthorizationStatus | LinkStart,
    responses=problems(409, 422, 502, 504),
    name="start",
)
async def start_authorization(
    provider_id: uuid.UUID,
    request: Request,
    user: CurrentUserDep,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    ctx: ContextDep,
    body: Annotated[AuthorizationCreate | ConsentCreate | LinkCreate | None, Body()] = None,
) -> dict:
    """Connect the provider, as its kind wants. ``oauth2``: no body; the answer is the
    authorization URL to send the person to (the connection turns active when the institution
    redirects back). ``simplefin``: ``{"setup_token": "..."}`` from the person's SimpleFIN
    Bridge (or another SimpleFIN server); Dashtam claims it once and the answer is the
    connection, active (as GET .../authorization shows it). A setup token already claimed is a
    409 (it may be compromised); one that is not a setup token, or whose URL may not be reached
    from here, a 422. ``api_token``: ``{"token": "...", "query_id": "..."}`` made at the
    institution (IBKR's Flex token and Activity Flex query id), tried once there and sealed; the
    answer is the connection, active (a token the institution refuses is a 409). ``consent``
    (Enable Banking): ``{"bank": {"name", "country"}}``; the answer is the bank's consent page
    (a bank not listed there is a 409). ``link`` (Plaid): optionally ``{"products":
    ["transactions", "investments"]}``; the answer is a link token and the page that opens
    Plaid Link with it (in update mode when the connection needs the person to sign in
    again or Plaid said its consent ends; ``{"mode": "update"}`` asks for it, a 409 when there
    is no item, ``{"mode": "new"}`` for a new item); its public token goes to
    .../authorization/exchange."""
    kind = await service.kind_of(
        session=session, registry=ctx.registry, user=user, provider_id=provider_id
    )
    if kind is Kind.CONSENT or isinstance(body, ConsentCreate):
        return await _start_consent(
            ctx, session, redis, user, provider_id, kind, body, where(request)
        )
    if kind is Kind.LINK and not isinstance(body, AuthorizationCreate):
        return await link.start(
            ctx=ctx, session=session, redis=redis, user=user, provider_id=provider_id,
            products=body.products if body is not None else None,
            mode=body.mode if body is not None else None,
        )  # fmt: skip
    if isinstance(body, LinkCreate):
        raise Conflict(
            f"A provider of kind {kind.value} is not connected with Link products.",
            kind=kind.value,
        )
    setup_token = body.setup_token if isinstance(body, SetupTokenAuthorization) else None
    if kind is Kind.API_TOKEN:
        return await api_tokens.connect(
            ctx=ctx,
            session=session,
            user=user,
            provider_id=provider_id,
            body=body if isinstance(body, ApiTokenAuthorization) else None,
            where=where(request),
        )
    if kind is Kind.SIMPLEFIN:
        return await setup_tokens.connect(
            ctx=ctx,
            session=session,
            user=user,
            provider_id=provider_id,
            setup_token=setup_token,
            where=where(request),
        )
    if body is not None or kind is not Kind.OAUTH2:
        setup_tokens.refuse_body(kind)
    return await service.start(
        session=session,
        redis=redis,
        settings=settings,
        registry=ctx.registry,
        tls=ctx.tls,
        user=user,
        provider_id=provider_id,
    )


async def _start_consent(ctx, session, redis, user, provider_id, kind, body, asked) -> dict:
    """``consent`` (Enable Banking): ``{"bank": {"name", "country"}}``, a bank GET .../banks
    lists; the answer is the URL of the bank's consent page (the connection turns active when
    the bank redirects back)."""
    if kind is not Kind.CONSENT:
        raise Conflict(
            f"A provider of kind {kind.value} is not connected by picking a bank.",
            kind=kind.value,
        )
    if not isinstance(body, ConsentCreate):
        raise Conflict(
            'An Enable Banking provider is connected by picking a bank: send {"bank": {"name": '
            '"...", "country": "FI"}} (GET .../banks?country=FI lists them).',
            kind=kind.value,
        )
    return await consent.start(
        ctx=ctx,
        session=session,
        redis=redis,
        user=user,
        provider_id=provider_id,
        name=body.bank.name,
        country=body.bank.country,
        where=asked,
    )


@router.get(
    "/providers/{provider_id}/banks",
    response_model=BankList,
    responses=problems(409, 502, 504),
    name="banks",
)
async def list_banks(
    provider_id: uuid.UUID,
    user: CurrentUserDep,
    session: SessionDep,
    ctx: ContextDep,
    country: Annotated[
        str | None, Query(pattern=r"^[A-Z]{2}$", description="ISO 3166 code; none: all.")
    ] = None,
) -> dict:
    """The banks a provider of kind ``consent`` (Enable Banking) can connect (of one
    country), each with the longest consent it gives (seconds); none for another kind."""
    return await consent.banks(
        ctx=ctx, session=session, user=user, provider_id=provider_id, country=country
    )


@router.post(
    "/providers/{provider_id}/authorization/exchange",
    response_model=AuthorizationStatus,
    responses=problems(409, 422, 502, 504),
    name="exchange",
)
async def exchange_public_token(
    provider_id: uuid.UUID,
    body: LinkExchange,
    request: Request,
    user: CurrentUserDep,
    session: SessionDep,
    redis: RedisDep,
    ctx: ContextDep,
) -> dict:
    """Finish a Link (kind ``link``, Plaid): the public token Link's onSuccess gave is
    exchanged for the item's access token, sealed; the connection is active. 409 when no Link
    was started for this provider (or it is of another kind)."""
    kind = await service.kind_of(
        session=session, registry=ctx.registry, user=user, provider_id=provider_id
    )
    if kind is not Kind.LINK:
        raise Conflict(f"A provider of kind {kind.value} is not connected with Link.")
    return await link.exchange(
        ctx=ctx, session=session, redis=redis, user=user, provider_id=provider_id,
        public_token=body.public_token, where=where(request),
    )  # fmt: skip


@router.get(
    "/providers/{provider_id}/authorization", response_model=AuthorizationStatus, name="status"
)
async def authorization_status(
    provider_id: uuid.UUID, user: CurrentUserDep, session: SessionDep, settings: SettingsDep
) -> dict:
    return await service.status(
        session=session, settings=settings, user=user, provider_id=provider_id
    )


@router.post(
    "/providers/{provider_id}/authorization/refresh",
    response_model=AuthorizationStatus,
    responses=problems(409, 502, 504),
    name="refresh",
)
async def refresh_authorization(
    provider_id: uuid.UUID, user: CurrentUserDep, session: SessionDep, ctx: ContextDep
) -> dict:
    """Refresh the connection's tokens now; answers as GET .../authorization does."""
    return await service.refresh_now(ctx=ctx, session=session, user=user, provider_id=provider_id)


@router.delete(
    "/providers/{provider_id}/authorization",
    status_code=204,
    responses=problems(409),
    name="revoke",
)
async def revoke_authorization(
    provider_id: uuid.UUID,
    request: Request,
    user: CurrentUserDep,
    session: SessionDep,
    settings: SettingsDep,
    vault: VaultDep,
    ctx: ContextDep,
) -> Response:
    await service.revoke(
        session=session,
        settings=settings,
        registry=ctx.registry,
        vault=vault,
        tls=ctx.tls,
        user=user,
        provider_id=provider_id,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        ctx=ctx,
    )
    return Response(status_code=204)


@router.post("/oauth/callback", response_model=CallbackOutcome, include_in_schema=False)
async def oauth_callback(
    body: CallbackForward,
    request: Request,
    session: SessionDep,
    db: DatabaseDep,
    redis: RedisDep,
    settings: SettingsDep,
    vault: VaultDep,
    ctx: ContextDep,
    secret: Annotated[str | None, Header(alias="X-Dashtam-Callback-Secret")] = None,
) -> dict:
    """Called by the callback server only: it proves itself with the shared secret."""
    if not secret or not hmac.compare_digest(secret, settings.CALLBACK_SHARED_SECRET):
        raise Forbidden("Only the callback server may complete authorizations.")
    return await service.complete(
        session=session,
        db=db,
        redis=redis,
        settings=settings,
        registry=ctx.registry,
        vault=vault,
        tls=ctx.tls,
        state=body.state,
        code=body.code,
        error=body.error,
        error_description=body.error_description,
        ip=body.client_ip,
        user_agent=body.user_agent,
        ctx=ctx,
    )
