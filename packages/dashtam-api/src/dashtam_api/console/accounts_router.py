"""The console's account pages (issue 37): one account (its balance, positions, imports, the
way to its transactions), a file imported into it, and a manual account made.

A file is imported as POST /api/v1/accounts/{id}/imports imports it (imports/service.py: all
of its new rows or none, duplicates counted, the last CSV mapping kept): the upload is limited
before it is read (body_limit.py: a console sign-in cookie, a length, IMPORT_MAX_BYTES).
"""

import json
import uuid
from typing import Annotated, Literal

from fastapi import File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from dashtam_api.accounts import service as accounts
from dashtam_api.accounts.schemas import CreateAccount
from dashtam_api.console import pages
from dashtam_api.deps import ContextDep, EndedSessionsDep, ReaderDep, SessionDep
from dashtam_api.errors import NotFound, ProblemError
from dashtam_api.imports import service as imports
from dashtam_api.routing import api_router
from dashtam_api.unit_of_work import discard

router = api_router(prefix="/app/accounts", include_in_schema=False)

DONE = {"imported": "Imported: the newest import is at the top of the list below."}
FORMATS = {"": "Tell from the file", "ofx": "OFX / QFX", "csv": "CSV", "camt053": "CAMT.053"}


async def _account_page(
    request, session, reader, ctx, visitor, account_id: str, *, status=200, **shown
) -> Response:
    try:
        target = uuid.UUID(account_id)
        account = json.loads(
            await accounts.get(reader=reader, user_id=visitor.user.id, account_id=target)
        )
        held = await accounts.positions(session=session, user=visitor.user, account_id=target)
        done = await imports.page(
            session=session, user=visitor.user, account_id=target, limit=10, offset=0
        )
    except (ValueError, NotFound):
        return pages.page(
            "message.html",
            status=404,
            visitor=visitor,
            settings=ctx.settings,
            title="No such account",
            page="overview",
            text="It is not one of yours, or it no longer exists.",
        )
    return pages.page(
        "account.html",
        status=status,
        visitor=visitor,
        settings=ctx.settings,
        title=account["name"],
        page="overview",
        account=account,
        positions=held["items"],
        imports=done["items"],
        formats=FORMATS,
        notice=DONE.get(request.query_params.get("done", "")),
        **{"problem": None, "lines": []} | shown,
    )


@router.get("/new")
async def new_account_form(
    request: Request, session: SessionDep, ctx: ContextDep, ended: EndedSessionsDep
) -> Response:
    visitor = await pages.visitor_of(request, session, ctx, ended)
    if visitor is None:
        return pages.to_sign_in()
    return _new_page(visitor, ctx)


def _new_page(visitor, ctx, *, problem=None, given=None) -> Response:
    return pages.page(
        "new_account.html",
        visitor=visitor,
        settings=ctx.settings,
        title="An account of your own",
        page="overview",
        problem=problem,
        given=dict.fromkeys(("name", "account_type", "currency", "opening_balance"), "")
        | (given or {}),
    )


@router.post("/new")
async def make_account(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    name: Annotated[str, Form(max_length=200)] = "",
    account_type: Annotated[str, Form(max_length=40)] = "",
    currency: Annotated[str, Form(max_length=3)] = "",
    opening_balance: Annotated[str, Form(max_length=40)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    given = {"name": name, "account_type": account_type, "currency": currency,
             "opening_balance": opening_balance}  # fmt: skip

    async def expired(visitor):
        return _new_page(visitor, ctx, problem=pages.EXPIRED, given=given)

    visitor, answer = await pages.form_visitor(request, session, ctx, ended, csrf, expired)
    if answer is not None:
        return answer
    try:
        body = CreateAccount(
            name=name,
            account_type=account_type,
            currency=currency.upper(),
            opening_balance=opening_balance.strip() or None,
        )
        made = await accounts.create_manual(ctx=ctx, session=session, user=visitor.user, body=body)
    except ValidationError:
        return _new_page(
            visitor,
            ctx,
            problem="Name it, say its type, a three-letter currency (USD, EUR), and a balance "
            "such as 1250.00 if you give one.",
            given=given,
        )
    except ProblemError as exc:
        await discard(session)
        await visitor.reread(session)
        return _new_page(visitor, ctx, problem=exc.detail, given=given)
    return RedirectResponse(f"/app/accounts/{made['id']}", status_code=303)


@router.get("/{account_id}")
async def account_page(
    account_id: str,
    request: Request,
    session: SessionDep,
    reader: ReaderDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
) -> Response:
    visitor = await pages.visitor_of(request, session, ctx, ended)
    if visitor is None:
        return pages.to_sign_in()
    return await _account_page(request, session, reader, ctx, visitor, account_id)


@router.post("/{account_id}/import")
async def import_file(
    account_id: str,
    request: Request,
    session: SessionDep,
    reader: ReaderDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    file: Annotated[UploadFile | None, File()] = None,
    format: Annotated[Literal["", "ofx", "csv", "camt053"], Form()] = "",
    mapping: Annotated[str, Form(max_length=4000)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:

    async def expired(visitor):
        return await _account_page(
            request, session, reader, ctx, visitor, account_id, problem=pages.EXPIRED
        )

    visitor, answer = await pages.form_visitor(request, session, ctx, ended, csrf, expired)
    if answer is not None:
        return answer
    if file is None or not file.filename:
        return await _account_page(
            request, session, reader, ctx, visitor, account_id, problem="Choose a file."
        )
    try:
        done = await imports.run(
            ctx=ctx,
            session=session,
            user=visitor.user,
            account_id=uuid.UUID(account_id),
            upload=file,
            format=format or None,
            mapping=mapping.strip() or None,
        )
    except ValueError:
        return await _account_page(request, session, reader, ctx, visitor, account_id)
    except ProblemError as exc:
        await discard(session)
        await visitor.reread(session)
        return await _account_page(
            request, session, reader, ctx, visitor, account_id,
            problem=exc.detail, lines=exc.extra.get("lines", [])[:20],
        )  # fmt: skip
    return RedirectResponse(f"/app/accounts/{done['account_id']}?done=imported", status_code=303)
