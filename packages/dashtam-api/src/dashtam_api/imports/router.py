import uuid
from typing import Annotated, Literal

from fastapi import File, Form, UploadFile

from dashtam_api.deps import ContextDep, CurrentUserDep, SessionDep
from dashtam_api.errors import NotFound
from dashtam_api.imports import queries, service
from dashtam_api.imports.schemas import ImportOut, ImportPage
from dashtam_api.openapi import problems
from dashtam_api.paging import PageDep
from dashtam_api.query_strings import QueryRoute
from dashtam_api.routing import api_router

router = api_router(prefix="/api/v1", tags=["imports"], route_class=QueryRoute)

MAPPING_HELP = (
    "For CSV: how to read its columns, as JSON (docs/imports.md), e.g. "
    '{"date": "Date", "amount": "Amount", "description": "Payee", "date_format": "%m/%d/%Y"}.'
)


@router.post(
    "/accounts/{account_id}/imports",
    status_code=201,
    response_model=ImportOut,
    responses=problems(404, 413, 422),
    name="create",
)
async def import_file(
    account_id: uuid.UUID,
    user: CurrentUserDep,
    session: SessionDep,
    ctx: ContextDep,
    file: Annotated[UploadFile, File(description="An OFX/QFX, CSV or CAMT.053 file.")],
    # Not `| None`: left out is the default, and "null" is no format (the document says so).
    format: Annotated[
        Literal["ofx", "csv", "camt053"],  # noqa: RUF013
        Form(description="The file's format; told from its content when left out."),
    ] = None,  # type: ignore[assignment]
    mapping: Annotated[str | None, Form(description=MAPPING_HELP, max_length=4000)] = None,
) -> dict:
    """Import a file's transactions (and balances, positions) into the account: all of its new
    rows or, when a line is bad, none (a 422 naming the lines). Rows the account already holds
    are counted as duplicates, not added again."""
    return await service.run(
        ctx=ctx,
        session=session,
        user=user,
        account_id=account_id,
        upload=file,
        format=format,
        mapping=mapping,
    )


@router.get("/imports/{import_id}", response_model=ImportOut, name="get")
async def get_import(import_id: uuid.UUID, user: CurrentUserDep, session: SessionDep) -> dict:
    record = await queries.import_of(session, user_id=user.id, import_id=import_id)
    if record is None:
        raise NotFound("No such import.")
    return service.out(record)


@router.get("/accounts/{account_id}/imports", response_model=ImportPage, name="of_account")
async def account_imports(
    account_id: uuid.UUID, user: CurrentUserDep, session: SessionDep, page: PageDep
) -> dict:
    """The account's imports, newest first."""
    return await service.page(
        session=session, user=user, account_id=account_id, limit=page.limit, offset=page.offset
    )
