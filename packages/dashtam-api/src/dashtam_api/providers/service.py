"""A user's providers (each with exactly one connection). Another user's provider is "not found"."""

import uuid

from pydantic_core import to_json
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.errors import ACCOUNT_GONE, Conflict, NotFound, Unauthorized
from dashtam_api.providers.registry import ProviderSpec
from dashtam_core.database import Reader
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


# The user behind the token and one page of their providers with the total (a window count,
# taken before LIMIT), in one statement: no row means the account is gone or inactive; one row
# of NULLs, an account with nothing on this page. The id leaves as the string it is in JSON
# (asyncpg's UUID takes pydantic_core's slow path).
_PAGE = """
WITH page AS (
    SELECT p.id::text AS id, p.provider_key, p.alias, c.status, p.created_at, p.updated_at,
           count(*) OVER () AS total
    FROM providers p
    JOIN provider_connections c ON c.provider_id = p.id
    WHERE p.user_id = $1
    ORDER BY p.created_at, p.id
    LIMIT $2 OFFSET $3
)
SELECT page.* FROM users u LEFT JOIN page ON true WHERE u.id = $1 AND u.is_active
"""
_TOTAL = "SELECT count(*) FROM providers WHERE user_id = $1"
_PAGE_FIELDS = ("id", "provider_key", "alias", "status", "created_at", "updated_at")


async def list_page(*, reader: Reader, user_id: uuid.UUID, limit: int, offset: int) -> bytes:
    """One page of the user's providers and their total, as the JSON of schemas.ProviderPage;
    a page past the end asks for the total separately."""
    rows = await reader.fetch(_PAGE, user_id, limit, offset)
    if not rows:
        raise Unauthorized(ACCOUNT_GONE)
    if rows[0]["id"] is None:
        items = []
        total = (await reader.fetch(_TOTAL, user_id))[0][0] if offset else 0
    else:
        items = [{f: row[f] for f in _PAGE_FIELDS} for row in rows]
        total = rows[0]["total"]
    return to_json({"items": items, "total": total, "limit": limit, "offset": offset})


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
