import re
import uuid
from typing import Annotated, Literal

from fastapi import Query
from fastapi.responses import StreamingResponse

from dashtam_api.days import Day
from dashtam_api.deps import ReaderDep, TokenSubjectDep
from dashtam_api.exports import service as exports
from dashtam_api.openapi import problems
from dashtam_api.query_strings import QueryModel, QueryRoute
from dashtam_api.responses import json_response
from dashtam_api.routing import api_router
from dashtam_api.transactions import service
from dashtam_api.transactions.schemas import TransactionOut, TransactionPage, TransactionQuery

router = api_router(prefix="/api/v1", tags=["transactions"], route_class=QueryRoute)

QueryDep = Annotated[TransactionQuery, QueryModel(TransactionQuery)]


@router.get("/transactions", response_model=TransactionPage, responses=problems(400), name="list")
async def list_transactions(user_id: TokenSubjectDep, reader: ReaderDep, query: QueryDep):
    """All of the person's transactions, newest first (`cursor` pages through them)."""
    return json_response(await service.page(reader=reader, user_id=user_id, query=query))


@router.get(
    "/accounts/{account_id}/transactions",
    response_model=TransactionPage,
    responses=problems(400),
    name="of_account",
)
async def account_transactions(
    account_id: uuid.UUID, user_id: TokenSubjectDep, reader: ReaderDep, query: QueryDep
):
    """One account's transactions, newest first."""
    return json_response(
        await service.page(reader=reader, user_id=user_id, query=query, account_id=account_id)
    )


@router.get("/transactions/{transaction_id}", response_model=TransactionOut, name="get")
async def get_transaction(transaction_id: uuid.UUID, user_id: TokenSubjectDep, reader: ReaderDep):
    return json_response(
        await service.get(reader=reader, user_id=user_id, transaction_id=transaction_id)
    )


_MEDIA = {"csv": "text/csv; charset=utf-8", "ofx": "application/x-ofx"}


@router.get(
    "/accounts/{account_id}/transactions/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file, streamed.",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ofx": {"schema": {"type": "string"}},
            },
        }
    },
    name="export",
)
async def export_transactions(
    account_id: uuid.UUID,
    user_id: TokenSubjectDep,
    reader: ReaderDep,
    format: Literal["csv", "ofx"] = "csv",
    from_: Annotated[Day | None, Query(alias="from")] = None,
    to: Annotated[Day | None, Query(description="Before `from`: an empty file.")] = None,
) -> StreamingResponse:
    """One account's transactions as a file to import elsewhere: CSV (every transaction, oldest
    first; the columns in docs/transactions.md) or OFX 2.2 (posted transactions; a bank
    statement, or for a brokerage account an investment statement with its positions).
    ``from`` and ``to`` are days, both included."""
    export = await exports.account(reader, user_id, account_id)
    window = exports.Window.of(from_, to)
    body = (exports.csv_export if format == "csv" else exports.ofx_export)(
        reader, user_id, export, window
    )
    slug = re.sub(r"[^A-Za-z0-9]+", "-", export.name).strip("-").lower() or "account"
    name = f"dashtam-{slug}-{from_ or 'start'}-{to or 'now'}.{format}"
    return StreamingResponse(
        body,
        media_type=_MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
