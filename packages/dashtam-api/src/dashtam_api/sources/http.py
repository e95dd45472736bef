"""Reading a bearer-token JSON API (the sandbox's, Schwab's Trader API): the person's access
token on the shared pool, each read sent again on a transient failure (reads are idempotent).

JSON numbers are parsed straight into Decimal (``parse_float=Decimal``): Schwab sends amounts as
JSON numbers, and a detour through float would already have changed them.
"""

import json
from decimal import Decimal

import httpx

from dashtam_api import upstream
from dashtam_api.sources.shapes import SourceError
from dashtam_core.config import Settings


class DataAPI:
    """An institution's data API as one account holder sees it."""

    def __init__(self, http: httpx.AsyncClient, access_token: str, settings: Settings):
        self.http = http
        self.access_token = access_token
        self.settings = settings

    async def get_json(self, url: str, **params):
        def send():
            return self.http.get(
                url,
                params=params or None,
                headers={
                    "Authorization": f"Bearer {self.access_token}",
                    "Accept": "application/json",
                },
            )

        try:
            response = await upstream.idempotent(self.settings, send)
        except httpx.TransportError as exc:
            raise SourceError(*upstream.transport_failure(exc), transient=True) from None
        if response.status_code == 401:
            raise SourceError(
                "invalid_token", "the access token was refused", transient=True, unauthorized=True
            )
        if response.status_code >= 400:
            error, transient = upstream.status_failure(response.status_code)
            raise SourceError(
                error, f"{url.split('?')[0]} answered {response.status_code}", transient=transient
            )
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise SourceError(upstream.INVALID_RESPONSE, "not JSON", transient=False) from None
