"""Users and their sessions. Services never commit: the router does, at the request boundary."""

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.audit import service as audit
from dashtam_api.auth import invitations, queries, security, totp
from dashtam_api.auth.ended_sessions import EndedSessions
from dashtam_api.auth.schemas import TokenPair
from dashtam_api.auth.security import Passwords
from dashtam_api.errors import Conflict, Forbidden, TooManyRequests, Unauthorized
from dashtam_api.storable_text import strip_nul
from dashtam_api.throttle import Throttle
from dashtam_core.config import Settings
from dashtam_core.vault import Vault
from dashtam_models import RefreshToken, SessionEnd, User, UserSession


async def register(
    *,
    session: AsyncSession,
    settings: Settings,
    passwords: Passwords,
    email: str,
    password: str,
    name: str,
    invitation: str | None = None,
    where: dict | None = None,
) -> User:
    """Create a user, as REGISTRATION allows (an invitation is used up with it); a taken
    e-mail (case-insensitively) is a conflict."""
    if settings.registration == "closed":
        raise Forbidden(
            "Registration is closed on this instance: an administrator creates accounts.",
            needs="administrator",
        )
    invited = (
        await invitations.use(session=session, token=invitation, email=email)
        if settings.registration == "invite"
        else None
    )
    user = User(email=email, name=name, password_hash=await passwords.hash(password))
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict("An account with this e-mail already exists.") from None
    await queries.reloaded(session, rows=(user,))
    details = {}
    if invited is not None:
        invited.used_at, invited.used_by = datetime.now(UTC), user.id
        details["invitation_id"] = str(invited.id)
    await audit.security(
        session=session, action="registered", user_id=user.id, details=details, **(where or {})
    )
    return user


def _throttle(*, redis: Redis, settings: Settings, email: str, ip: str | None) -> Throttle:
    """Passwords and second-factor codes count together, per e-mail and address (throttle.py)."""
    return Throttle(redis=redis, settings=settings, scope="login", credential=email, address=ip)


async def _refuse(
    *,
    session: AsyncSession,
    throttle: Throttle,
    user_id: uuid.UUID | None,
    details: dict,
    where: dict,
) -> None:
    """Count a failure (passwords and second-factor codes alike) and audit it; an address
    failing across many credentials is told to wait (429) instead of 401."""
    address_wait = await throttle.failed()
    await audit.security(
        session=session, action="sign_in_failed", user_id=user_id, details=details, **where
    )
    if address_wait:
        raise TooManyRequests(
            "Wrong e-mail or password, and too many failed sign-ins from this address: wait "
            "before trying again (a right password is still accepted).",
            retry_after=address_wait,
        )


async def _throttled(
    *,
    session: AsyncSession,
    throttle: Throttle,
    email: str,
    where: dict,
    user_id: uuid.UUID | None = None,
    slowed: bool = True,
) -> None:
    """Refuse (429) while this e-mail must wait from this address, audited."""
    retry_after = await throttle.wait(slowed=slowed)
    if retry_after:
        await audit.security(
            session=session,
            action="sign_in_failed",
            user_id=user_id,
            details={"email": email, "reason": "throttled"},
            **where,
        )
        raise TooManyRequests("Too many failed logins; try again later.", retry_after=retry_after)


async def login(
    *,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    passwords: Passwords,
    email: str,
    password: str,
    user_agent: str | None,
    ip: str | None,
) -> TokenPair | dict:
    """Check the password (throttled per e-mail) and open a new session, or, with a second
    factor on, answer a short-lived challenge that login_second_factor completes. A refusal
    leaves its security audit row in the session, which SignInSessionDep keeps."""
    where = {"ip": ip, "user_agent": user_agent}
    throttle = _throttle(redis=redis, settings=settings, email=email, ip=ip)
    await _throttled(session=session, throttle=throttle, email=email, where=where)
    user = await queries.user_by_email(session, email=email)
    valid = await passwords.verify(password, user.password_hash if user else None)
    if not user or not valid or not user.is_active:
        reason = "unknown_email" if not user else "inactive" if valid else "wrong_password"
        await _refuse(
            session=session,
            throttle=throttle,
            user_id=user.id if user else None,
            details={"email": email, "reason": reason},
            where=where,
        )
        raise Unauthorized("Wrong e-mail or password.", error="invalid_grant")
    if user.totp_enabled_at is not None:
        challenge = secrets.token_urlsafe(32)
        await redis.set(
            _challenge_key(challenge), str(user.id), ex=settings.SECOND_FACTOR_CHALLENGE_SECONDS
        )
        return {
            "second_factor_required": True,
            "challenge": challenge,
            "expires_in": settings.SECOND_FACTOR_CHALLENGE_SECONDS,
        }
    await throttle.succeeded()
    return await open_session(session=session, settings=settings, user=user, where=where)


def _challenge_key(challenge: str) -> str:
    return f"auth:second-factor:{hashlib.sha256(challenge.encode()).hexdigest()}"


async def login_second_factor(
    *,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    vault: Vault,
    challenge: str,
    code: str | None,
    recovery_code: str | None,
    user_agent: str | None,
    ip: str | None,
) -> TokenPair:
    """Complete a sign-in with a TOTP code (good once) or an unused recovery code. Wrong codes
    count against the address as wrong passwords do; a challenge takes at most
    SECOND_FACTOR_ATTEMPTS."""
    where = {"ip": ip, "user_agent": user_agent}
    challenge_key = _challenge_key(challenge)
    user_id = await redis.get(challenge_key)
    if isinstance(user_id, bytes):
        user_id = user_id.decode()
    user = await queries.user_by_id(session, user_id=uuid.UUID(user_id)) if user_id else None
    if user is None or not user.is_active or user.totp_enabled_at is None:
        raise Unauthorized(
            "This sign-in challenge is unknown or has expired: sign in again.",
            error="invalid_grant",
        )
    throttle = _throttle(redis=redis, settings=settings, email=user.email, ip=ip)
    # Only a right password reaches this step: the lock of this e-mail and address applies
    # (wrong codes count with wrong passwords), the slowing of a much-guessed e-mail does not.
    await _throttled(
        session=session,
        throttle=throttle,
        email=user.email,
        where=where,
        user_id=user.id,
        slowed=False,
    )
    used = await totp.check(
        session=session, vault=vault, user=user, code=code, recovery_code=recovery_code
    )
    if used is None:
        attempts = await redis.hincrby(f"{challenge_key}:attempts", "n", 1)
        await redis.expire(f"{challenge_key}:attempts", settings.SECOND_FACTOR_CHALLENGE_SECONDS)
        if attempts >= settings.SECOND_FACTOR_ATTEMPTS:
            await redis.delete(challenge_key)
        await _refuse(
            session=session,
            throttle=throttle,
            user_id=user.id,
            details={"email": user.email, "reason": "wrong_second_factor"},
            where=where,
        )
        raise Unauthorized("That code is not valid (or was used already).", error="invalid_grant")
    await redis.delete(challenge_key, f"{challenge_key}:attempts")
    await throttle.succeeded()
    if used == "recovery_code":
        await audit.security(session=session, action="recovery_code_used", user_id=user.id, **where)
    return await open_session(
        session=session, settings=settings, user=user, where=where, second_factor=used
    )


async def open_session(
    *,
    session: AsyncSession,
    settings: Settings,
    user: User,
    where: dict,
    second_factor: str | None = None,
) -> TokenPair:
    """A new session for the person, and its first tokens."""
    now = datetime.now(UTC)
    user_agent = strip_nul(where.get("user_agent") or "")[:300] or None
    opened = UserSession(
        id=uuid.uuid4(),
        user_id=user.id,
        last_used_at=now,
        ip=where.get("ip"),
        user_agent=user_agent,
    )
    session.add(opened)
    await session.flush()
    details = {"session_id": str(opened.id)}
    if second_factor:
        details["second_factor"] = second_factor
    await audit.security(
        session=session, action="signed_in", user_id=user.id, details=details, **where
    )
    return await _issue(
        session=session,
        settings=settings,
        user_id=user.id,
        family_id=opened.id,
        user_agent=user_agent,
    )


async def _issue(
    *,
    session: AsyncSession,
    settings: Settings,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    user_agent: str | None,
) -> TokenPair:
    refresh = security.new_refresh_token()
    session.add(
        RefreshToken(
            user_id=user_id,
            family_id=family_id,
            token_hash=security.hash_refresh_token(refresh),
            expires_at=datetime.now(UTC) + timedelta(days=settings.REFRESH_TOKEN_DAYS),
            user_agent=strip_nul(user_agent or "")[:300] or None,
        )
    )
    await session.flush()
    access, expires_in = security.create_access_token(
        user_id=user_id,
        session_id=family_id,
        secret=settings.SECRET_KEY,
        minutes=settings.ACCESS_TOKEN_MINUTES,
    )
    return TokenPair(access_token=access, expires_in=expires_in, refresh_token=refresh)


async def refresh(
    *,
    session: AsyncSession,
    settings: Settings,
    ended: EndedSessions,
    token: str,
    user_agent: str | None,
    ip: str | None,
) -> TokenPair:
    """Rotate: the presented token stops working; presenting a rotated one ends its session."""
    row = await queries.refresh_token(
        session, token_hash=security.hash_refresh_token(token), for_update=True
    )
    now = datetime.now(UTC)
    if row is None:
        raise Unauthorized("Unknown refresh token.", error="invalid_grant")
    if row.revoked_at is not None:
        # Someone holds a token that was already rotated: assume theft, end the whole session.
        await end_sessions(
            session=session,
            ended=ended,
            ids=[row.family_id],
            reason=SessionEnd.TOKEN_REUSE,
            where={"ip": ip, "user_agent": user_agent},
        )
        raise Unauthorized(
            "This refresh token was already used; the session is closed.", error="invalid_grant"
        )
    if row.expires_at <= now:
        raise Unauthorized("The refresh token has expired.", error="invalid_grant")
    row.revoked_at = now
    await queries.touch_session(session, session_id=row.family_id, now=now, ip=ip)
    return await _issue(
        session=session,
        settings=settings,
        user_id=row.user_id,
        family_id=row.family_id,
        user_agent=user_agent,
    )


async def end_sessions(
    *,
    session: AsyncSession,
    ended: EndedSessions,
    ids: list[uuid.UUID],
    reason: SessionEnd,
    where: dict | None = None,
) -> int:
    """End these sessions (those not ended yet): their refresh tokens stop now, their access
    tokens within SESSION_SYNC_SECONDS in every process (at once in this one). Each is audited
    (``where``: the ip and user agent of the request that ended them)."""
    now = datetime.now(UTC)
    ending = await queries.end_open_sessions(session, ids=ids, now=now, reason=reason.value)
    for session_id, user_id in ending:
        await audit.security(
            session=session,
            action="session_ended",
            user_id=user_id,
            details={"session_id": str(session_id), "reason": reason.value},
            **(where or {}),
        )
    await queries.revoke_refresh_tokens(session, family_ids=ids, now=now)
    # Before the caller commits: if Valkey cannot take it, nothing ends (503).
    await ended.end(ids)
    return len(ending)


async def logout(
    *, session: AsyncSession, ended: EndedSessions, user: User, token: str, where: dict
) -> None:
    """End the session the refresh token belongs to (idempotent for the caller's own tokens)."""
    row = await queries.refresh_token(session, token_hash=security.hash_refresh_token(token))
    if row is not None and row.user_id == user.id:
        await end_sessions(
            session=session,
            ended=ended,
            ids=[row.family_id],
            reason=SessionEnd.LOGOUT,
            where=where,
        )


async def others(*, session: AsyncSession, user: User, keep: uuid.UUID | None) -> list[uuid.UUID]:
    """The person's open sessions but ``keep``."""
    return await queries.open_session_ids(session, user_id=user.id, keep=keep)


async def update_me(
    *,
    session: AsyncSession,
    passwords: Passwords,
    ended: EndedSessions,
    user: User,
    current: uuid.UUID | None,
    name: str | None,
    password: str | None,
    current_password: str | None,
    where: dict | None = None,
) -> User:
    """Name and password; a new password ends every other session of the person (a session
    someone stole ends with it)."""
    if name is not None:
        user.name = name
    if password is not None:
        if not current_password or not await passwords.verify(current_password, user.password_hash):
            # A well-formed request refused for who is asking: 403, not a malformed one (400).
            raise Forbidden("Setting a new password needs the current one as current_password.")
        user.password_hash = await passwords.hash(password)
        await audit.security(
            session=session, action="password_changed", user_id=user.id, **(where or {})
        )
        await end_sessions(
            session=session,
            ended=ended,
            ids=await others(session=session, user=user, keep=current),
            reason=SessionEnd.PASSWORD_CHANGED,
            where=where,
        )
    await session.flush()
    await queries.reloaded(session, rows=(user,))
    return user
