"""Password reset by mail: a single-use link that works PASSWORD_RESET_MINUTES.

Asking answers the same 202, as fast, whether the address has an account or not: the lookup,
the link and the mail happen after the answer (in the background), so neither the answer nor
its timing tells anyone which addresses exist. Only the token's SHA-256 is kept. Using the link
sets the password, uses up every other link of the account, and ends every session.
"""

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.audit import service as audit
from dashtam_api.auth import queries
from dashtam_api.auth.ended_sessions import EndedSessions
from dashtam_api.auth.security import Passwords
from dashtam_api.auth.service import end_sessions, others
from dashtam_api.context import AppContext
from dashtam_api.errors import NotFound, ProblemError
from dashtam_models import PasswordReset, SessionEnd, User

PREFIX = "dtr_"


class MailUnavailable(ProblemError):
    """This instance is set up to send no mail: a state of the server, not an outage (409)."""

    status = 409

    def __init__(self) -> None:
        super().__init__(
            "This instance sends no mail (SMTP_URL is empty): an administrator can set a new "
            "password with `inv user-reset-password`.",
            needs="mail",
        )


# What asking for a reset answers, whether the address has an account or not.
ASKED = "If an account has this address, a link to reset its password is on its way."


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link(settings, token: str) -> str:
    return f"{settings.API_BASE_URL.rstrip('/')}/reset-password?token={token}"


def ask(*, ctx: AppContext, email: str, where: dict) -> None:
    """Send a link if the address has an account, after the answer; the answer is the same."""
    if not ctx.mailer.enabled:
        raise MailUnavailable()
    ctx.in_background("a password reset mail", _send_link(ctx, email, where))


async def _send_link(ctx: AppContext, email: str, where: dict) -> None:
    settings, mailer = ctx.settings, ctx.mailer
    token = PREFIX + secrets.token_urlsafe(32)
    async with ctx.sessions() as session:
        user = await queries.user_by_email(session, email=email)
        if user is None or not user.is_active:
            return
        session.add(
            PasswordReset(
                user_id=user.id,
                token_hash=_hash(token),
                expires_at=datetime.now(UTC) + timedelta(minutes=settings.PASSWORD_RESET_MINUTES),
            )
        )
        await audit.security(
            session=session, action="password_reset_requested", user_id=user.id, **where
        )
        await session.commit()
        to = user.email
    minutes = settings.PASSWORD_RESET_MINUTES
    text = (
        "Someone (we hope you) asked to reset the password of your Dashtam account.\n\n"
        f"Choose a new password here, within {minutes} minutes (the link works once):\n\n"
        f"  {link(settings, token)}\n\n"
        "Every device signed in to the account is signed out when you do.\n"
        "If you did not ask, ignore this mail: your password stays as it is.\n"
    )
    await mailer.send(mailer.message(to=to, subject="Reset your Dashtam password", text=text))


async def complete(
    *,
    session: AsyncSession,
    passwords: Passwords,
    ended: EndedSessions,
    token: str,
    password: str,
    where: dict,
) -> User:
    """Set the new password with a valid link; every session of the account ends."""
    reset = await queries.open_reset_for_update(session, token_hash=_hash(token))
    if reset is None:
        raise NotFound(
            "This reset link does not work: it was used, it expired, or it was never sent. "
            "Ask for a new one.",
            parameter="token",
        )
    user = await queries.user_by_id(session, user_id=reset.user_id)
    now = datetime.now(UTC)
    # this link, and every other still open for the account
    await queries.use_up_resets(session, user_id=user.id, now=now)
    user.password_hash = await passwords.hash(password)
    await audit.security(
        session=session, action="password_reset", user_id=user.id, details={"by": "mail"}, **where
    )
    await end_sessions(
        session=session,
        ended=ended,
        ids=await others(session=session, user=user, keep=None),
        reason=SessionEnd.PASSWORD_CHANGED,
        where=where,
    )
    await session.flush()
    return user
