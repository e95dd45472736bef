import uuid

from fastapi import Response

from dashtam_api.deps import ContextDep, CurrentUserDep, ReaderDep, SessionDep, TokenSubjectDep
from dashtam_api.openapi import problems
from dashtam_api.paging import PageDep
from dashtam_api.providers import service
from dashtam_api.providers.schemas import (
    CreateProvider,
    ProviderOut,
    ProviderPage,
    ProviderType,
    UpdateProvider,
)
from dashtam_api.query_strings import QueryRoute
from dashtam_api.responses import json_response
from dashtam_api.routing import api_router

router = api_router(prefix="/api/v1", tags=["providers"], route_class=QueryRoute)


@router.get("/provider-types", response_model=list[ProviderType], name="types")
async def provider_types(user: CurrentUserDep, ctx: ContextDep) -> list[dict]:
    return [spec.summary() for spec in ctx.registry.values()]


@router.post(
    "/providers",
    status_code=201,
    response_model=ProviderOut,
    responses=problems(404, 409),
    name="create",
)
async def create_provider(
    body: CreateProvider, user: CurrentUserDep, session: SessionDep, ctx: ContextDep
) -> dict:
    return await service.create(
        session=session,
        user=user,
        registry=ctx.registry,
        provider_key=body.provider_key,
        alias=body.alias,
    )


@router.get("/providers", response_model=ProviderPage, name="list")
async def list_providers(
    user_id: TokenSubjectDep,
    reader: ReaderDep,
    page: PageDep,
):
    return json_response(
        await service.list_page(
            reader=reader, user_id=user_id, limit=page.limit, offset=page.offset
        )
    )


@router.get("/providers/{provider_id}", response_model=ProviderOut, name="get")
async def get_provider(provider_id: uuid.UUID, user: CurrentUserDep, session: SessionDep) -> dict:
    return await service.get(session=session, user=user, provider_id=provider_id)


@router.patch(
    "/providers/{provider_id}", response_model=ProviderOut, responses=problems(409), name="rename"
)
async def rename_provider(
    provider_id: uuid.UUID, body: UpdateProvider, user: CurrentUserDep, session: SessionDep
) -> dict:
    return await service.rename(
        session=session, user=user, provider_id=provider_id, alias=body.alias
    )


@router.delete("/providers/{provider_id}", status_code=204, name="delete")
async def delete_provider(
    provider_id: uuid.UUID, user: CurrentUserDep, session: SessionDep
) -> Response:
    await service.delete(session=session, user=user, provider_id=provider_id)
    return Response(status_code=204)
