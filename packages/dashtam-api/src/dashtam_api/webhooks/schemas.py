import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from dashtam_api.cursors import Cursor
from dashtam_api.storable_text import CleanText
from dashtam_api.webhooks.targets import WebhookUrl
from dashtam_models import WebhookEvent

# What an endpoint can subscribe to; webhook.test is sent on request (POST .../test) only.
SUBSCRIBABLE = tuple(e.value for e in WebhookEvent if e is not WebhookEvent.WEBHOOK_TEST)
EventName = Literal[SUBSCRIBABLE]  # type: ignore[valid-type]
AnyEventName = Literal[tuple(e.value for e in WebhookEvent)]  # type: ignore[valid-type]


URL_HELP = (
    "Where events are POSTed: an https URL (http too in development and testing), "
    "`scheme://host[:port][/path][?query]`: a host name (ASCII, IDNA for others), an IPv4 "
    "address or an [IPv6] one; no user name or password, no #fragment."
)


def _never_null(schema: dict) -> None:
    # Left out, these stay as they are; null is no value for them: no default in the document.
    for name in ("url", "events", "enabled"):
        schema["properties"][name].pop("default", None)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl = Field(
        min_length=1,
        max_length=2000,
        description=URL_HELP,
        examples=["https://example.com/hooks/dashtam"],
    )
    events: list[EventName] = Field(min_length=1, max_length=len(SUBSCRIBABLE))
    description: CleanText | None = Field(None, max_length=500)


class WebhookUpdate(BaseModel):
    """What to change; what is left out stays. ``enabled: true`` turns a disabled endpoint on
    again (deliveries already given up are not sent again)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_never_null)

    url: WebhookUrl = Field(None, min_length=1, max_length=2000, description=URL_HELP)
    events: list[EventName] = Field(None, min_length=1, max_length=len(SUBSCRIBABLE))
    description: CleanText | None = Field(None, max_length=500)
    enabled: StrictBool = Field(None)  # true or false, not 0 or "yes" (the document says)


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[EventName]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why it stopped: a 410 Gone, a day of failures, or its owner."
    )
    disabled_at: datetime | None
    failing_since: datetime | None = Field(
        description="The first failed attempt since the last success; null when it is well."
    )
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="The signing secret (Standard Webhooks `whsec_...`), shown only here."
    )


class WebhookList(BaseModel):
    items: list[WebhookOut]


class WebhookSecret(BaseModel):
    secret: str = Field(description="The new signing secret, shown only here; the old one stops.")


class WebhookTestSent(BaseModel):
    event_id: uuid.UUID = Field(description="The `webhook-id` header the test is sent with.")


class AttemptQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(20, ge=1, le=100, description="Attempts per page.")
    cursor: Cursor = None


class AttemptOut(BaseModel):
    id: uuid.UUID
    delivery_id: uuid.UUID
    event_id: uuid.UUID
    event_type: AnyEventName
    attempt: int = Field(description="1 for the first attempt of this delivery, then 2, ...")
    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's answer; null if none came.")
    duration_ms: int
    error: str | None = Field(description="Null on a 2xx; else what went wrong.")
    delivery_status: Literal["pending", "delivered", "failed"]
    next_attempt_at: datetime | None = Field(
        description="When the delivery is tried again (pending ones)."
    )


class AttemptPage(BaseModel):
    items: list[AttemptOut]
    limit: int
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )
