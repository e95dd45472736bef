"""Invitations: single-use, short-lived tokens an administrator makes for REGISTRATION=invite.

The token is shown once; only its SHA-256 is kept (256 random bits: a hash suffices, as for
refresh tokens). Registering with it uses it up in the same transaction as the new account.
"""

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.audit import service as audit
from dashtam_api.auth import queries
from dashtam_api.errors import Forbidden, NotFound
from dashtam_core.config import Settings
from dashtam_models import Invitation, User

PREFIX = "dti_"  # recognisable in a message or a log someone pastes


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _described(invitation: Invitation, now: datetime) -> dict:
    state = (
        "used"
        if invitation.used_at
        else "revoked"
        if invitation.revoked_at
        else "expired"
        if invitation.expires_at <= now
        else "open"
    )
    return {
        "id": invitation.id,
        "email": invitation.email,
        "note": invitation.note,
        "created_at": invitation.created_at,
        "expires_at": invitation.expires_at,
        "used_at": invitation.used_at,
        "state": state,
    }


async def create(
    *,
    session: AsyncSession,
    settings: Settings,
    admin: User,
    email: str | None,
    note: str | None,
    where: dict,
) -> dict:
    token = PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    invitation = Invitation(
        id=uuid.uuid4(),
        token_hash=_hash(token),
        email=email,
        note=note,
        created_by=admin.id,
        expires_at=now + timedelta(days=settings.INVITATION_DAYS),
    )
    session.add(invitation)
    await session.flush()
    await queries.reloaded(session, rows=(invitation,))
    await audit.security(
        session=session,
        action="invitation_created",
        user_id=admin.id,
        details={"invitation_id": str(invitation.id), "email": email},
        **where,
    )
    return {**_described(invitation, now), "token": token}


async def listed(*, session: AsyncSession) -> dict:
    now = datetime.now(UTC)
    rows = await queries.invitations(session)
    return {"items": [_described(i, now) for i in rows]}


async def revoke(
    *, session: AsyncSession, admin: User, invitation_id: uuid.UUID, where: dict
) -> None:
    invitation = await queries.invitation_for_update(session, invitation_id=invitation_id)
    if invitation is None or invitation.used_at or invitation.revoked_at:
        raise NotFound("No such open invitation.")
    invitation.revoked_at = datetime.now(UTC)
    await audit.security(
        session=session,
        action="invitation_revoked",
        user_id=admin.id,
        details={"invitation_id": str(invitation.id)},
        **where,
    )


async def use(*, session: AsyncSession, token: str | None, email: str) -> Invitation:
    """The open invitation this token names, for this address, taken for update; 403 otherwise
    (the same answer whatever is wrong with it)."""
    refused = Forbidden(
        "Registration here needs an invitation: this one is missing, used, expired or for "
        "another address.",
        needs="invitation",
    )
    if not token:
        raise refused
    invitation = await queries.open_invitation_for_update(session, token_hash=_hash(token))
    if invitation is None or (
        invitation.email is not None and invitation.email.lower() != email.lower()
    ):
        raise refused
    return invitation
