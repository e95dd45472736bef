import uuid
from typing import Annotated

from fastapi import Request

from dashtam_api.accounts import history, service
from dashtam_api.accounts.schemas import (
    AccountOut,
    AccountPage,
    BalanceHistory,
    CreateAccount,
    NetWorth,
    PositionList,
    SyncOut,
)
from dashtam_api.deps import (
    ContextDep,
    CurrentUserDep,
    ReaderDep,
    SessionDep,
    TokenSubjectDep,
    where,
)
from dashtam_api.openapi import problems
from dashtam_api.paging import PageDep
from dashtam_api.query_strings import QueryModel, QueryRoute
from dashtam_api.responses import json_response
from dashtam_api.routing import api_router
from dashtam_api.sync import runs

router = api_router(prefix="/api/v1", tags=["accounts"], route_class=QueryRoute)


@router.post(
    "/providers/{provider_id}/sync",
    response_model=SyncOut,
    responses=problems(409, 429, 502, 504),
    name="sync",
)
async def sync_provider(
    provider_id: uuid.UUID,
    user: CurrentUserDep,
    session: SessionDep,
    ctx: ContextDep,
    request: Request,
) -> dict:
    """Pull the provider's accounts, balances, positions and transactions now (refreshing the
    token if due)."""
    return await service.sync_now(
        ctx=ctx, session=session, user=user, provider_id=provider_id, present=where(request)
    )


SyncRunQueryDep = Annotated[runs.SyncRunQuery, QueryModel(runs.SyncRunQuery)]


@router.get(
    "/providers/{provider_id}/sync-runs",
    response_model=runs.SyncRunPage,
    responses=problems(400),
    name="sync_runs",
)
async def provider_sync_runs(
    provider_id: uuid.UUID, user_id: TokenSubjectDep, reader: ReaderDep, query: SyncRunQueryDep
):
    """Every sync of the provider's connection on record, newest first (`cursor` pages)."""
    return json_response(
        await runs.page(reader=reader, user_id=user_id, provider_id=provider_id, query=query)
    )


@router.get("/providers/{provider_id}/accounts", response_model=AccountPage, name="of_provider")
async def provider_accounts(
    provider_id: uuid.UUID,
    user: CurrentUserDep,
    session: SessionDep,
    page: PageDep,
) -> dict:
    return await service.provider_accounts(
        session=session,
        user=user,
        provider_id=provider_id,
        limit=page.limit,
        offset=page.offset,
    )


@router.post(
    "/accounts",
    status_code=201,
    response_model=AccountOut,
    responses=problems(404, 409),
    name="create",
)
async def create_account(
    body: CreateAccount, user: CurrentUserDep, session: SessionDep, ctx: ContextDep
) -> dict:
    """A manual account: no institution feeds it; import files into it
    (POST /api/v1/accounts/{id}/imports)."""
    return await service.create_manual(ctx=ctx, session=session, user=user, body=body)


@router.get("/accounts", response_model=AccountPage, name="list")
async def list_accounts(user: CurrentUserDep, session: SessionDep, page: PageDep) -> dict:
    """All of the person's accounts, each with its newest balance."""
    return await service.page(session=session, user=user, limit=page.limit, offset=page.offset)


@router.get("/accounts/{account_id}", response_model=AccountOut, name="get")
async def get_account(account_id: uuid.UUID, user_id: TokenSubjectDep, reader: ReaderDep):
    return json_response(await service.get(reader=reader, user_id=user_id, account_id=account_id))


@router.get("/accounts/{account_id}/positions", response_model=PositionList, name="positions")
async def account_positions(
    account_id: uuid.UUID, user: CurrentUserDep, session: SessionDep
) -> dict:
    return await service.positions(session=session, user=user, account_id=account_id)


HistoryDep = Annotated[history.HistoryQuery, QueryModel(history.HistoryQuery)]


@router.get(
    "/accounts/{account_id}/balances",
    response_model=BalanceHistory,
    responses=problems(400),
    name="balances",
)
async def account_balances(
    account_id: uuid.UUID, user_id: TokenSubjectDep, reader: ReaderDep, query: HistoryDep
):
    """The account's balance per day, week or month: the last snapshot of each period."""
    return json_response(
        await history.balances(reader=reader, user_id=user_id, account_id=account_id, query=query)
    )


@router.get("/net-worth", response_model=NetWorth, responses=problems(400), name="net_worth")
async def net_worth(user_id: TokenSubjectDep, reader: ReaderDep, query: HistoryDep):
    """Per period and currency, the sum of the person's accounts at the period's end."""
    return json_response(await history.net_worth(reader=reader, user_id=user_id, query=query))
