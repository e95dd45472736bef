"""A user's providers (each with exactly one connection). Another user's provider is "not found"."""

import uuid
from datetime import UTC, datetime

from pydantic_core import to_json
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.errors import Conflict, NotFound
from dashtam_api.providers import queries
from dashtam_api.providers.registry import ProviderSpec
from dashtam_api.sources.protocol import Kind
from dashtam_core.database import Reader
from dashtam_models import ConnectionStatus, Provider, ProviderConnection, User


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
    if registry[provider_key].kind is Kind.FILE:
        # Nothing to authorize: its accounts are fed by imports from the start.
        connection.status = ConnectionStatus.ACTIVE.value
        connection.connected_at = datetime.now(UTC)
    session.add(connection)
    await session.flush()
    await queries.reloaded(session, rows=(provider, connection))
    return _out(provider, connection)


async def get_owned(
    *,
    session: AsyncSession,
    user: User,
    provider_id: uuid.UUID,
    fresh: bool = False,
    for_update: bool = False,
) -> tuple[Provider, ProviderConnection]:
    """The user's provider and its connection (queries.provider_with_connection); 404 for
    anyone else's.

    ``fresh``: re-read rows this session already holds (another transaction changed them);
    ``for_update``: lock the connection's row, as every writer of its tokens does.
    """
    found = await queries.provider_with_connection(
        session, user_id=user.id, provider_id=provider_id, fresh=fresh, for_update=for_update
    )
    if found is None:
        raise NotFound("No such provider.")
    return found


async def get(*, session: AsyncSession, user: User, provider_id: uuid.UUID) -> dict:
    return _out(*await get_owned(session=session, user=user, provider_id=provider_id))


_PAGE_FIELDS = ("id", "provider_key", "alias", "status", "created_at", "updated_at")


async def list_page(*, reader: Reader, user_id: uuid.UUID, limit: int, offset: int) -> bytes:
    """One page of the user's providers and their total, as the JSON of schemas.ProviderPage;
    a page past the end asks for the total separately."""
    rows = await queries.providers_page(reader, user_id=user_id, limit=limit, offset=offset)
    if rows[0]["id"] is None:
        items = []
        total = await queries.providers_count(reader, user_id=user_id) if offset else 0
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
    await queries.reloaded(session, rows=(provider,))
    return _out(provider, connection)


async def delete(*, session: AsyncSession, user: User, provider_id: uuid.UUID) -> Provider:
    provider, _ = await get_owned(session=session, user=user, provider_id=provider_id)
    await session.delete(provider)
    await session.flush()
    return provider


MANUAL_ALIAS = "Manual accounts"


async def files_provider(
    *, session: AsyncSession, user: User, registry: dict[str, ProviderSpec]
) -> tuple[Provider, ProviderConnection]:
    """The person's first provider of kind file (its accounts fed by imports), made under the
    alias MANUAL_ALIAS when they have none."""
    keys = [k for k, spec in registry.items() if spec.kind is Kind.FILE]
    found = await queries.first_provider_of(session, user_id=user.id, keys=keys)
    if found is not None:
        return found
    made = await create(
        session=session, user=user, registry=registry, provider_key=keys[0], alias=MANUAL_ALIAS
    )
    return await get_owned(session=session, user=user, provider_id=made["id"])
