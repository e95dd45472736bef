import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from dashtam_api.deps import CurrentUserDep, SessionDep
from dashtam_api.openapi import problems
from dashtam_api.transactions import service
from dashtam_api.transactions.schemas import TransactionOut, TransactionPage, TransactionQuery

router = APIRouter(prefix="/api/v1", tags=["transactions"])

QueryDep = Annotated[TransactionQuery, Query()]


@router.get("/transactions", response_model=TransactionPage, responses=problems(400))
async def list_transactions(user: CurrentUserDep, session: SessionDep, query: QueryDep) -> dict:
    """All of the person's transactions, newest first (`cursor` pages through them)."""
    return await service.page(session=session, user=user, query=query)


@router.get(
    "/accounts/{account_id}/transactions", response_model=TransactionPage, responses=problems(400)
)
async def account_transactions(
    account_id: uuid.UUID, user: CurrentUserDep, session: SessionDep, query: QueryDep
) -> dict:
    """One account's transactions, newest first."""
    return await service.page(session=session, user=user, query=query, account_id=account_id)


@router.get("/transactions/{transaction_id}", response_model=TransactionOut)
async def get_transaction(
    transaction_id: uuid.UUID, user: CurrentUserDep, session: SessionDep
) -> dict:
    return await service.get(session=session, user=user, transaction_id=transaction_id)
