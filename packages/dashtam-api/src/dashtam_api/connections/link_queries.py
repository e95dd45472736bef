"""The statements of connecting a provider of kind ``link`` (Plaid): its accounts re-keyed on a
new Link, the connection a webhook's item names, the notice that its consent ends."""

import json
import uuid

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_models import Account


async def accounts_of(session: AsyncSession, *, connection_id: uuid.UUID) -> list:
    """The connection's accounts (external_id, account_type, name, number_last4)."""
    found = await session.execute(
        select(Account.external_id, Account.account_type, Account.name, Account.number_last4)
        .where(Account.connection_id == connection_id)
    )  # fmt: skip
    return found.all()


async def rekey_account(
    session: AsyncSession, *, connection_id: uuid.UUID, old: str, new: str
) -> None:
    """The account the institution now names ``new`` keeps its row (and everything on it)."""
    await session.execute(
        update(Account)
        .where(Account.connection_id == connection_id, Account.external_id == old)
        .values(external_id=new)
    )


ITEM = text(
    """
    SELECT id FROM provider_connections
     WHERE source_state ? 'item_id' AND source_state ->> 'item_id' = :item_id
    """
)


async def connection_of_item(session: AsyncSession, *, item_id: str) -> uuid.UUID | None:
    """The connection holding the item (the expression index answers)."""
    return await session.scalar(ITEM, {"item_id": item_id})


REAUTH = text(
    """
    SELECT webhook_emit(p.user_id, 'connection.reauth_required', jsonb_build_object(
               'connection_id', c.id,
               'provider_id', c.provider_id,
               'status', c.status,
               'reconnect_by', CAST(:reconnect_by AS timestamptz)))
      FROM provider_connections c JOIN providers p ON p.id = c.provider_id
     WHERE c.id = :connection_id AND c.status = 'active'
    """
)


async def notify_reauth(session: AsyncSession, *, connection_id: uuid.UUID, reconnect_by) -> None:
    """connection.reauth_required into the outbox (an active connection's only)."""
    await session.execute(REAUTH, {"connection_id": connection_id, "reconnect_by": reconnect_by})


MARK = text(
    """
    UPDATE provider_connections
       SET source_state = coalesce(source_state, '{}'::jsonb) || CAST(:marks AS jsonb)
     WHERE id = :connection_id
    """
)


async def mark_state(session: AsyncSession, *, connection_id: uuid.UUID, marks: dict) -> None:
    """Keys set in the connection's source state (what a webhook tells its next read)."""
    await session.execute(MARK, {"connection_id": connection_id, "marks": json.dumps(marks)})
