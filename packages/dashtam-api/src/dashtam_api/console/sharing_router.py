"""The console's "Share with apps" pages (issue 37): SimpleFIN setup tokens for budgeting apps
and the apps that claimed access, API keys, and webhooks with their deliveries.

A secret (a setup token, an API key, a webhook's signing secret) is shown once, on the page
that answers the form that made it: never in an address, never kept, never logged (the page
is ``no-store``). Every action is the API's own service (the same audit and rules).
"""

import uuid
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from dashtam_api.apikeys import service as api_keys
from dashtam_api.apikeys.schemas import ApiKeyCreate
from dashtam_api.apikeys.scopes import SCOPES
from dashtam_api.console import pages
from dashtam_api.console import service as console
from dashtam_api.deps import ContextDep, EndedSessionsDep, SessionDep, where
from dashtam_api.errors import ProblemError
from dashtam_api.routing import api_router
from dashtam_api.simplefin import service as simplefin
from dashtam_api.simplefin.schemas import SetupTokenCreate
from dashtam_api.unit_of_work import discard
from dashtam_api.webhooks import service as webhooks
from dashtam_api.webhooks.schemas import SUBSCRIBABLE, AttemptQuery, WebhookCreate

router = api_router(prefix="/app/sharing", include_in_schema=False)

DONE = {
    "revoked": "Revoked: it no longer works.",
    "deleted": "Deleted.",
    "tested": "A webhook.test event is on its way; its attempt shows below within seconds.",
}
# How each budgeting app takes a SimpleFIN setup token (their own settings pages).
APPS = (
    ("Actual", "Settings > Advanced settings > SimpleFIN: paste the token, then link accounts."),
    ("Firefly III", "Data importer > SimpleFIN: paste the token as the access token source."),
    ("Sure", "Settings > Bank sync > SimpleFIN: paste the token."),
)


async def _signed_in(request, session, ctx, ended):
    return await pages.visitor_of(request, session, ctx, ended)


async def _sharing(request, session, ctx, visitor, *, status=200, **shown) -> Response:
    user = visitor.user
    return pages.page(
        "sharing.html",
        status=status,
        visitor=visitor,
        settings=ctx.settings,
        title="Share with apps",
        page="sharing",
        accesses=(await simplefin.listed(session=session, user=user))["items"],
        keys=(await api_keys.listed(session=session, user=user))["items"],
        hooks=(await webhooks.listed(session=session, user=user))["items"],
        accounts=await console.account_names(session=session, user=user),
        scopes=SCOPES,
        events=SUBSCRIBABLE,
        apps=APPS,
        notice=shown.pop("notice", None) or DONE.get(request.query_params.get("done", "")),
        **{"made": None, "problem": None} | shown,
    )


async def _form(request, session, ctx, ended, csrf):
    async def expired(visitor):
        return await _sharing(request, session, ctx, visitor, problem=pages.EXPIRED)

    return await pages.form_visitor(request, session, ctx, ended, csrf, expired)


@router.get("")
async def sharing_page(
    request: Request, session: SessionDep, ctx: ContextDep, ended: EndedSessionsDep
) -> Response:
    visitor = await _signed_in(request, session, ctx, ended)
    if visitor is None:
        return pages.to_sign_in()
    return await _sharing(request, session, ctx, visitor)


async def _refused(request, session, ctx, visitor, problem: str, status: int = 200) -> Response:
    await discard(session)
    await visitor.reread(session)
    return await _sharing(request, session, ctx, visitor, status=status, problem=problem)


@router.post("/simplefin")
async def make_setup_token(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    label: Annotated[str, Form(max_length=200)] = "",
    scope: Annotated[str, Form(max_length=10)] = "all",
    account_ids: Annotated[list[str] | None, Form()] = None,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor, answer = await _form(request, session, ctx, ended, csrf)
    if answer is not None:
        return answer
    try:
        chosen = None if scope == "all" else list(account_ids or [])
        if chosen == []:
            raise ValueError("pick at least one account, or all of them")
        body = SetupTokenCreate(label=label, account_ids=chosen)
        made = await simplefin.create_setup_token(
            session=session,
            settings=ctx.settings,
            user=visitor.user,
            label=body.label,
            account_ids=body.account_ids,
            where=where(request),
        )
    except (ValidationError, ValueError):
        return await _refused(
            request, session, ctx, visitor, "Pick all accounts, or at least one of them."
        )
    except ProblemError as exc:
        return await _refused(request, session, ctx, visitor, exc.detail)
    shown = {
        "what": "SimpleFIN setup token",
        "secret": made["setup_token"],
        "until": made["expires_at"],
        "apps": True,
    }
    return await _sharing(request, session, ctx, visitor, made=shown)


@router.post("/simplefin/{access_id}/revoke")
async def revoke_access(
    access_id: str,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    async def act(visitor, target):
        await simplefin.revoke(
            session=session, user=visitor.user, access_id=target, where=where(request)
        )

    return await _act(request, session, ctx, ended, csrf, access_id, act, "revoked")


@router.post("/keys")
async def make_api_key(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    name: Annotated[str, Form(max_length=200)] = "",
    scopes: Annotated[list[str] | None, Form()] = None,
    expires_in_days: Annotated[str, Form(max_length=4)] = "90",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor, answer = await _form(request, session, ctx, ended, csrf)
    if answer is not None:
        return answer
    try:
        body = ApiKeyCreate(
            name=name, scopes=scopes or [], expires_in_days=int(expires_in_days or "0")
        )
        made = await api_keys.create(
            session=session,
            user=visitor.user,
            name=body.name,
            scopes=body.scopes,
            expires_in_days=body.expires_in_days,
            where=where(request),
        )
    except (ValidationError, ValueError):
        return await _refused(
            request,
            session,
            ctx,
            visitor,
            "Name the key, pick at least one scope, and a life of 1 to 365 days.",
        )
    shown = {"what": "API key", "secret": made["key"], "until": made["expires_at"], "apps": False}
    return await _sharing(request, session, ctx, visitor, made=shown)


@router.post("/keys/{key_id}/revoke")
async def revoke_api_key(
    key_id: str,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    async def act(visitor, target):
        await api_keys.revoke(
            session=session, user=visitor.user, key_id=target, where=where(request)
        )

    return await _act(request, session, ctx, ended, csrf, key_id, act, "revoked")


@router.post("/webhooks")
async def make_webhook(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    url: Annotated[str, Form(max_length=2000)] = "",
    events: Annotated[list[str] | None, Form()] = None,
    description: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor, answer = await _form(request, session, ctx, ended, csrf)
    if answer is not None:
        return answer
    try:
        body = WebhookCreate(url=url, events=events or [], description=description or None)
        made = await webhooks.create(
            session=session, settings=ctx.settings, vault=ctx.vault, user=visitor.user, body=body
        )
    except ValidationError:
        return await _refused(
            request, session, ctx, visitor, "Give an https address and pick at least one event."
        )
    except ProblemError as exc:
        return await _refused(request, session, ctx, visitor, exc.detail)
    shown = {
        "what": "webhook signing secret",
        "secret": made["secret"],
        "until": None,
        "apps": False,
    }
    return await _sharing(request, session, ctx, visitor, made=shown)


@router.get("/webhooks/{endpoint_id}")
async def webhook_page(
    endpoint_id: str,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
) -> Response:
    visitor = await _signed_in(request, session, ctx, ended)
    if visitor is None:
        return pages.to_sign_in()
    try:
        target = uuid.UUID(endpoint_id)
        hook = await webhooks.get(session=session, user=visitor.user, endpoint_id=target)
        tried = await webhooks.attempts(
            session=session, user=visitor.user, endpoint_id=target, query=AttemptQuery(limit=20)
        )
    except (ValueError, ProblemError):
        return _gone(visitor, ctx)
    return pages.page(
        "webhook.html",
        visitor=visitor,
        settings=ctx.settings,
        title="Webhook",
        page="sharing",
        hook=hook,
        attempts=tried["items"],
        notice=DONE.get(request.query_params.get("done", "")),
    )


@router.post("/webhooks/{endpoint_id}/test")
async def send_test_event(
    endpoint_id: str,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    async def act(visitor, target):
        await webhooks.send_test(session=session, user=visitor.user, endpoint_id=target)

    return await _act(
        request, session, ctx, ended, csrf, endpoint_id, act, "tested",
        back=f"/app/sharing/webhooks/{endpoint_id}",
    )  # fmt: skip


@router.post("/webhooks/{endpoint_id}/delete")
async def delete_webhook(
    endpoint_id: str,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    async def act(visitor, target):
        await webhooks.delete(session=session, user=visitor.user, endpoint_id=target)

    return await _act(request, session, ctx, ended, csrf, endpoint_id, act, "deleted")


async def _act(request, session, ctx, ended, csrf, raw_id, act, done, back="/app/sharing"):
    """A revoke, delete or test through the API's own service; its refusal said on the page."""
    visitor, answer = await _form(request, session, ctx, ended, csrf)
    if answer is not None:
        return answer
    try:
        await act(visitor, uuid.UUID(raw_id))
    except ValueError:
        return _gone(visitor, ctx)
    except ProblemError as exc:
        if exc.status == 404:
            return _gone(visitor, ctx)
        return await _refused(request, session, ctx, visitor, exc.detail)
    return RedirectResponse(f"{back}?done={done}", status_code=303)


def _gone(visitor, ctx) -> Response:
    return pages.page(
        "message.html",
        status=404,
        visitor=visitor,
        settings=ctx.settings,
        title="Not found",
        page="sharing",
        text="It is not one of yours, or it was deleted.",
    )
