"""What a verified Plaid webhook does to the connection holding its item:

- ``TRANSACTIONS`` / ``SYNC_UPDATES_AVAILABLE`` (and the legacy update codes),
  ``INVESTMENTS_TRANSACTIONS`` and ``HOLDINGS`` updates: a sync of the connection, started
  after the answer (Plaid wants one within seconds), as the sync loop starts one
  (sync/service.sync_wanted: the claim keeps it from running twice at once, and one asked for
  while another runs is run once that one is done);
  ``INVESTMENTS_TRANSACTIONS`` / ``HISTORICAL_UPDATE`` first marks the source state
  (``investments_history``): the item's whole investment history is there, and the next read
  that asks for it takes it as complete (sources/plaid.py, step 3);
- ``ITEM`` / ``ERROR`` with an error only the person mends (``ITEM_LOGIN_REQUIRED``, ...): the
  connection turns ``error`` with the reason and the way back (Link in update mode), which its
  person's webhooks hear as ``connection.error``;
- ``ITEM`` / ``PENDING_EXPIRATION`` (the item's consent ends at ``consent_expiration_time``)
  and ``PENDING_DISCONNECT`` (the bank ends it at ``disconnect_time``): the connection still
  works; its person's webhooks hear ``connection.reauth_required`` with that moment as
  ``reconnect_by``, and the notice stays open in its source state (``reauth``) until a Link
  in update mode renews it (POST .../authorization answers one: connections/link.py);
- ``ITEM`` / ``LOGIN_REPAIRED``: a connection in error for its login is active again.

An item no connection holds (deleted since, another deployment's) is acknowledged and left.
"""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.connections import link_queries, refresh
from dashtam_api.context import AppContext
from dashtam_api.sources.plaid_api import FIX_WITH_LINK, LOGIN
from dashtam_api.sync import queries as sync_queries
from dashtam_api.sync import service as sync
from dashtam_api.unit_of_work import after_commit
from dashtam_models import ConnectionStatus

SYNC_CODES = frozenset(
    {"SYNC_UPDATES_AVAILABLE", "DEFAULT_UPDATE", "INITIAL_UPDATE", "HISTORICAL_UPDATE"}
)
INVESTMENT_SYNCS = {
    "INVESTMENTS_TRANSACTIONS": frozenset({"DEFAULT_UPDATE", "HISTORICAL_UPDATE"}),
    "HOLDINGS": frozenset({"DEFAULT_UPDATE"}),
}
ENDING = frozenset({"PENDING_EXPIRATION", "PENDING_DISCONNECT"})


async def received(*, ctx: AppContext, session: AsyncSession, body: dict) -> str:
    """What was done: ``sync``, ``needs_person``, ``repaired``, ``ignored`` or ``unknown_item``."""
    item_id = body.get("item_id")
    kind, code = body.get("webhook_type"), body.get("webhook_code")
    if not isinstance(item_id, str):
        return "ignored"
    connection_id = await link_queries.connection_of_item(session, item_id=item_id)
    if connection_id is None:
        return "unknown_item"
    if kind == "INVESTMENTS_TRANSACTIONS" and code == "HISTORICAL_UPDATE":
        await link_queries.mark_state(
            session, connection_id=connection_id, marks={"investments_history": True}
        )
    if (kind == "TRANSACTIONS" and code in SYNC_CODES) or code in INVESTMENT_SYNCS.get(kind, ()):
        # Once the request's transaction has ended: the sync opens transactions of its own.
        after_commit(
            session,
            lambda: ctx.in_background(
                f"the sync a Plaid webhook asked for (connection {connection_id})",
                sync.sync_wanted(ctx, connection_id, trigger=refresh.Trigger.BACKGROUND),
            ),
        )
        return "sync"
    if kind != "ITEM":
        return "ignored"
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    error_code = str(error.get("error_code") or "")
    if code == "ERROR" and error_code in LOGIN:
        message = str(error.get("error_message") or "Plaid says the bank needs a new sign-in")
        await sync_queries.needs_person(
            session,
            connection_id=connection_id,
            error=f"{error_code}: Plaid: {message}: {FIX_WITH_LINK}"[:500],
        )
        return "needs_person"
    if code in ENDING:
        ends = body.get("consent_expiration_time") or body.get("disconnect_time")
        try:
            reconnect_by = datetime.fromisoformat(str(ends).replace("Z", "+00:00"))
        except ValueError:
            reconnect_by = None
        await link_queries.notify_reauth(
            session, connection_id=connection_id, reconnect_by=reconnect_by
        )
        reauth = {"code": code, "reconnect_by": reconnect_by and reconnect_by.isoformat()}
        await link_queries.mark_state(
            session, connection_id=connection_id, marks={"reauth": reauth}
        )
        return "reauth_required"
    if code == "LOGIN_REPAIRED":
        connection = await sync_queries.locked_connection(session, connection_id=connection_id)
        if (
            connection is not None
            and connection.status == ConnectionStatus.ERROR
            and ((connection.error_message or "").split(":")[0] in LOGIN)
        ):
            connection.status = ConnectionStatus.ACTIVE.value
            connection.error_message = None
        return "repaired"
    return "ignored"
