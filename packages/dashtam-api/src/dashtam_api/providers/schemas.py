import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from dashtam_api.storable_text import CleanText


class ProviderType(BaseModel):
    key: str
    name: str
    configured: bool
    supports: dict


class CreateProvider(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"provider_key": "sandbox", "alias": "Brokerage"}]},
    )

    provider_key: CleanText = Field(min_length=1, max_length=40)
    alias: CleanText = Field(min_length=1, max_length=100)


class UpdateProvider(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"alias": "Retirement"}]}
    )

    alias: CleanText = Field(min_length=1, max_length=100)


class ProviderOut(BaseModel):
    id: uuid.UUID
    provider_key: str
    alias: str
    status: str
    created_at: datetime
    updated_at: datetime


class ProviderPage(BaseModel):
    items: list[ProviderOut]
    total: int
    limit: int
    offset: int
