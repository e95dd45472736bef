"""Proving an address by mail: a single-use link (EMAIL_VERIFICATION_HOURS) sent when the
account is made (when the instance sends mail) or asked for again; opening it and confirming
sets ``users.email_verified_at``. Only the token's SHA-256 is kept; the link proves the address
it was sent to. The page asks for a click before it verifies: mail scanners open links."""

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.audit import service as audit
from dashtam_api.auth import queries
from dashtam_api.auth.resets import MailUnavailable
from dashtam_api.context import AppContext
from dashtam_api.errors import Conflict, NotFound
from dashtam_models import EmailVerification, User

PREFIX = "dtv_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def schedule(*, ctx: AppContext, user_id: uuid.UUID) -> None:
    """After the account is committed: mail a link, in the background (when mail is on)."""
    if ctx.mailer.enabled:
        ctx.in_background("a verification mail", _send(ctx, user_id))


def resend(*, ctx: AppContext, user: User) -> None:
    if user.email_verified_at is not None:
        raise Conflict("This address is verified already.")
    if not ctx.mailer.enabled:
        raise MailUnavailable()
    ctx.in_background("a verification mail", _send(ctx, user.id))


async def _send(ctx: AppContext, user_id: uuid.UUID) -> None:
    settings, mailer = ctx.settings, ctx.mailer
    token = PREFIX + secrets.token_urlsafe(32)
    async with ctx.sessions() as session:
        user = await queries.user_by_id(session, user_id=user_id)
        if user is None or user.email_verified_at is not None:
            return
        session.add(
            EmailVerification(
                user_id=user.id,
                email=user.email,
                token_hash=_hash(token),
                expires_at=datetime.now(UTC) + timedelta(hours=settings.EMAIL_VERIFICATION_HOURS),
            )
        )
        await session.commit()
        to = user.email
    url = f"{settings.API_BASE_URL.rstrip('/')}/verify-email?token={token}"
    text = (
        "Please confirm that this address is yours, for your Dashtam account:\n\n"
        f"  {url}\n\n"
        f"The link works once, for {settings.EMAIL_VERIFICATION_HOURS} hours. If you made no "
        "account, ignore this mail.\n"
    )
    await mailer.send(mailer.message(to=to, subject="Confirm your address for Dashtam", text=text))


async def verify(*, session: AsyncSession, token: str, where: dict) -> User:
    link = await queries.open_verification_for_update(session, token_hash=_hash(token))
    user = await queries.user_by_id(session, user_id=link.user_id) if link else None
    if link is None or user is None or user.email.lower() != link.email.lower():
        raise NotFound(
            "This confirmation link does not work: it was used, it expired, or the address "
            "changed since. Ask for a new one.",
            parameter="token",
        )
    now = datetime.now(UTC)
    await queries.use_up_verifications(session, user_id=user.id, now=now)
    user.email_verified_at = now
    await audit.security(
        session=session,
        action="email_verified",
        user_id=user.id,
        details={"email": user.email},
        **where,
    )
    await session.flush()
    return user
