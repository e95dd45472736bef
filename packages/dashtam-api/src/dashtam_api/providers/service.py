"""A user's providers (each with exactly one connection). Another user's provider is "not found"."""

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.errors import Conflict, NotFound
from dashtam_api.providers.registry import ProviderSpec
from dashtam_models import Provider, ProviderConnection, User


def _out(provider: Provider, connection: ProviderConnection) -> dict:
    return {
        "id": provider.id,
        "provider_key": provider.provider_key,
        "alias": provider.alias,
        "status": connection.status,
        "created_at": provider.created_at,
        "updated_at": provider.updated_at,
    }


async def create(
    *,
    session: AsyncSession,
    user: User,
    registry: dict[str, ProviderSpec],
    provider_key: str,
    alias: str,
) -> dict:
    """Add a provider of a known kind under an alias unique for this user."""
    if provider_key not in registry:
        raise NotFound(f"Unknown provider type {provider_key!r}; see /api/v1/provider-types.")
    provider = Provider(user_id=user.id, provider_key=provider_key, alias=alias)
    try:
        async with session.begin_nested():
            session.add(provider)
            await session.flush()
    except IntegrityError:
        raise Conflict(f"You already have a provider called {alias!r}.") from None
    connection = ProviderConnection(provider_id=provider.id)
    session.add(connection)
    await session.flush()
    await session.refresh(provider)
    await session.refresh(connection)
    return _out(provider, connection)


async def get_owned(
    *,
    session: AsyncSession,
    user: User,
    provider_id: uuid.UUID,
    fresh: bool = False,
    for_update: bool = False,
) -> tuple[Provider, ProviderConnection]:
    """The user's provider and its connection, in one indexed query; 404 for anyone else's.

    ``fresh``: re-read rows this session already holds (another transaction changed them);
    ``for_update``: lock the connection's row, as every writer of its tokens does.
    """
    query = (
        select(Provider, ProviderConnection)
        .join(ProviderConnection, ProviderConnection.provider_id == Provider.id)
        .where(Provider.id == provider_id, Provider.user_id == user.id)
    )
    if for_update:
        query = query.with_for_update(of=ProviderConnection)
    if fresh or for_update:
        query = query.execution_options(populate_existing=True)
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound("No such provider.")
    return row[0], row[1]


async def get(*, session: AsyncSession, user: User, provider_id: uuid.UUID) -> dict:
    return _out(*await get_owned(session=session, user=user, provider_id=provider_id))


async def list_page(*, session: AsyncSession, user: User, limit: int, offset: int) -> dict:
    """One page of the user's providers and their total, in one statement (a window count); a
    page past the end asks for the total separately."""
    rows = (
        await session.execute(
            select(Provider, ProviderConnection, func.count().over().label("total"))
            .join(ProviderConnection, ProviderConnection.provider_id == Provider.id)
            .where(Provider.user_id == user.id)
            .order_by(Provider.created_at, Provider.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    if rows:
        total = rows[0].total
    elif offset:
        total = await session.scalar(
            select(func.count()).select_from(Provider).where(Provider.user_id == user.id)
        )
    else:
        total = 0
    return {
        "items": [_out(p, c) for p, c, _ in rows],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


async def rename(*, session: AsyncSession, user: User, provider_id: uuid.UUID, alias: str) -> dict:
    provider, connection = await get_owned(session=session, user=user, provider_id=provider_id)
    provider.alias = alias
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(f"You already have a provider called {alias!r}.") from None
    await session.refresh(provider)
    return _out(provider, connection)


async def delete(*, session: AsyncSession, user: User, provider_id: uuid.UUID) -> Provider:
    provider, _ = await get_owned(session=session, user=user, provider_id=provider_id)
    await session.delete(provider)
    await session.flush()
    return provider
