import uuid

from fastapi import Request, Response

from dashtam_api.apikeys import service
from dashtam_api.apikeys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList
from dashtam_api.deps import CurrentUserDep, SessionDep, where
from dashtam_api.routing import api_router

router = api_router(prefix="/api/v1/api-keys", tags=["api-keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated, name="create")
async def create_api_key(
    body: ApiKeyCreate, request: Request, user: CurrentUserDep, session: SessionDep
) -> dict:
    """A key for a script or an app, limited to its scopes; the key is in this answer only."""
    created = await service.create(
        session=session,
        user=user,
        name=body.name,
        scopes=body.scopes,
        expires_in_days=body.expires_in_days,
        where=where(request),
    )
    return created


@router.get("", response_model=ApiKeyList, name="list")
async def list_api_keys(user: CurrentUserDep, session: SessionDep) -> dict:
    return await service.listed(session=session, user=user)


@router.delete("/{key_id}", status_code=204, name="revoke")
async def revoke_api_key(
    key_id: uuid.UUID, request: Request, user: CurrentUserDep, session: SessionDep
) -> Response:
    """The key stops working at once."""
    await service.revoke(session=session, user=user, key_id=key_id, where=where(request))
    return Response(status_code=204)
