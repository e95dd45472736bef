import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from dashtam_api.apikeys.scopes import SCOPES
from dashtam_api.storable_text import CleanText

Scope = Literal[tuple(SCOPES)]  # type: ignore[valid-type]


def _json_integer(value: object) -> object:
    # What the document's `integer` means: 90 or 90.0 (JSON Schema counts both), never "90"
    # or true, which pydantic would read as numbers too.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    return value


JsonInteger = Annotated[int, BeforeValidator(_json_integer)]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CleanText = Field(min_length=1, max_length=100, description="What it is for.")
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=len(SCOPES),
        description="What it may do: "
        + "; ".join(f"`{name}`: {what}" for name, what in SCOPES.items()),
    )
    expires_in_days: JsonInteger = Field(
        90, ge=1, le=365, description="It stops working after this."
    )


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="Its first characters, to tell keys apart.")
    scopes: list[str]
    expires_at: datetime
    created_at: datetime
    last_used_at: datetime | None = Field(description="To the minute.")
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(
        description="The key: `Authorization: Bearer dtk_...`. Shown only here; only its hash "
        "is kept."
    )


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]
