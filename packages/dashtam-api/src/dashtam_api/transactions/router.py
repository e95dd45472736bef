import uuid
from typing import Annotated

from fastapi import APIRouter

from dashtam_api.deps import ReaderDep, TokenSubjectDep
from dashtam_api.openapi import problems
from dashtam_api.query import QueryModel, QueryRoute
from dashtam_api.responses import json_response
from dashtam_api.transactions import service
from dashtam_api.transactions.schemas import TransactionOut, TransactionPage, TransactionQuery

router = APIRouter(prefix="/api/v1", tags=["transactions"], route_class=QueryRoute)

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
