import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dashtam_api.emails import Email
from dashtam_api.text import CleanText


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
    created_at: datetime


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
