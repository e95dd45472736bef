"""Every statement of the metrics' scrape: what is counted at scrape time in the database."""

from sqlalchemy import func, select, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_models import ProviderConnection


async def connections_by_status(session: AsyncSession) -> list[Row]:
    """(status, count) of the provider connections, for each status that has any."""
    rows = await session.execute(
        select(ProviderConnection.status, func.count()).group_by(ProviderConnection.status)
    )
    return list(rows.all())


OUTBOX = text(
    """
    SELECT count(*) AS due,
           coalesce(extract(epoch FROM now() - min(next_attempt_at)), 0) AS oldest
      FROM webhook_deliveries
     WHERE status = 'pending' AND next_attempt_at <= now()
    """
)


async def outbox(session: AsyncSession) -> Row:
    """How many webhook deliveries are due (``due``) and the oldest's wait in seconds
    (``oldest``)."""
    return (await session.execute(OUTBOX)).one()
