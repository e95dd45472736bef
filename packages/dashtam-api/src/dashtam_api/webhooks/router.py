import uuid
from typing import Annotated

from fastapi import Response

from dashtam_api.deps import CurrentUserDep, SessionDep, SettingsDep, VaultDep
from dashtam_api.openapi import problems
from dashtam_api.query_strings import QueryModel, QueryRoute
from dashtam_api.routing import api_router
from dashtam_api.webhooks import service
from dashtam_api.webhooks.schemas import (
    AttemptPage,
    AttemptQuery,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookSecret,
    WebhookTestSent,
    WebhookUpdate,
)

router = api_router(prefix="/api/v1/webhooks", tags=["webhooks"], route_class=QueryRoute)
AttemptQueryDep = Annotated[AttemptQuery, QueryModel(AttemptQuery)]


@router.post(
    "", status_code=201, response_model=WebhookCreated, responses=problems(409), name="create"
)
async def create_webhook(
    body: WebhookCreate,
    user: CurrentUserDep,
    session: SessionDep,
    settings: SettingsDep,
    vault: VaultDep,
) -> dict:
    """Register an endpoint; the answer holds its signing secret, shown only this once."""
    created = await service.create(
        session=session, settings=settings, vault=vault, user=user, body=body
    )
    return created


@router.get("", response_model=WebhookList, name="list")
async def list_webhooks(user: CurrentUserDep, session: SessionDep) -> dict:
    return await service.listed(session=session, user=user)


@router.get("/{endpoint_id}", response_model=WebhookOut, responses=problems(404), name="get")
async def get_webhook(endpoint_id: uuid.UUID, user: CurrentUserDep, session: SessionDep) -> dict:
    return await service.get(session=session, user=user, endpoint_id=endpoint_id)


@router.patch("/{endpoint_id}", response_model=WebhookOut, responses=problems(404), name="update")
async def update_webhook(
    endpoint_id: uuid.UUID,
    body: WebhookUpdate,
    user: CurrentUserDep,
    session: SessionDep,
    settings: SettingsDep,
) -> dict:
    updated = await service.update(
        session=session, settings=settings, user=user, endpoint_id=endpoint_id, body=body
    )
    return updated


@router.delete("/{endpoint_id}", status_code=204, responses=problems(404), name="delete")
async def delete_webhook(
    endpoint_id: uuid.UUID, user: CurrentUserDep, session: SessionDep
) -> Response:
    await service.delete(session=session, user=user, endpoint_id=endpoint_id)
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response_model=WebhookSecret,
    responses=problems(404),
    name="rotate_secret",
)
async def rotate_webhook_secret(
    endpoint_id: uuid.UUID, user: CurrentUserDep, session: SessionDep, vault: VaultDep
) -> dict:
    """A new signing secret; the old one signs nothing more."""
    rotated = await service.rotate_secret(
        session=session, vault=vault, user=user, endpoint_id=endpoint_id
    )
    return rotated


@router.post(
    "/{endpoint_id}/test",
    status_code=202,
    response_model=WebhookTestSent,
    responses=problems(404, 409),
    name="test",
)
async def test_webhook(endpoint_id: uuid.UUID, user: CurrentUserDep, session: SessionDep) -> dict:
    """Send a `webhook.test` event to this endpoint (through the outbox, like any event)."""
    sent = await service.send_test(session=session, user=user, endpoint_id=endpoint_id)
    return sent


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=AttemptPage,
    responses=problems(400, 404),
    name="deliveries",
)
async def webhook_deliveries(
    endpoint_id: uuid.UUID, user: CurrentUserDep, session: SessionDep, query: AttemptQueryDep
) -> dict:
    """Every attempt to deliver to this endpoint, newest first (`cursor` pages)."""
    return await service.attempts(session=session, user=user, endpoint_id=endpoint_id, query=query)
