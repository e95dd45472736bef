import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dashtam_api.storable_text import CleanText


class ProviderType(BaseModel):
    key: str
    name: str
    kind: Literal["oauth2", "simplefin", "file", "api_token", "consent", "link"] = Field(
        description="What a connection holds: oauth2 tokens (an authorization at the "
        "institution), a SimpleFIN access URL (from a setup token), nothing (file: "
        "accounts fed by imports), a token the person made at the institution (api_token: "
        "IBKR's Flex token and query id), a session from a consent given at a bank "
        "(consent: Enable Banking), or an access token from a Link (link: Plaid)."
    )
    configured: bool = Field(
        description="Whether a person can connect it here (an OAuth2 institution needs this "
        "Dashtam's client registration, Plaid the team's keys)."
    )
    supplies: list[
        Literal["authorization", "setup_token", "file", "token", "query_id", "bank", "link"]
    ] = Field(
        description="What the person supplies to connect: a sign-in at the institution "
        "(POST .../authorization answers its URL), a setup token (POST .../authorization "
        "with {setup_token}), files (POST /api/v1/accounts/{id}/imports), a token and a "
        "query id made at the institution (api_token), a bank (POST .../authorization with "
        "{bank}: one GET .../banks lists), or a Link (POST .../authorization answers a link "
        "token and a page that opens it; the public token goes to POST "
        ".../authorization/exchange)."
    )
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
