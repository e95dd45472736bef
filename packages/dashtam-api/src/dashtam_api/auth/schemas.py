import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dashtam_api.cursors import Cursor
from dashtam_api.emails import Email
from dashtam_api.storable_text import CleanText


class RegisterRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"email": "ann@example.com", "password": "a long pass phrase", "name": "Ann"}
            ]
        },
    )

    email: Email = Field(max_length=254)
    password: str = Field(min_length=12, max_length=256)
    name: CleanText = Field(default="", max_length=200)
    invitation: str | None = Field(
        default=None,
        max_length=200,
        description="An administrator's invitation (`dti_...`): needed when REGISTRATION=invite.",
    )


class LoginRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"email": "ann@example.com", "password": "a long pass phrase"}]
        },
    )

    email: Email = Field(max_length=254)
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=10, max_length=200)


class UpdateMeRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "Ann Smith"},
                {"password": "a new long pass phrase", "current_password": "a long pass phrase"},
            ]
        },
    )

    name: CleanText | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, min_length=12, max_length=256)
    current_password: str | None = Field(default=None, max_length=256)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    is_admin: bool
    totp_enabled: bool = Field(description="A second factor (TOTP) is needed to sign in.")
    email_verified: bool = Field(description="A link mailed to the address was opened.")
    created_at: datetime

    @classmethod
    def of(cls, user) -> "UserOut":
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            is_admin=user.is_admin,
            totp_enabled=user.totp_enabled_at is not None,
            email_verified=user.email_verified_at is not None,
            created_at=user.created_at,
        )


class TokenPair(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 -- the OAuth token type, not a secret
    expires_in: int
    refresh_token: str


class SessionOut(BaseModel):
    id: uuid.UUID
    created_at: datetime = Field(description="When it signed in.")
    last_used_at: datetime = Field(
        description="Its newest token refresh (a client in use refreshes every "
        "ACCESS_TOKEN_MINUTES)."
    )
    ip: str | None = Field(description="Where it signed in or last refreshed from.")
    user_agent: str | None
    device: str = Field(description='From the user agent, e.g. "Firefox 128 on Linux".')
    current: bool = Field(description="The session this request is made with.")


class SessionList(BaseModel):
    items: list[SessionOut]


class SessionsEnded(BaseModel):
    ended: int = Field(description="How many sessions ended.")


class InvitationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email | None = Field(
        default=None, max_length=254, description="Only this address may use it."
    )
    note: CleanText | None = Field(default=None, max_length=200)


class InvitationOut(BaseModel):
    id: uuid.UUID
    email: str | None
    note: str | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    state: Literal["open", "used", "expired", "revoked"]


class InvitationCreated(InvitationOut):
    token: str = Field(
        description="Give it to the person (`invitation` when registering); shown once."
    )


class InvitationList(BaseModel):
    items: list[InvitationOut]


class SecondFactorChallenge(BaseModel):
    """The password was right and a second factor is on: complete the sign-in with
    POST /api/v1/auth/login/second-factor within ``expires_in`` seconds."""

    second_factor_required: Literal[True] = True
    challenge: str
    expires_in: int


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


class _OneCode(BaseModel):
    """Exactly one of ``code`` and ``recovery_code`` (the document says so: ``oneOf``); neither
    may be null or empty."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["code"]}, {"required": ["recovery_code"]}]},
    )

    code: str = Field(
        default=None,
        min_length=1,
        max_length=12,
        description="The authenticator's current 6 digits.",
        json_schema_extra=_no_default,
    )
    recovery_code: str = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="One of the recovery codes (each works once).",
        json_schema_extra=_no_default,
    )

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.code is None) == (self.recovery_code is None):
            raise ValueError("give either code or recovery_code")
        return self


class SecondFactorLogin(_OneCode):
    challenge: str = Field(min_length=10, max_length=100)


class TotpDisable(_OneCode):
    pass


class TotpEnrollment(BaseModel):
    secret: str = Field(description="Base32; shown only here.")
    otpauth_uri: str = Field(description="For an authenticator app (as a QR code, say).")


class TotpConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=6, max_length=12)


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(
        description="Ten single-use codes for when the authenticator is lost; shown only here."
    )


class SecurityEventQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(20, ge=1, le=100, description="Events per page.")
    cursor: Cursor = None


class SecurityEventOut(BaseModel):
    id: uuid.UUID
    action: str = Field(
        description="signed_in, sign_in_failed, password_changed, session_ended, "
        "second_factor_enabled, ... (docs/security.md)"
    )
    details: dict = Field(description="What the event says (a reason, a session id); no secret.")
    ip: str | None
    device: str
    created_at: datetime


class SecurityEventPage(BaseModel):
    items: list[SecurityEventOut]
    limit: int
    next_cursor: str | None


class ResetAsk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email = Field(max_length=254)


class ResetAsked(BaseModel):
    detail: str


class ResetComplete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=10, max_length=100, description="From the link (`dtr_...`).")
    password: str = Field(min_length=12, max_length=256)


class VerifyEmail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=10, max_length=100, description="From the link (`dtv_...`).")
