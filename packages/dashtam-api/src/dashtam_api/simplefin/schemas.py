import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from dashtam_api.storable_text import CleanText


class SetupTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: CleanText = Field("", max_length=200, description="Which app it is for, say.")
    account_ids: list[uuid.UUID] | None = Field(
        None,
        max_length=1000,
        description="Only these accounts; left out, every account (those added later too).",
    )


class SetupTokenCreated(BaseModel):
    id: uuid.UUID
    setup_token: str = Field(
        description="Paste this into the app: the base64 of the claim URL. Good once, until "
        "expires_at; shown only here."
    )
    claim_url: str
    label: str
    account_ids: list[uuid.UUID] | None
    expires_at: datetime


class AccessOut(BaseModel):
    id: uuid.UUID
    label: str
    account_ids: list[uuid.UUID] | None
    created_at: datetime
    claimed_ip: str | None
    last_used_at: datetime | None
    last_used_ip: str | None
    revoked_at: datetime | None


class AccessList(BaseModel):
    items: list[AccessOut]


class Info(BaseModel):
    versions: list[str]
