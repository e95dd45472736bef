"""connection.reauth_required: once per connection and authorization period, when the refresh
token ends within WEBHOOK_REAUTH_NOTICE_HOURS (Schwab's after seven days): the person has that
long to sign in again before the numbers stop moving.

One statement marks the connections (``reauth_notice_for`` = the deadline it warned of, so a
reconnection, with its new deadline, is warned again) and writes their events into the outbox
in the same transaction; rows a refresh holds are skipped until the next round.
"""

from dashtam_api.context import AppContext
from dashtam_api.webhooks import queries


async def reauth_required(ctx: AppContext) -> int:
    """Warn of the connections whose authorization ends soon; how many were warned."""
    async with ctx.sessions() as session:
        warned = await queries.notify_reauth(
            session, hours=ctx.settings.WEBHOOK_REAUTH_NOTICE_HOURS
        )
        await session.commit()
    return warned
