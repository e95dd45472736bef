"""connection.reauth_required: once per connection and authorization period, when the refresh
token ends within WEBHOOK_REAUTH_NOTICE_HOURS (Schwab's after seven days): the person has that
long to sign in again before the numbers stop moving.

One statement marks the connections (``reauth_notice_for`` = the deadline it warned of, so a
reconnection, with its new deadline, is warned again) and writes their events into the outbox
in the same transaction; rows a refresh holds are skipped until the next round.
"""

from sqlalchemy import text

from dashtam_api.context import AppContext

NOTIFY_REAUTH = text(
    """
    WITH due AS (
        SELECT c.id, c.provider_id, p.user_id, t.refresh_expires_at AS deadline
          FROM provider_connections c
          JOIN provider_tokens t ON t.connection_id = c.id
          JOIN providers p ON p.id = c.provider_id
         WHERE c.status = 'active'
           AND t.refresh_expires_at > now()
           AND t.refresh_expires_at <= now() + make_interval(hours => :hours)
           AND c.reauth_notice_for IS DISTINCT FROM t.refresh_expires_at
           FOR UPDATE OF c SKIP LOCKED
    ), marked AS (
        UPDATE provider_connections c
           SET reauth_notice_for = due.deadline
          FROM due
         WHERE c.id = due.id
        RETURNING due.*
    )
    SELECT webhook_emit(m.user_id, 'connection.reauth_required', jsonb_build_object(
               'connection_id', m.id,
               'provider_id', m.provider_id,
               'status', 'active',
               'reconnect_by', m.deadline))
      FROM marked m
    """
)


async def reauth_required(ctx: AppContext) -> int:
    """Warn of the connections whose authorization ends soon; how many were warned."""
    async with ctx.sessions() as session:
        warned = len(
            (
                await session.execute(
                    NOTIFY_REAUTH, {"hours": ctx.settings.WEBHOOK_REAUTH_NOTICE_HOURS}
                )
            ).all()
        )
        await session.commit()
    return warned
