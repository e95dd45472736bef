"""Plaid's API as Dashtam calls it: every call a JSON POST with the team's client id and secret
(headers ``PLAID-CLIENT-ID``/``PLAID-SECRET``) and ``Plaid-Version: 2020-09-14``; every error
a ``PlaidError`` body (``error_type``, ``error_code``, ``error_message``, ``display_message``).

Sent once (``upstream.once``: again only when it provably never left): a 429 asked again at
once is one more against a per-minute limit (Plaid sends no Retry-After), and a 5xx is the
next sync's to try. JSON numbers are read straight into Decimal.

What a failure means for the connection (``PlaidFailure.source_error``):

- ``ITEM_LOGIN_REQUIRED`` (and the other item states only the person mends at the bank):
  needs the person, through Link in update mode (POST .../authorization again);
- ``INVALID_ACCESS_TOKEN`` / ``ITEM_NOT_FOUND``: needs the person, a new Link;
- ``RATE_LIMIT_EXCEEDED`` (429) and Plaid's or the bank's trouble (5xx, ``API_ERROR``,
  ``INSTITUTION_ERROR``): transient, the sync loop backs off;
- anything else (the operator's keys refused, a request Plaid calls invalid): an error, not
  transient.
"""

import json
from dataclasses import dataclass
from decimal import Decimal

import httpx

from dashtam_api import upstream
from dashtam_api.sources.shapes import SourceError
from dashtam_core.config import Settings

VERSION = "2020-09-14"
# Plaid's per-item rate limits are per minute (plaid.com/docs/errors/rate-limit-exceeded).
RATE_LIMIT_WAIT_SECONDS = 60
LOGIN = frozenset({"ITEM_LOGIN_REQUIRED", "ITEM_LOCKED", "USER_SETUP_REQUIRED"})
GONE = frozenset({"INVALID_ACCESS_TOKEN", "ITEM_NOT_FOUND", "ACCESS_NOT_GRANTED", "NO_ACCOUNTS"})
TRANSIENT_TYPES = frozenset({"RATE_LIMIT_EXCEEDED", "API_ERROR", "INSTITUTION_ERROR"})
MUTATION = "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION"
FIX_WITH_LINK = (
    "sign in to the bank again through Plaid Link in update mode "
    "(POST /api/v1/providers/{id}/authorization)"
)


@dataclass
class PlaidFailure(Exception):
    """Plaid's error answer (or no answer at all: ``error_type`` ``TRANSPORT``)."""

    status: int
    error_type: str
    error_code: str
    message: str

    def __str__(self) -> str:
        return f"{self.error_code}: {self.message}"

    @property
    def needs_login(self) -> bool:
        return self.error_code in LOGIN

    def source_error(self) -> SourceError:
        """What the failure means for the connection (the module's list)."""
        said = f"Plaid: {self.message}".rstrip(". ")
        if self.needs_login:
            return SourceError(
                self.error_code, f"{said}: {FIX_WITH_LINK}", transient=False, needs_person=True
            )
        if self.error_code in GONE:
            return SourceError(
                self.error_code, f"{said}: connect again through Plaid Link",
                transient=False, needs_person=True,
            )  # fmt: skip
        if self.status == 429 or self.error_type == "RATE_LIMIT_EXCEEDED":
            return SourceError(
                self.error_code or "RATE_LIMIT_EXCEEDED", f"{said}: read again later",
                transient=True, retry_after=RATE_LIMIT_WAIT_SECONDS,
            )  # fmt: skip
        transient = self.status >= 500 or self.error_type in TRANSIENT_TYPES
        # No answer, or the pages kept changing under every restart: the next sync reads again.
        transient = transient or self.error_type == "TRANSPORT" or self.error_code == MUTATION
        return SourceError(self.error_code or f"http_{self.status}", said, transient=transient)


class PlaidAPI:
    """One team's keys at one Plaid environment (or the look-alike)."""

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, settings: Settings):
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.settings = settings

    async def call(self, path: str, body: dict) -> dict:
        """Plaid's answer to one call, or PlaidFailure."""
        client_id, secret = plaid_keys(self.settings)
        headers = {
            "PLAID-CLIENT-ID": client_id,
            "PLAID-SECRET": secret,
            "Plaid-Version": VERSION,
            "Accept": "application/json",
        }
        try:
            answer = await upstream.once(
                self.settings,
                lambda: self.http.post(f"{self.base_url}{path}", json=body, headers=headers),
            )
        except httpx.TransportError as exc:
            error, description = upstream.transport_failure(exc)
            raise PlaidFailure(0, "TRANSPORT", error, f"{path}: {description}") from None
        try:
            document = json.loads(answer.content, parse_float=Decimal)
        except ValueError:
            document = None
        if answer.status_code >= 400 or not isinstance(document, dict):
            raise _failure(answer.status_code, document, path)
        return document


async def remove_item(api: PlaidAPI, access_token: str) -> str:
    """``/item/remove``: what Plaid said, as a revocation's audit keeps it (``revoked``, or
    ``failed (<error code>)``); an item Plaid no longer has is removed already."""
    try:
        await api.call("/item/remove", {"access_token": access_token})
    except PlaidFailure as exc:
        if exc.error_code in ("ITEM_NOT_FOUND", "INVALID_ACCESS_TOKEN"):
            return "revoked"
        return f"failed ({exc.error_code})"
    return "revoked"


def _failure(status: int, document, path: str) -> PlaidFailure:
    if isinstance(document, dict) and document.get("error_code"):
        return PlaidFailure(
            status,
            str(document.get("error_type") or ""),
            str(document["error_code"])[:100],
            str(document.get("error_message") or document["error_code"])[:300],
        )
    if status < 400:
        return PlaidFailure(status, "API_ERROR", upstream.INVALID_RESPONSE, f"{path}: not JSON")
    error, _ = upstream.status_failure(status)
    return PlaidFailure(status, "", error, f"{path} answered HTTP {status}")


def plaid_keys(settings: Settings) -> tuple[str, str]:
    """The team's client id and secret; in development and testing the look-alike's own when
    none are set (sandbox/plaid_lookalike.py)."""
    if settings.PLAID_CLIENT_ID and settings.PLAID_SECRET:
        return settings.PLAID_CLIENT_ID, settings.PLAID_SECRET
    if settings.local_environment:
        from dashtam_api.sandbox.plaid_data import CLIENT_ID, SECRET

        return CLIENT_ID, SECRET
    return "", ""


def plaid_base_url(settings: Settings) -> str:
    """Where Plaid's API is: PLAID_BASE_URL, else in development and testing (without keys of
    a real team) the look-alike this API serves, else PLAID_ENV's host."""
    if settings.PLAID_BASE_URL:
        return settings.PLAID_BASE_URL.rstrip("/")
    if settings.local_environment and not settings.PLAID_CLIENT_ID:
        return settings.API_BASE_URL.rstrip("/") + "/sandbox/plaid"
    return f"https://{settings.PLAID_ENV}.plaid.com"
