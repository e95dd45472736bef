"""What administrators do through the API: invitations (REGISTRATION=invite)."""

import uuid

from fastapi import Request, Response

from dashtam_api.auth import invitations
from dashtam_api.auth.schemas import InvitationCreate, InvitationCreated, InvitationList
from dashtam_api.deps import AdminDep, SessionDep, SettingsDep, where
from dashtam_api.openapi import problems
from dashtam_api.routing import api_router

router = api_router(prefix="/api/v1/invitations", tags=["admin"])


@router.post(
    "",
    status_code=201,
    response_model=InvitationCreated,
    responses=problems(403),
    name="create_invitation",
)
async def create_invitation(
    body: InvitationCreate,
    request: Request,
    admin: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
) -> dict:
    """A single-use invitation to register, valid INVITATION_DAYS; its token is shown once."""
    created = await invitations.create(
        session=session,
        settings=settings,
        admin=admin,
        email=body.email,
        note=body.note,
        where=where(request),
    )
    return created


@router.get("", response_model=InvitationList, responses=problems(403), name="list_invitations")
async def list_invitations(admin: AdminDep, session: SessionDep) -> dict:
    return await invitations.listed(session=session)


@router.delete(
    "/{invitation_id}", status_code=204, responses=problems(403, 404), name="revoke_invitation"
)
async def revoke_invitation(
    invitation_id: uuid.UUID, request: Request, admin: AdminDep, session: SessionDep
) -> Response:
    await invitations.revoke(
        session=session, admin=admin, invitation_id=invitation_id, where=where(request)
    )
    return Response(status_code=204)
