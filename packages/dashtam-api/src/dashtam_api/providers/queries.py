"""The statements of a person's providers (each with exactly one connection)."""

import uuid

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.ownership_queries import ACTIVE_PERSON, PERSON, rows_of_active_person
from dashtam_core.database import Reader
from dashtam_models import Provider, ProviderConnection


async def provider_with_connection(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    fresh: bool = False,
    for_update: bool = False,
) -> tuple[Provider, ProviderConnection] | None:
    """The person's provider and its connection, in one indexed query; None for anyone else's.

    ``fresh``: re-read rows this session already holds (another transaction changed them);
    ``for_update``: lock the connection's row, as every writer of its tokens does.
    """
    query = (
        select(Provider, ProviderConnection)
        .join(ProviderConnection, ProviderConnection.provider_id == Provider.id)
        .where(Provider.id == provider_id, Provider.user_id == user_id)
    )
    if for_update:
        query = query.with_for_update(of=ProviderConnection)
    if fresh or for_update:
        query = query.execution_options(populate_existing=True)
    row = (await session.execute(query)).first()
    return None if row is None else (row[0], row[1])


async def reloaded(session: AsyncSession, *, rows: tuple) -> None:
    """Read ``rows`` again after a flush (the defaults and stamps the database gave them)."""
    for row in rows:
        await session.refresh(row)


# The user behind the token and one page of their providers with the total (a window count,
# taken before LIMIT), in one statement: no row means the account is gone or inactive; one row
# of NULLs, an account with nothing on this page. The id leaves as the string it is in JSON
# (asyncpg's UUID takes pydantic_core's slow path).
_PAGE = f"""
WITH page AS (
    SELECT p.id::text AS id, p.provider_key, p.alias, c.status, p.created_at, p.updated_at,
           count(*) OVER () AS total
    FROM providers p
    JOIN provider_connections c ON c.provider_id = p.id
    WHERE p.user_id = $1
    ORDER BY p.created_at, p.id
    LIMIT $2 OFFSET $3
)
SELECT page.* FROM {PERSON} LEFT JOIN page ON true WHERE {ACTIVE_PERSON}
"""  # noqa: S608 (fixed fragments)
_TOTAL = "SELECT count(*) FROM providers WHERE user_id = $1"


async def providers_page(
    reader: Reader, *, user_id: uuid.UUID, limit: int, offset: int
) -> list[asyncpg.Record]:
    """One page of the person's providers, each row with the total (one row of NULLs: nothing
    on this page); Unauthorized when the person may not sign in."""
    return await rows_of_active_person(reader, _PAGE, user_id, limit, offset)


async def providers_count(reader: Reader, *, user_id: uuid.UUID) -> int:
    """How many providers the person has."""
    return (await reader.fetch(_TOTAL, user_id))[0][0]


async def first_provider_of(
    session: AsyncSession, *, user_id: uuid.UUID, keys: list[str]
) -> tuple[Provider, ProviderConnection] | None:
    """The person's oldest provider of one of these types, with its connection."""
    row = (
        await session.execute(
            select(Provider, ProviderConnection)
            .join(ProviderConnection, ProviderConnection.provider_id == Provider.id)
            .where(Provider.user_id == user_id, Provider.provider_key.in_(keys))
            .order_by(Provider.created_at, Provider.id)
            .limit(1)
        )
    ).first()
    return None if row is None else (row[0], row[1])
