"""What a source is: one institution's way of connecting and reading, behind one interface.

The sync (sync/service.py) knows nothing of any institution: it asks the provider type's source
for a window of accounts, balances, positions and transactions with the connection's credential,
and reconciles what comes back the same way for all of them. What differs between sources is
here, declared rather than discovered:

- ``kind``: what a connection of it holds. ``oauth2``: tokens from an authorization, refreshed
  (connections/refresh.py); ``simplefin``: an access URL claimed once from a setup token;
  ``file``: nothing (accounts fed by imports, never read); ``api_token``: a token the person
  made at the institution and what it reads (IBKR's Flex token and query id), tried once at
  connect (connections/api_tokens.py): a source of this kind also has ``credential(token,
  query_id)`` (what is sealed) and ``check(...)`` (the try); ``consent``: a session opened
  from a consent the person gives at their bank (Enable Banking), which ends on a date the bank
  agreed to (the connection's ``reconnect_by``). ``link``: an access token
  from a Link-style flow (Plaid: a widget gives a public token, exchanged once for the access
  token).
- ``limits``: how far back the first read goes, the longest period one request may ask for, and
  the requests a day a connection may send (its budget, kept by sync/budget.py); with a budget,
  ``requests_for`` says what a read of given windows takes.
- ``person_named_servers``: the addresses it reads come from the person, so the sync reads it
  through the guarded pool.
- ``read``: the window of data, or a SourceError that says what the failure means for the
  connection (transient, the token refused, or only the person can fix it).
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import httpx

from dashtam_api.sources.shapes import AccountData, SourceError, Windows
from dashtam_core.config import Settings


class Kind(StrEnum):
    OAUTH2 = "oauth2"
    SIMPLEFIN = "simplefin"
    FILE = "file"
    # A long-lived token the person makes at the institution, with what it reads (IBKR's Flex
    # Web Service: a Flex token and the id of an Activity Flex query).
    API_TOKEN = "api_token"  # noqa: S105 (a kind's name, not a secret)
    # A PSD2 consent the person gives at their bank (Enable Banking): a session with an end.
    CONSENT = "consent"
    # An access token from a Link-style flow (Plaid Link: a public token exchanged once).
    LINK = "link"


# What a person supplies to connect a provider of each kind (GET /api/v1/provider-types).
SUPPLIES = {
    Kind.OAUTH2: ("authorization",),  # a sign-in at the institution, redirected back
    Kind.SIMPLEFIN: ("setup_token",),
    Kind.FILE: ("file",),  # files imported into its accounts
    Kind.API_TOKEN: ("token", "query_id"),
    Kind.CONSENT: ("bank",),  # the bank they pick (name, country), then a sign-in there
    Kind.LINK: ("link",),  # Plaid Link completed in a page Dashtam serves (a public token)
}


@dataclass(frozen=True)
class Limits:
    # The first read of an account reaches this far back.
    history_days: int
    # The longest period one request may ask for (None: any).
    window_days: int | None = None
    # Requests a day one connection may send (None: no budget to keep).
    requests_per_day: int | None = None
    # What the budget counts: each HTTP request ("request"), or each read whatever the
    # requests it takes ("read": PSD2 banks allow about four unattended reads a day of each
    # account, not a number of requests).
    budget_counts: str = "request"


@dataclass
class Reading:
    """What one read found. The requests it took are counted by the sync's HTTP client
    (sync/budget.Allowance), not by the source.

    - ``notes``: what the source said is wrong in part of it, the rest being good (one bank of
      several at the SimpleFIN Bridge needing a new sign-in): recorded on the sync run and the
      connection's ``sync_error``; the sync succeeds.
    - ``failure``: the sync fails so (as if the read had raised it), after the accounts that
      came are written: data already paid for (a request of a daily budget) is not thrown
      away.
    - ``complete``: every account the credential sees was listed (False: one missing from
      ``accounts`` is not closed).
    - ``state``: what the source keeps for its next read of the connection (a cursor), handed
      back in ``Windows.state``; written with the data, in the same transaction (None: what
      was kept stays). Never a secret: it is stored in the clear."""

    accounts: list[AccountData]
    notes: tuple[str, ...] = ()
    failure: SourceError | None = None
    complete: bool = True
    state: dict | None = None


class Source(Protocol):
    name: str
    kind: Kind
    limits: Limits
    # Its servers' addresses come from the person (a SimpleFIN access URL, a setup token's
    # claim URL), not from the operator: it is read through the guarded pool, which checks
    # each address it connects to as a webhook's (ctx.guarded_http).
    person_named_servers: bool

    def requests_for(self, windows: Windows) -> int | None:
        """The requests a read of these windows takes, for a source with a daily budget (the
        sync starts no read that would not fit); None: not known ahead (no budget kept)."""
        ...

    async def read(
        self,
        *,
        base_url: str | None,
        credential: str,
        http: httpx.AsyncClient,
        settings: Settings,
        windows: Windows,
    ) -> Reading:
        """The accounts the credential sees, each account's transactions over its window."""
        ...
