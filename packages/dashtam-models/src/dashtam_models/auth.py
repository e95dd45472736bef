"""Sessions and their refresh tokens: a session is one sign-in; its refresh tokens (stored only
as a SHA-256 hash, looked up by it) rotate within it, and its access tokens name it (``sid``)."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, Text
from sqlmodel import Field, SQLModel

from dashtam_models.base import created_at, foreign_key, one_of, uuid_pk


class SessionEnd(StrEnum):
    LOGOUT = "logout"
    ENDED_BY_USER = "ended_by_user"  # DELETE /auth/sessions[/{id}]
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 -- every other session of the person
    TOKEN_REUSE = "token_reuse"  # noqa: S105 -- a rotated refresh token presented again


class UserSession(SQLModel, table=True):
    """One sign-in: where and from what it was made, when it was last refreshed, how it ended."""

    __tablename__ = "user_sessions"
    __table_args__ = (CheckConstraint(one_of("end_reason", SessionEnd), name="end_reason"),)

    id: uuid.UUID | None = uuid_pk()
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE")
    created_at: datetime | None = created_at()
    # Its newest refresh (a client refreshes every ACCESS_TOKEN_MINUTES while it is in use).
    last_used_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    ip: str | None = Field(default=None, sa_type=Text)
    user_agent: str | None = Field(default=None, sa_type=Text)
    ended_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    end_reason: str | None = Field(default=None, sa_type=Text)


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_tokens"

    id: uuid.UUID | None = uuid_pk()
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE")
    # Every token issued from one login shares a family, the session; reuse of a rotated token
    # ends it all.
    family_id: uuid.UUID = foreign_key("user_sessions.id", ondelete="CASCADE")
    token_hash: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False, "unique": True})
    expires_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"nullable": False}
    )
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    user_agent: str | None = Field(default=None, sa_type=Text)
    created_at: datetime | None = created_at()


class Invitation(SQLModel, table=True):
    """A single-use invitation to register (REGISTRATION=invite), made by an administrator.
    Only the token's SHA-256 is kept; the token is shown once, when it is made."""

    __tablename__ = "invitations"

    id: uuid.UUID | None = uuid_pk()
    token_hash: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False, "unique": True})
    # When set, only this address may use it (case-insensitively).
    email: str | None = Field(default=None, sa_type=Text)
    note: str | None = Field(default=None, sa_type=Text)
    created_by: uuid.UUID | None = foreign_key("users.id", ondelete="SET NULL", nullable=True)
    created_at: datetime | None = created_at()
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    used_by: uuid.UUID | None = foreign_key("users.id", ondelete="SET NULL", nullable=True)
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class RecoveryCode(SQLModel, table=True):
    """One of a person's ten single-use second-factor recovery codes, as its SHA-256 (80 random
    bits each: a fast hash does not make them guessable)."""

    __tablename__ = "recovery_codes"

    id: uuid.UUID | None = uuid_pk()
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE")
    code_hash: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False, "unique": True})
    created_at: datetime | None = created_at()
    used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class PasswordReset(SQLModel, table=True):
    """A password reset link: single use, short-lived; only the token's SHA-256 is kept."""

    __tablename__ = "password_resets"

    id: uuid.UUID | None = uuid_pk()
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE")
    token_hash: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False, "unique": True})
    created_at: datetime | None = created_at()
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class EmailVerification(SQLModel, table=True):
    """A link that proves an address: single use, short-lived; only the token's SHA-256 is
    kept. It proves the address it was sent to (a changed address needs a new one)."""

    __tablename__ = "email_verifications"

    id: uuid.UUID | None = uuid_pk()
    user_id: uuid.UUID = foreign_key("users.id", ondelete="CASCADE")
    email: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False})
    token_hash: str = Field(sa_type=Text, sa_column_kwargs={"nullable": False, "unique": True})
    created_at: datetime | None = created_at()
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
