"""The provider types Dashtam can connect: the sandbox, Charles Schwab, the SimpleFIN Bridge, Plaid,
configured generic OAuth2 institutions; each of a kind, read by a source (dashtam_api/sources)."""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from dashtam_api.sources import enablebanking_api
from dashtam_api.sources.plaid_api import plaid_base_url, plaid_keys
from dashtam_api.sources.protocol import SUPPLIES, Kind
from dashtam_core.config import Settings

log = logging.getLogger(__name__)

CALLBACK_PATH = "/oauth/callback"
IBKR_FLEX_URL = "https://ndcdyn.interactivebrokers.com/AccountManagement/FlexWebService"


@dataclass(frozen=True)
class ProviderSpec:
    key: str
    name: str
    # What a connection of it holds (sources/protocol.py); the OAuth2 fields below are for
    # kind oauth2 only.
    kind: Kind = Kind.OAUTH2
    authorize_url: str = ""
    token_url: str = ""
    client_id: str = ""
    client_secret: str = ""
    revocation_url: str | None = None
    scopes: tuple[str, ...] = ()
    client_auth_method: str = "basic"  # client_secret_basic or client_secret_post
    pkce: bool = True
    # When the institution does not say how long a refresh token lives.
    refresh_token_lifetime: timedelta | None = None
    # Which source reads its accounts (dashtam_api/sources, by name), and where; None: none.
    source: str | None = None
    api_base_url: str | None = None
    # The institution's own site (a host name), for apps that link to it (SimpleFIN v1's
    # org.domain, from which Actual builds its link); None: Dashtam's own host stands in.
    website: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        """Whether a person can connect it here: an OAuth2 institution needs this Dashtam's
        client registration, Plaid the team's keys; other kinds need nothing of the operator."""
        if self.kind is Kind.CONSENT:  # the application's id and a private key that signs
            return bool(
                self.client_id and self.extra.get("key_file") and not self.extra.get("problem")
            )
        if self.kind is Kind.LINK:  # the team's keys at the Link provider (Plaid)
            return bool(self.client_id and self.client_secret)
        if self.kind is not Kind.OAUTH2:
            return True
        return bool(self.client_id and self.client_secret and self.authorize_url and self.token_url)

    @property
    def token_endpoint_auth_method(self) -> str:
        return "client_secret_post" if self.client_auth_method == "post" else "client_secret_basic"

    def summary(self) -> dict:
        return {
            "key": self.key,
            "name": self.name,
            "kind": self.kind.value,
            "configured": self.configured,
            "supplies": list(SUPPLIES[self.kind]),
            "supports": {
                "pkce": self.kind is Kind.OAUTH2 and self.pkce,
                "refresh": self.kind is Kind.OAUTH2,
                # A consent's session is closed at the institution (Enable Banking's DELETE).
                "revocation": self.revocation_url is not None or self.kind is Kind.CONSENT,
                "sync": self.source is not None,
                "client_auth": self.client_auth_method if self.kind is Kind.OAUTH2 else None,
            },
        }


def redirect_uri(settings: Settings) -> str:
    return settings.CALLBACK_BASE_URL.rstrip("/") + CALLBACK_PATH


def build_registry(settings: Settings) -> dict[str, ProviderSpec]:
    """Every provider kind this process knows, by key."""
    registry: dict[str, ProviderSpec] = {}
    if settings.ENVIRONMENT in ("development", "testing"):
        base = settings.API_BASE_URL.rstrip("/") + "/sandbox/oauth"
        registry["sandbox"] = ProviderSpec(
            key="sandbox",
            name="Dashtam Sandbox Bank",
            authorize_url=f"{base}/authorize",
            token_url=f"{base}/token",
            revocation_url=f"{base}/revoke",
            client_id=settings.SANDBOX_CLIENT_ID,
            client_secret=settings.SANDBOX_CLIENT_SECRET,
            scopes=("accounts", "positions"),
            pkce=True,
            source="sandbox",
            api_base_url=settings.API_BASE_URL.rstrip("/") + "/sandbox/api",
        )
    registry["schwab"] = ProviderSpec(
        key="schwab",
        name="Charles Schwab",
        authorize_url=settings.SCHWAB_AUTHORIZE_URL,
        token_url=settings.SCHWAB_TOKEN_URL,
        client_id=settings.SCHWAB_CLIENT_ID,
        client_secret=settings.SCHWAB_CLIENT_SECRET,
        scopes=("readonly",),
        client_auth_method="basic",
        pkce=False,
        # Schwab: 30-minute access tokens, 7-day refresh tokens it does not announce.
        refresh_token_lifetime=timedelta(days=7),
        source="schwab",
        api_base_url=settings.SCHWAB_API_BASE_URL.rstrip("/"),
        website="www.schwab.com",
    )
    # Accounts no institution feeds: made by the person, filled by the files they import.
    registry["file"] = ProviderSpec(key="file", name="Files you import", kind=Kind.FILE)
    # The person brings the server: a setup token from their SimpleFIN Bridge (or from any
    # SimpleFIN server, another Dashtam's too) holds where it is.
    registry["simplefin"] = ProviderSpec(
        key="simplefin",
        name="SimpleFIN Bridge",
        kind=Kind.SIMPLEFIN,
        source="simplefin",
        website="beta-bridge.simplefin.org",
    )
    # Interactive Brokers' Flex Web Service: the person makes a Flex token and an Activity
    # Flex query in IBKR's portal (sources/ibkr_flex.py).
    flex = settings.IBKR_FLEX_BASE_URL or IBKR_FLEX_URL
    if settings.IBKR_FLEX_BASE_URL is None and settings.ENVIRONMENT in ("development", "testing"):
        flex = settings.API_BASE_URL.rstrip("/") + "/sandbox/ibkr/FlexWebService"
    registry["ibkr"] = ProviderSpec(
        key="ibkr",
        name="Interactive Brokers (Flex)",
        kind=Kind.API_TOKEN,
        source="ibkr",
        api_base_url=flex.rstrip("/"),
        website="www.interactivebrokers.com",
    )
    # Banks in the EEA and the UK through PSD2: the person picks their bank and consents
    # there; in development and testing, the look-alike this API serves.
    enable_banking = enablebanking_api.application(settings)
    eb_extra = {"key_file": str(enable_banking.key_file)} if enable_banking else {}
    if enable_banking and (problem := enablebanking_api.key_problem(enable_banking, settings)):
        log.error("Enable Banking cannot be connected here: %s", problem)
        eb_extra["problem"] = problem
    registry["enablebanking"] = ProviderSpec(
        key="enablebanking",
        name="Enable Banking",
        kind=Kind.CONSENT,
        client_id=enable_banking.app_id if enable_banking else "",
        pkce=False,
        source="enablebanking",
        api_base_url=enable_banking.base_url if enable_banking else None,
        website="enablebanking.com",
        extra=eb_extra,
    )
    # Plaid Link: the team's keys (the look-alike's own in development and testing, where the
    # look-alike this API serves answers unless keys of a real team are set).
    plaid_id, plaid_secret = plaid_keys(settings)
    registry["plaid"] = ProviderSpec(
        key="plaid",
        name="Plaid",
        kind=Kind.LINK,
        client_id=plaid_id,
        client_secret=plaid_secret,
        source="plaid",
        api_base_url=plaid_base_url(settings),
        website="plaid.com",
    )
    for generic in settings.OAUTH_PROVIDERS:
        registry[generic.key] = ProviderSpec(
            key=generic.key,
            name=generic.name,
            authorize_url=str(generic.authorize_url),
            token_url=str(generic.token_url),
            revocation_url=str(generic.revocation_url) if generic.revocation_url else None,
            client_id=generic.client_id,
            client_secret=generic.client_secret,
            scopes=tuple(generic.scopes),
            client_auth_method=generic.client_auth_method,
            pkce=generic.pkce,
        )
    return registry
