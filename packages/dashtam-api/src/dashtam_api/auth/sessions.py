"""A person's sessions: listed with where they were made and with what, ended one or all; and
their own security audit."""

import functools
import uuid

import ua_parser
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.auth import queries
from dashtam_api.auth.ended_sessions import EndedSessions
from dashtam_api.auth.service import end_sessions, others
from dashtam_api.cursors import decode_cursor, encode_cursor
from dashtam_api.errors import NotFound
from dashtam_models import SessionEnd, User


@functools.lru_cache(maxsize=1024)
def device(user_agent: str | None) -> str:
    """A label people recognise: "Firefox 128 on Linux", "curl 8.5", "Chrome on Android"."""
    if not user_agent:
        return "unknown"
    agent = ua_parser.parse_user_agent(user_agent)
    system = ua_parser.parse_os(user_agent)
    name = "unknown"
    if agent is not None and agent.family != "Other":
        name = f"{agent.family} {agent.major}" if agent.major else agent.family
    elif user_agent.split("/", 1)[0].strip():
        # Scripts and tools: python-httpx/0.28.1, okhttp/4.12 ...
        tool, _, version = user_agent.partition(" ")[0].partition("/")
        name = f"{tool} {version.split('.')[0]}".strip() if version else tool
    if system is not None and system.family != "Other":
        return f"{name} on {system.family}"
    return name


async def listed(*, session: AsyncSession, user: User, current: uuid.UUID | None) -> dict:
    rows = await queries.open_sessions(session, user_id=user.id)
    return {
        "items": [
            {
                "id": row.id,
                "created_at": row.created_at,
                "last_used_at": row.last_used_at,
                "ip": row.ip,
                "user_agent": row.user_agent,
                "device": device(row.user_agent),
                "current": row.id == current,
            }
            for row in rows
        ]
    }


async def end_one(
    *,
    session: AsyncSession,
    ended: EndedSessions,
    user: User,
    session_id: uuid.UUID,
    where: dict,
) -> None:
    owned = await queries.open_session_id(session, user_id=user.id, session_id=session_id)
    if owned is None:
        raise NotFound("No such open session.")
    await end_sessions(session=session, ended=ended, ids=[owned], reason=SessionEnd.ENDED_BY_USER)


async def end_others(
    *,
    session: AsyncSession,
    ended: EndedSessions,
    user: User,
    current: uuid.UUID | None,
    where: dict,
) -> int:
    """Every open session of the person but the one asking; how many ended."""
    return await end_sessions(
        session=session,
        ended=ended,
        ids=await others(session=session, user=user, keep=current),
        reason=SessionEnd.ENDED_BY_USER,
        where=where,
    )


async def security_events(
    *, session: AsyncSession, user: User, limit: int, cursor: str | None
) -> dict:
    """The person's own security audit, newest first (`cursor` pages)."""
    rows = await queries.security_events(
        session,
        user_id=user.id,
        limit=limit + 1,  # one more tells whether there is a next page
        before=None if cursor is None else decode_cursor(cursor),
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [
            {
                "id": row.id,
                "action": row.action,
                "details": row.details,
                "ip": str(row.ip_address) if row.ip_address else None,
                "device": device(row.user_agent),
                "created_at": row.created_at,
            }
            for row in rows
        ],
        "limit": limit,
        "next_cursor": encode_cursor(rows[-1].created_at, rows[-1].id) if more else None,
    }
