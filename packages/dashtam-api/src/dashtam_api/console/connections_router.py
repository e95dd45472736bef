"""The console's connection pages (issue 37): the person's institutions, adding one, and each
one's page to connect it as its kind wants, sync it now, revoke it or delete it.

Every action is the API's own service (the same rules, audit and webhooks as the API's
routes); a refusal is the form again with what was wrong (a ProblemError's detail). How each
kind connects from here:

- ``oauth2``: a button; the answer is a redirect to the institution's sign-in (its redirect
  back reaches the callback server, whose page links back here).
- ``simplefin``: the setup token pasted; ``api_token``: the token and query id typed.
- ``consent`` (Enable Banking): a country, then one of its banks; the answer is a redirect to
  the bank's consent page.
- ``link`` (Plaid): a button; the answer is a redirect to the page that opens Plaid Link.
- ``file``: nothing to connect (its accounts are filled by imports).
"""

import uuid
from typing import Annotated, Literal

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from dashtam_api.accounts import service as accounts
from dashtam_api.connections import api_tokens, consent, link, setup_tokens
from dashtam_api.connections import service as connections
from dashtam_api.connections.schemas import ApiTokenAuthorization, SetupTokenAuthorization
from dashtam_api.console import pages
from dashtam_api.console import service as console
from dashtam_api.deps import (
    ContextDep,
    EndedSessionsDep,
    ReaderDep,
    RedisDep,
    SessionDep,
    client_ip,
    where,
)
from dashtam_api.errors import NotFound, ProblemError
from dashtam_api.providers import service as providers
from dashtam_api.providers.schemas import CreateProvider
from dashtam_api.routing import api_router
from dashtam_api.sources.protocol import Kind
from dashtam_api.sync import runs
from dashtam_api.unit_of_work import discard

router = api_router(prefix="/app/connections", include_in_schema=False)

# What a finished action says on the page it returns to (by a code in the address: never text
# from the address itself, which anyone could put in a link).
DONE = {
    "connected": "Connected.",
    "synced": "Synced: the newest sync is at the top of the list below.",
    "revoked": "Disconnected: Dashtam no longer holds its credentials.",
    "deleted": "Deleted, with its accounts and their transactions.",
}

HOW = {
    Kind.OAUTH2: "You sign in at the institution, which sends you back here.",
    Kind.SIMPLEFIN: "Paste a setup token from your SimpleFIN Bridge (bridge.simplefin.org).",
    Kind.API_TOKEN: "Give the Flex token and the Activity Flex query's id you made in IBKR's "
    "portal (docs/providers.md says how).",
    Kind.CONSENT: "Pick your bank; you consent at the bank, which sends you back here.",
    Kind.LINK: "Plaid Link opens: pick your bank and sign in there.",
    Kind.FILE: "Nothing to connect: its accounts are filled by the files you import.",
}


def _types(ctx) -> list[dict]:
    return [
        {"key": spec.key, "name": spec.name, "kind": spec.kind.value}
        for spec in ctx.registry.values()
        if spec.configured
    ]


@router.get("")
async def connections_page(
    request: Request,
    session: SessionDep,
    reader: ReaderDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
) -> Response:
    visitor = await pages.visitor_of(request, session, ctx, ended)
    if visitor is None:
        return pages.to_sign_in()
    return await _list(request, session, reader, ctx, visitor)


async def _list(request, session, reader, ctx, visitor, *, problem=None, alias="") -> Response:
    shown = await console.overview(session=session, reader=reader, ctx=ctx, user=visitor.user)
    return pages.page(
        "connections.html",
        visitor=visitor,
        settings=ctx.settings,
        title="Connections",
        page="connections",
        institutions=shown["institutions"],
        types=_types(ctx),
        problem=problem,
        alias=alias,
        notice=DONE.get(request.query_params.get("done", "")),
    )


@router.post("")
async def add_connection(
    request: Request,
    session: SessionDep,
    reader: ReaderDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    provider_key: Annotated[str, Form(max_length=100)] = "",
    alias: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor, answer = await _form(request, session, reader, ctx, ended, csrf)
    if answer is not None:
        return answer
    try:
        body = CreateProvider(provider_key=provider_key, alias=alias)
        made = await providers.create(
            session=session,
            user=visitor.user,
            registry=ctx.registry,
            provider_key=body.provider_key,
            alias=body.alias,
        )
    except ValidationError:
        return await _list(
            request, session, reader, ctx, visitor,
            problem="Name it (up to 100 characters) and pick an institution.", alias=alias,
        )  # fmt: skip
    except ProblemError as exc:
        await _undone(session, visitor)
        return await _list(request, session, reader, ctx, visitor, problem=exc.detail, alias=alias)
    return RedirectResponse(f"/app/connections/{made['id']}", status_code=303)


async def _form(request, session, reader, ctx, ended, csrf, provider_id=None):
    """(visitor, None) for a form sent with its page's token; else (None, the answer): the
    sign-in page, or the form's page again (400) saying it expired."""

    async def expired(visitor):
        if provider_id is None:
            return await _list(request, session, reader, ctx, visitor, problem=pages.EXPIRED)
        return await _detail(
            request, session, reader, ctx, visitor, provider_id, problem=pages.EXPIRED
        )

    return await pages.form_visitor(request, session, ctx, ended, csrf, expired)


async def _owned(session, ctx, visitor, provider_id: str):
    """(provider's API view, its connection's status, its spec) or None: not the person's."""
    try:
        parsed = uuid.UUID(provider_id)
        provider = await providers.get(session=session, user=visitor.user, provider_id=parsed)
    except (ValueError, NotFound):
        return None
    status = await connections.status(
        session=session, settings=ctx.settings, user=visitor.user, provider_id=parsed
    )
    return provider, status, ctx.registry.get(provider["provider_key"])


def _gone(visitor, ctx) -> Response:
    return pages.page(
        "message.html",
        status=404,
        visitor=visitor,
        settings=ctx.settings,
        title="No such connection",
        page="connections",
        text="It is not one of yours, or it was deleted.",
    )


@router.get("/{provider_id}")
async def connection_page(
    provider_id: str,
    request: Request,
    session: SessionDep,
    reader: ReaderDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
) -> Response:
    visitor = await pages.visitor_of(request, session, ctx, ended)
    if visitor is None:
        return pages.to_sign_in()
    return await _detail(request, session, reader, ctx, visitor, provider_id)


async def _detail(
    request, session, reader, ctx, visitor, provider_id, *, problem=None, status=200
) -> Response:
    owned = await _owned(session, ctx, visitor, provider_id)
    if owned is None:
        return _gone(visitor, ctx)
    provider, state, spec = owned
    kind = spec.kind if spec else None
    held = await accounts.provider_accounts(
        session=session, user=visitor.user, provider_id=provider["id"], limit=200, offset=0
    )
    recent = await console.sync_runs(
        reader=reader,
        user=visitor.user,
        provider_id=provider["id"],
        query=runs.SyncRunQuery(limit=5),
    )
    country = (request.query_params.get("country") or "").upper()[:2]
    banks = []
    if kind is Kind.CONSENT and country:
        try:
            banks = (
                await consent.banks(
                    ctx=ctx, session=session, user=visitor.user, provider_id=provider["id"],
                    country=country,
                )
            )["items"]  # fmt: skip
        except ProblemError as exc:
            problem = problem or exc.detail
    return pages.page(
        "connection.html",
        status=status,
        visitor=visitor,
        settings=ctx.settings,
        title=provider["alias"],
        page="connections",
        provider=provider,
        state=state,
        name=spec.name if spec else provider["provider_key"],
        kind=kind.value if kind else None,
        how=HOW.get(kind, ""),
        accounts=held["items"],
        runs=recent["items"],
        country=country,
        banks=banks,
        problem=problem,
        notice=DONE.get(request.query_params.get("done", "")),
    )


@router.post("/{provider_id}/connect")
async def connect(
    provider_id: str,
    request: Request,
    session: SessionDep,
    reader: ReaderDep,
    redis: RedisDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
    setup_token: Annotated[str, Form(max_length=4000)] = "",
    token: Annotated[str, Form(max_length=200)] = "",
    query_id: Annotated[str, Form(max_length=20)] = "",
    bank: Annotated[str, Form(max_length=200)] = "",
    country: Annotated[str, Form(max_length=2)] = "",
) -> Response:
    visitor, answer = await _form(request, session, reader, ctx, ended, csrf, provider_id)
    if answer is not None:
        return answer
    owned = await _owned(session, ctx, visitor, provider_id)
    if owned is None:
        return _gone(visitor, ctx)
    provider, _, spec = owned
    here = f"/app/connections/{provider['id']}"
    ids = {"ctx": ctx, "session": session, "user": visitor.user, "provider_id": provider["id"]}
    try:
        match spec.kind if spec else None:
            case Kind.OAUTH2:
                started = await connections.start(
                    session=session, redis=redis, settings=ctx.settings, registry=ctx.registry,
                    tls=ctx.tls, user=visitor.user, provider_id=provider["id"],
                )  # fmt: skip
                return RedirectResponse(started["authorization_url"], status_code=303)
            case Kind.SIMPLEFIN:
                body = SetupTokenAuthorization(setup_token=setup_token)
                await setup_tokens.connect(
                    **ids, setup_token=body.setup_token, where=where(request)
                )
                return RedirectResponse(f"{here}?done=connected", status_code=303)
            case Kind.API_TOKEN:
                body = ApiTokenAuthorization(token=token, query_id=query_id)
                await api_tokens.connect(**ids, body=body, where=where(request))
                return RedirectResponse(f"{here}?done=connected", status_code=303)
            case Kind.CONSENT:
                started = await consent.start(
                    **ids, redis=redis, name=bank, country=country.upper(), where=where(request)
                )
                return RedirectResponse(started["authorization_url"], status_code=303)
            case Kind.LINK:
                started = await link.start(**ids, redis=redis, products=None)
                return RedirectResponse(started["link_url"], status_code=303)
            case _:
                return await _detail(
                    request, session, reader, ctx, visitor, provider_id,
                    problem=HOW[Kind.FILE] if spec else "This institution cannot be connected here.",
                )  # fmt: skip
    except ValidationError:
        problem = "That is not of the form asked for: check what you pasted."
    except ProblemError as exc:
        problem = exc.detail
    await _undone(session, visitor)
    return await _detail(request, session, reader, ctx, visitor, provider_id, problem=problem)


@router.post("/{provider_id}/{action}")
async def act(
    provider_id: str,
    action: Literal["sync", "revoke", "delete"],
    request: Request,
    session: SessionDep,
    reader: ReaderDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Sync now, revoke, or delete: the API's own service; its refusal said on the page."""
    visitor, answer = await _form(request, session, reader, ctx, ended, csrf, provider_id)
    if answer is not None:
        return answer
    owned = await _owned(session, ctx, visitor, provider_id)
    if owned is None:
        return _gone(visitor, ctx)
    provider = owned[0]
    here = f"/app/connections/{provider['id']}"
    try:
        if action == "sync":
            await accounts.sync_now(
                ctx=ctx, session=session, user=visitor.user, provider_id=provider["id"],
                present=where(request),
            )  # fmt: skip
            return RedirectResponse(f"{here}?done=synced", status_code=303)
        if action == "revoke":
            await connections.revoke(
                session=session, settings=ctx.settings, registry=ctx.registry, vault=ctx.vault,
                tls=ctx.tls, user=visitor.user, provider_id=provider["id"],
                ip=client_ip(request), user_agent=request.headers.get("user-agent"), ctx=ctx,
            )  # fmt: skip
            return RedirectResponse(f"{here}?done=revoked", status_code=303)
        await providers.delete(session=session, user=visitor.user, provider_id=provider["id"])
        return RedirectResponse("/app/connections?done=deleted", status_code=303)
    except ProblemError as exc:
        await _undone(session, visitor)
        return await _detail(
            request, session, reader, ctx, visitor, provider_id, problem=exc.detail
        )


async def _undone(session, visitor: pages.Visitor) -> None:
    """What the refused action wrote is thrown away before the page is read again; the person,
    expired by the rollback, is read afresh (an expired row is never loaded lazily here)."""
    await discard(session)
    await visitor.reread(session)
