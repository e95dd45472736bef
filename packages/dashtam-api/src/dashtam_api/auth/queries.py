"""Every statement of auth: people, their sessions and refresh tokens, the security audit they
read, invitations, reset and verification links, the second factor's steps and recovery codes."""

import uuid
from datetime import datetime

from sqlalchemy import delete, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_models import (
    EmailVerification,
    Invitation,
    PasswordReset,
    RecoveryCode,
    RefreshToken,
    SecurityAuditLog,
    User,
    UserSession,
)

# --- people ---------------------------------------------------------------------------------


async def user_by_id(session: AsyncSession, *, user_id: uuid.UUID) -> User | None:
    """The person with this id (a primary-key load, from the session's identity map if there)."""
    return await session.get(User, user_id)


async def user_by_email(session: AsyncSession, *, email: str) -> User | None:
    """The person with this e-mail address."""
    return await session.scalar(select(User).where(User.email == email))


async def reloaded(session: AsyncSession, *, rows: tuple) -> None:
    """Read ``rows`` again after a flush (the defaults and stamps the database gave them)."""
    for row in rows:
        await session.refresh(row)


# --- sessions and refresh tokens --------------------------------------------------------------


async def refresh_token(
    session: AsyncSession, *, token_hash: str, for_update: bool = False
) -> RefreshToken | None:
    """The refresh token with this hash (locked for update when asked)."""
    query = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
    return await session.scalar(query.with_for_update() if for_update else query)


async def touch_session(
    session: AsyncSession, *, session_id: uuid.UUID, now: datetime, ip: str | None
) -> None:
    """Record a session's use now (and from where, when known)."""
    await session.execute(
        update(UserSession)
        .where(UserSession.id == session_id)
        .values(last_used_at=now, ip=ip or UserSession.ip)
    )


async def end_open_sessions(
    session: AsyncSession, *, ids: list[uuid.UUID], now: datetime, reason: str
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """End those of these sessions still open; (session id, user id) of each ended."""
    return list(
        (
            await session.execute(
                update(UserSession)
                .where(UserSession.id.in_(ids), UserSession.ended_at.is_(None))
                .values(ended_at=now, end_reason=reason)
                .returning(UserSession.id, UserSession.user_id)
            )
        ).all()
    )


async def revoke_refresh_tokens(
    session: AsyncSession, *, family_ids: list[uuid.UUID], now: datetime
) -> None:
    """Revoke the refresh tokens of these sessions not revoked yet."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id.in_(family_ids), RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def open_session_ids(
    session: AsyncSession, *, user_id: uuid.UUID, keep: uuid.UUID | None
) -> list[uuid.UUID]:
    """The ids of the person's open sessions but ``keep``."""
    query = select(UserSession.id).where(
        UserSession.user_id == user_id, UserSession.ended_at.is_(None)
    )
    if keep is not None:
        query = query.where(UserSession.id != keep)
    return list((await session.scalars(query)).all())


async def open_sessions(session: AsyncSession, *, user_id: uuid.UUID) -> list[UserSession]:
    """The person's open sessions, the most recently used first."""
    rows = await session.scalars(
        select(UserSession)
        .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
        .order_by(UserSession.last_used_at.desc(), UserSession.id)
    )
    return list(rows)


async def open_session_id(
    session: AsyncSession, *, user_id: uuid.UUID, session_id: uuid.UUID
) -> uuid.UUID | None:
    """``session_id`` if it is an open session of the person's, else None."""
    return await session.scalar(
        select(UserSession.id).where(
            UserSession.id == session_id,
            UserSession.user_id == user_id,
            UserSession.ended_at.is_(None),
        )
    )


async def security_events(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[SecurityAuditLog]:
    """Up to ``limit`` of the person's security audit rows, newest first, older than ``before``
    ((created_at, id)) when given."""
    query = select(SecurityAuditLog).where(SecurityAuditLog.user_id == user_id)
    if before is not None:
        at, event_id = before
        query = query.where(
            tuple_(SecurityAuditLog.created_at, SecurityAuditLog.id) < tuple_(at, event_id)
        )
    return list(
        (
            await session.scalars(
                query.order_by(
                    SecurityAuditLog.created_at.desc(), SecurityAuditLog.id.desc()
                ).limit(limit)
            )
        ).all()
    )


# --- invitations ----------------------------------------------------------------------------


async def invitations(session: AsyncSession) -> list[Invitation]:
    """Every invitation, the newest first."""
    return list(await session.scalars(select(Invitation).order_by(Invitation.created_at.desc())))


async def invitation_for_update(
    session: AsyncSession, *, invitation_id: uuid.UUID
) -> Invitation | None:
    """The invitation with this id, locked for update."""
    return await session.get(Invitation, invitation_id, with_for_update=True)


async def open_invitation_for_update(
    session: AsyncSession, *, token_hash: str
) -> Invitation | None:
    """The unused, unrevoked, unexpired invitation with this token hash, locked for update."""
    return await session.scalar(
        select(Invitation)
        .where(
            Invitation.token_hash == token_hash,
            Invitation.used_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > func.now(),
        )
        .with_for_update()
    )


# --- password resets and address verification --------------------------------------------------


async def open_reset_for_update(session: AsyncSession, *, token_hash: str) -> PasswordReset | None:
    """The unused, unexpired reset link with this token hash, locked for update."""
    return await session.scalar(
        select(PasswordReset)
        .where(
            PasswordReset.token_hash == token_hash,
            PasswordReset.used_at.is_(None),
            PasswordReset.expires_at > func.now(),
        )
        .with_for_update()
    )


async def use_up_resets(session: AsyncSession, *, user_id: uuid.UUID, now: datetime) -> None:
    """Mark every reset link of the person still open used."""
    await session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user_id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )


async def open_verification_for_update(
    session: AsyncSession, *, token_hash: str
) -> EmailVerification | None:
    """The unused, unexpired verification link with this token hash, locked for update."""
    return await session.scalar(
        select(EmailVerification)
        .where(
            EmailVerification.token_hash == token_hash,
            EmailVerification.used_at.is_(None),
            EmailVerification.expires_at > func.now(),
        )
        .with_for_update()
    )


async def use_up_verifications(session: AsyncSession, *, user_id: uuid.UUID, now: datetime) -> None:
    """Mark every verification link of the person still open used."""
    await session.execute(
        update(EmailVerification)
        .where(EmailVerification.user_id == user_id, EmailVerification.used_at.is_(None))
        .values(used_at=now)
    )


# --- the second factor ------------------------------------------------------------------------


async def accept_totp_step(session: AsyncSession, *, user_id: uuid.UUID, step: int) -> bool:
    """Move the person's last accepted step forward to ``step``; False if it is there already."""
    moved = await session.execute(
        update(User)
        .where(
            User.id == user_id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .returning(User.id)
        .execution_options(synchronize_session=False)
    )
    return moved.first() is not None


async def use_recovery_code(session: AsyncSession, *, user_id: uuid.UUID, code_hash: str) -> bool:
    """Use up the person's unused recovery code with this hash; False if there is none."""
    used = await session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == code_hash,
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=func.now())
        .returning(RecoveryCode.id)
    )
    return used.first() is not None


async def delete_recovery_codes(session: AsyncSession, *, user_id: uuid.UUID) -> None:
    """Every recovery code of the person."""
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
