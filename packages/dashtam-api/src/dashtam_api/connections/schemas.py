import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SetupTokenAuthorization(BaseModel):
    """What a provider of kind ``simplefin`` is connected with."""

    model_config = ConfigDict(extra="forbid")

    setup_token: str = Field(
        min_length=1,
        max_length=4000,
        # The base64 of a URL starting https:// or http:// (the protocol's setup token).
        pattern=r"^\s*aHR0c(?:HM6Ly|DovL)[A-Za-z0-9+/_-]*={0,2}\s*$",
        description="A SimpleFIN setup token (the base64 of a claim URL), claimed once.",
    )


class ApiTokenAuthorization(BaseModel):
    """What a provider of kind ``api_token`` is connected with: a token the person made at the
    institution and what it reads (IBKR: a Flex token and an Activity Flex query's id)."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(
        min_length=8,
        max_length=200,
        pattern=r"^[A-Za-z0-9]+$",
        description="The token made at the institution (IBKR: the Flex Web Service token).",
    )
    query_id: str = Field(
        min_length=1,
        max_length=20,
        pattern=r"^[0-9]+$",
        description="What the token reads (IBKR: the Activity Flex query's id).",
    )


# The body of POST .../authorization, by the provider's kind (none for oauth2).
AuthorizationCreate = SetupTokenAuthorization | ApiTokenAuthorization


def _one_or_both(schema: dict) -> None:
    """LinkCreate's document: at least one of its fields, neither null (no null default)."""
    schema["minProperties"] = 1
    for field in schema["properties"].values():
        field.pop("default", None)


class LinkCreate(BaseModel):
    """What a provider of kind ``link`` (Plaid) is connected for (no body: transactions), and
    how: ``mode`` ``update`` renews the item the connection holds (Link in update mode: the
    same item, accounts and transactions), ``new`` makes a new item; without it, update mode
    when the item needs the person or Plaid said its consent ends. At least one of the two."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_or_both)

    products: list[Literal["transactions", "investments"]] = Field(
        default=None, min_length=1, max_length=2
    )
    mode: Literal["new", "update"] = Field(default=None)

    @model_validator(mode="after")
    def _something(self) -> "LinkCreate":
        if self.products is None and self.mode is None:
            raise ValueError("products or mode is required")
        return self


class LinkStart(BaseModel):
    """A Link to complete: open ``link_url`` (a page of this API that opens Plaid Link), or
    open Link with ``link_token`` yourself and send its public token to .../exchange."""

    link_token: str
    expiration: str
    link_url: str
    mode: Literal["new", "update"]


class LinkExchange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_token: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")


class AuthorizationStart(BaseModel):
    authorization_url: str
    expires_in: int


class AuthorizationStatus(BaseModel):
    provider_id: uuid.UUID
    status: Literal["pending", "active", "expired", "revoked", "error"]
    # What the person should do next: connect (never connected, or revoked), reconnect
    # (expired, or refreshes failed), or nothing (active).
    action: Literal["connect", "reconnect"] | None
    scope: str | None
    connected_at: datetime | None
    expires_at: datetime | None = Field(description="When the access token expires.")
    refresh_expires_at: datetime | None = Field(
        description="When the refresh token expires (stated by the institution or known)."
    )
    reconnect_by: datetime | None = Field(
        description="After this moment only a new connection helps (the refresh token's expiry)."
    )
    last_refreshed_at: datetime | None
    refresh_failures: int = Field(description="Consecutive failed refreshes.")
    retry_at: datetime | None = Field(description="The next refresh try after a failure.")
    synced_at: datetime | None = Field(description="The same as last_synced_at.")
    sync_error: str | None
    last_synced_at: datetime | None = Field(description="When a sync last succeeded.")
    last_sync_status: Literal["running", "succeeded", "failed"] | None = Field(
        description="How the newest sync run ended (GET .../sync-runs has them all)."
    )
    stale: bool = Field(
        description="Active, but no sync has succeeded within twice the sync interval (since "
        "it was connected, for one never synced)."
    )
    error: str | None
    next_sync_at: datetime | None = Field(
        description="When the sync loop reads this connection next, at the earliest: a sync "
        "interval after the last, later when the source's daily request budget (SimpleFIN: 24 "
        "a day) is spent or a failed sync backs off; null while it is not active."
    )


class CallbackForward(BaseModel):
    """What the callback server forwards from the institution's redirect."""

    model_config = ConfigDict(extra="forbid")

    state: str = Field(min_length=1, max_length=200)
    code: str | None = Field(default=None, max_length=2000)
    error: str | None = Field(default=None, max_length=200)
    error_description: str | None = Field(default=None, max_length=1000)
    client_ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=500)


class CallbackOutcome(BaseModel):
    outcome: str  # connected | denied
    provider_id: uuid.UUID
    provider_alias: str
    error: str | None = None
    error_description: str | None = None


class BankChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="As GET .../banks lists it.")
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166 two-letter code.")


class ConsentCreate(BaseModel):
    """What a provider of kind ``consent`` (Enable Banking) is connected with: the bank the
    person picked (GET /api/v1/providers/{id}/banks)."""

    model_config = ConfigDict(extra="forbid")

    bank: BankChoice


class Bank(BaseModel):
    name: str
    country: str
    bic: str | None = None
    logo: str | None = None
    psu_types: list[str] = Field(default_factory=list)
    beta: bool = False
    maximum_consent_validity: int | None = Field(
        default=None, description="The longest consent the bank gives, in seconds."
    )


class BankList(BaseModel):
    items: list[Bank]
