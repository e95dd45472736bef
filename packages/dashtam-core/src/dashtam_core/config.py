"""Settings: process environment > env file > class defaults (pydantic-settings).

The env file is chosen by ``DASHTAM_ENV_FILE``; without it, by ``ENVIRONMENT`` in the process
environment (``testing`` -> ``env/.env.test``, anything else -> ``env/.env.dev``). ``TestSettings``
adds the checks that only make sense for a test process.
"""

import ipaddress
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from dashtam_core.test_database_guard import check_test_database_config
from dashtam_core.vault import parse_keys

Environment = Literal["development", "testing", "staging", "production"]

PLACEHOLDERS = ("change-me", "changeme", "change_me", "replace-me")
DEFAULT_ENV_FILES = {"testing": "env/.env.test"}
DEFAULT_ENV_FILE = "env/.env.dev"


class GenericProviderConfig(BaseModel):
    """A standard OAuth2 institution declared in configuration (no code needed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,39}$")
    name: str = Field(min_length=1, max_length=100)
    authorize_url: HttpUrl
    token_url: HttpUrl
    revocation_url: HttpUrl | None = None
    client_id: str = Field(min_length=1)
    client_secret: str = ""
    scopes: list[str] = Field(default_factory=list)
    client_auth_method: Literal["basic", "post"] = "basic"
    pkce: bool = True


class ConfigError(Exception):
    """Configuration that cannot be used; the message is one line and names the setting."""


def _is_placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(p in lowered for p in PLACEHOLDERS)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=DEFAULT_ENV_FILE, env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    ENVIRONMENT: Environment = "development"
    DATABASE_URL: str = "postgresql+asyncpg://dashtam_user:change-me@127.0.0.1:55432/dashtam"
    REDIS_URL: str = "redis://dashtam_user:change-me@127.0.0.1:56379/0"
    SECRET_KEY: str = "change-me"  # noqa: S105 -- a placeholder, refused outside dev/test

    DB_ECHO: bool = False
    DB_POOL_SIZE: int = Field(default=10, ge=1, le=200)
    DB_MAX_OVERFLOW: int = Field(default=10, ge=0, le=200)
    DB_POOL_TIMEOUT: float = Field(default=10.0, gt=0)
    DB_POOL_RECYCLE: int = Field(default=1800, ge=-1)
    DB_CONNECT_TIMEOUT: float = Field(default=5.0, gt=0)
    # Test each pooled connection with a round trip before a session uses it, so that one the
    # server closed (a restart, a failover) is replaced before anything is sent on it.
    DB_POOL_PRE_PING: bool = True

    API_HOST: str = "127.0.0.1"
    API_PORT: int = Field(default=8000, ge=1, le=65535)
    CALLBACK_HOST: str = "127.0.0.1"
    CALLBACK_PORT: int = Field(default=8182, ge=1, le=65535)
    API_BASE_URL: str = "https://localhost:8000"
    CALLBACK_BASE_URL: str = "https://localhost:8182"

    SSL_CERT_FILE: Path = Path("certs/server.pem")
    SSL_KEY_FILE: Path = Path("certs/server-key.pem")
    CA_CERT_FILE: Path = Path("certs/ca.pem")

    HEALTH_TIMEOUT_SECONDS: float = Field(default=2.0, gt=0, le=30)
    # /health answers from a probe at most this old (one probe per interval per process, not
    # per request); an outage shows within it plus HEALTH_TIMEOUT_SECONDS. 0: every request.
    HEALTH_CACHE_SECONDS: float = Field(default=1.0, ge=0, le=60)

    # Users and sessions.
    ACCESS_TOKEN_MINUTES: int = Field(default=15, ge=1, le=24 * 60)
    REFRESH_TOKEN_DAYS: int = Field(default=30, ge=1, le=365)
    # Who may register: anyone (open), whoever holds an administrator's invitation (invite), or
    # nobody (closed: administrators create accounts with `inv user-create`). Unset: open in
    # development and testing, invite everywhere else.
    REGISTRATION: Literal["open", "invite", "closed"] | None = None
    # Mail (password reset): smtp://[user:password@]host:port (STARTTLS, required) or smtps://
    # (TLS from the start); the server's certificate is verified (the system's CAs and the
    # project's). Empty: no mail is sent (a reset answers 409; `inv user-reset-password`).
    SMTP_URL: str = ""
    MAIL_FROM: str = "Dashtam <dashtam@localhost>"
    SMTP_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=120)
    # A link that verifies an address works once, for this long.
    EMAIL_VERIFICATION_HOURS: int = Field(default=48, ge=1, le=24 * 30)
    # A SimpleFIN setup token can be claimed once, within this long of its making.
    SIMPLEFIN_SETUP_TOKEN_MINUTES: int = Field(default=60, ge=1, le=7 * 24 * 60)
    # The longest answer read from a SimpleFIN server (a person's Bridge, or any server their
    # setup token names): a year of a busy person's accounts is a few MB. Past it the read
    # stops and fails; no more is ever held in memory.
    SIMPLEFIN_MAX_ANSWER_BYTES: int = Field(default=32 * 1024 * 1024, ge=1024, le=1024**3)
    # A password reset link works once, for this long.
    PASSWORD_RESET_MINUTES: int = Field(default=30, ge=5, le=24 * 60)
    # With a second factor on, a password opens a challenge this long, for this many codes.
    SECOND_FACTOR_CHALLENGE_SECONDS: int = Field(default=300, ge=30, le=3600)
    SECOND_FACTOR_ATTEMPTS: int = Field(default=5, ge=1, le=100)
    # An invitation can be used this long after it was made.
    INVITATION_DAYS: int = Field(default=7, ge=1, le=365)
    # Each API process reads the sessions ended elsewhere this often: an access token of an
    # ended session stops working within it (auth/ended_sessions.py).
    SESSION_SYNC_SECONDS: float = Field(default=1.0, gt=0, le=60)
    # Guessed credentials (dashtam_api/throttle.py): past LOGIN_MAX_FAILURES failures of one
    # credential from one address, that pair waits LOGIN_BACKOFF_SECONDS, doubling with each
    # further failure up to LOGIN_LOCKOUT_SECONDS. Past LOGIN_CREDENTIAL_MAX_FAILURES from
    # everywhere, each address may try that credential once per LOGIN_SLOW_SECONDS (slowed, never
    # locked: its owner still gets in). Past LOGIN_ADDRESS_MAX_FAILURES failures across
    # credentials, an address's failed attempts are answered 429 (its right ones still pass).
    LOGIN_MAX_FAILURES: int = Field(default=5, ge=1, le=1000)
    LOGIN_BACKOFF_SECONDS: int = Field(default=30, ge=1, le=86400)
    LOGIN_LOCKOUT_SECONDS: int = Field(default=900, ge=1, le=86400)
    LOGIN_CREDENTIAL_MAX_FAILURES: int = Field(default=50, ge=1, le=100000)
    LOGIN_SLOW_SECONDS: int = Field(default=10, ge=1, le=3600)
    LOGIN_ADDRESS_MAX_FAILURES: int = Field(default=50, ge=1, le=100000)
    # argon2id costs; the defaults are pwdlib's (argon2-cffi's) recommendation. Only the test env
    # lowers them, to keep hundreds of sign-ups fast; elsewhere weaker values are refused.
    PASSWORD_HASH_TIME_COST: int = Field(default=3, ge=1, le=20)
    PASSWORD_HASH_MEMORY_KIB: int = Field(default=65536, ge=8, le=1048576)
    PASSWORD_HASH_PARALLELISM: int = Field(default=4, ge=1, le=16)

    # Provider tokens at rest and the OAuth flow.
    TOKEN_ENCRYPTION_KEYS: str = ""
    CALLBACK_SHARED_SECRET: str = "change-me"  # noqa: S105 -- a placeholder, refused outside dev/test
    OAUTH_STATE_TTL_SECONDS: int = Field(default=600, ge=30, le=3600)
    OAUTH_HTTP_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=120)
    SANDBOX_CLIENT_ID: str = "dashtam-sandbox"
    SANDBOX_CLIENT_SECRET: str = "change-me"  # noqa: S105 -- a placeholder
    # How long the sandbox's token endpoint takes to answer: 0 locally; a benchmark sets a real
    # institution's network latency (tens to hundreds of milliseconds).
    SANDBOX_TOKEN_LATENCY_SECONDS: float = Field(default=0.0, ge=0, le=10)
    SCHWAB_CLIENT_ID: str = ""
    SCHWAB_CLIENT_SECRET: str = ""
    SCHWAB_AUTHORIZE_URL: str = "https://api.schwabapi.com/v1/oauth/authorize"
    SCHWAB_TOKEN_URL: str = "https://api.schwabapi.com/v1/oauth/token"  # noqa: S105
    SCHWAB_API_BASE_URL: str = "https://api.schwabapi.com/trader/v1"
    # IBKR's Flex Web Service (version 3). Unset: IBKR's own in production, the look-alike this
    # API serves (sandbox/ibkr_flex.py) in development and testing.
    IBKR_FLEX_BASE_URL: str | None = None
    # IBKR's pace: one Flex request a second per token (more is its error 1018); a statement's
    # waits are counted in it too. The test environment's look-alike keeps a shorter one.
    IBKR_FLEX_PACE_SECONDS: float = Field(default=1.0, ge=0.01, le=10)
    # Enable Banking (EEA and UK banks through PSD2): the application's id (the JWT's kid) and
    # its private key (a PEM file), from the Control Panel (docs/providers.md). Unset in
    # development and testing: the look-alike this API serves (/sandbox/enablebanking), with
    # the key `inv setup` makes (certs/enablebanking-sandbox-key.pem).
    ENABLE_BANKING_APP_ID: str = ""
    ENABLE_BANKING_KEY_FILE: str = ""
    ENABLE_BANKING_BASE_URL: str = "https://api.enablebanking.com"
    # The longest consent asked of a bank (less when the bank allows less): the person
    # reconnects after it (PSD2 consents run 90 to 180 days).
    ENABLE_BANKING_CONSENT_DAYS: int = Field(default=180, ge=1, le=730)
    # Read booked transactions only (transaction_status=BOOK), as Enable Banking's staff advise
    # where a bank books a pending entry under another entry_reference: no pendings are shown.
    ENABLE_BANKING_BOOKED_ONLY: bool = False
    # Plaid (docs/providers.md): the team's keys (dashboard.plaid.com, Developers > Keys) and
    # which of Plaid's environments they are for. Unset in development and testing: Plaid's
    # look-alike this API serves (/sandbox/plaid) answers, with its own keys. PLAID_BASE_URL
    # overrides where the calls go (empty: PLAID_ENV's host, or the look-alike).
    PLAID_CLIENT_ID: str = ""
    PLAID_SECRET: str = ""
    PLAID_ENV: Literal["sandbox", "production"] = "sandbox"
    PLAID_BASE_URL: str = ""
    # Where Plaid sends an item's webhooks (this API's public URL + /api/v1/plaid/webhook);
    # empty: API_BASE_URL's in development and testing, none elsewhere (syncs run on schedule).
    PLAID_WEBHOOK_URL: str = ""
    OAUTH_PROVIDERS: list[GenericProviderConfig] = Field(default_factory=list)
    # Connections to institutions kept open per process (token endpoints and data APIs).
    INSTITUTION_MAX_CONNECTIONS: int = Field(default=20, ge=1, le=500)
    # A failed call to an institution is sent again at most this many times, when that is safe
    # (dashtam_api/upstream.py: never a token exchange that may have arrived), after a back-off
    # starting at this many seconds, doubling, with as much jitter.
    INSTITUTION_RETRIES: int = Field(default=2, ge=0, le=10)
    INSTITUTION_RETRY_WAIT_SECONDS: float = Field(default=0.5, ge=0, le=30)

    # Keeping connections alive (docs/refresh.md). The API process runs the refresher and the
    # sync loop unless this is off (the test env turns it off; tests start their own loops).
    BACKGROUND_JOBS_ENABLED: bool = True
    # The refresher refreshes every access token that expires within this window...
    REFRESH_WINDOW_SECONDS: int = Field(default=300, ge=10, le=86400)
    # ...looking every this many seconds, at most this many at once per process.
    REFRESH_INTERVAL_SECONDS: float = Field(default=15.0, gt=0, le=3600)
    REFRESH_CONCURRENCY: int = Field(default=8, ge=1, le=200)
    # Code that needs an access token refreshes it first when it expires within this margin.
    REFRESH_MARGIN_SECONDS: int = Field(default=60, ge=0, le=3600)
    # Consecutive failures before a connection turns "error" when the last is not transient
    # (invalid_grant: at once; transient failures alone never do, docs/refresh.md).
    REFRESH_MAX_FAILURES: int = Field(default=5, ge=1, le=100)
    # Back-off after the n-th consecutive failure: base * 2**(n-1), capped.
    REFRESH_BACKOFF_SECONDS: float = Field(default=30.0, gt=0, le=86400)
    REFRESH_BACKOFF_MAX_SECONDS: float = Field(default=1800.0, gt=0, le=86400)
    # Each active connection is synced this often; a sync holds its claim at most this long.
    SYNC_INTERVAL_SECONDS: int = Field(default=3600, ge=10, le=7 * 86400)
    SYNC_LEASE_SECONDS: int = Field(default=300, ge=10, le=86400)
    # A failed background sync is tried again after this long.
    SYNC_RETRY_SECONDS: int = Field(default=300, ge=1, le=86400)
    # Sync runs (GET /providers/{id}/sync-runs) older than this are deleted by the sync loop.
    SYNC_RUNS_RETENTION_DAYS: int = Field(default=90, ge=1, le=3650)
    # Transactions (docs/transactions.md): each sync reads again from the newest posted one
    # less this many days, catching late and corrected ones; a posted transaction that does not
    # name its pending one completes it only when it posted within this many days of it.
    TRANSACTIONS_OVERLAP_DAYS: int = Field(default=10, ge=0, le=365)
    TRANSACTIONS_PENDING_MATCH_DAYS: int = Field(default=7, ge=0, le=60)
    # Imports (docs/imports.md): a file's row without an id already held is a duplicate of a
    # held row of the same amount within this many days and a similar description. A file
    # larger than IMPORT_MAX_BYTES is refused (413).
    IMPORT_MATCH_DAYS: int = Field(default=3, ge=0, le=30)
    IMPORT_MAX_BYTES: int = Field(default=200 * 1024 * 1024, ge=1024)
    # Any other request's body (JSON documents are small): larger ones are refused (413) before
    # they are read (dashtam_api/body_limit.py).
    REQUEST_MAX_BYTES: int = Field(default=1024 * 1024, ge=1024)
    # Webhooks (docs/webhooks.md). An attempt waits this long for the receiver's answer; a
    # delivery is retried after WEBHOOK_RETRY_BASE_SECONDS, then 4x longer each time (at most
    # WEBHOOK_RETRY_MAX_SECONDS, +-20% jitter), for WEBHOOK_RETRY_HOURS; an endpoint that has
    # failed that long without a success is disabled.
    WEBHOOK_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=60)
    WEBHOOK_RETRY_BASE_SECONDS: float = Field(default=5.0, gt=0, le=3600)
    WEBHOOK_RETRY_MAX_SECONDS: float = Field(default=6 * 3600.0, gt=0, le=86400)
    WEBHOOK_RETRY_HOURS: float = Field(default=24.0, gt=0, le=24 * 14)
    # Targets at loopback, private, link-local or metadata addresses are refused unless this is
    # on; unset, it is on in development and testing only. Plain http is refused outside them.
    WEBHOOK_ALLOW_PRIVATE: bool | None = None
    # connection.reauth_required goes out once the refresh token ends within this many hours.
    WEBHOOK_REAUTH_NOTICE_HOURS: int = Field(default=48, ge=1, le=24 * 30)
    # Attempts one dispatcher sends at once; it also looks for due ones this often when no
    # NOTIFY wakes it sooner (a commit that emits one does).
    WEBHOOK_CONCURRENCY: int = Field(default=16, ge=1, le=256)
    WEBHOOK_POLL_SECONDS: float = Field(default=5.0, gt=0, le=3600)
    WEBHOOK_ENDPOINTS_PER_USER: int = Field(default=20, ge=1, le=1000)
    # Finished deliveries and their attempts older than this are deleted by the dispatchers.
    WEBHOOK_RETENTION_DAYS: int = Field(default=30, ge=1, le=3650)
    # Strict-Transport-Security's max-age (dashtam_api/headers.py); unset: a year, or five
    # minutes in development and testing (served on localhost, shared by every local server).
    HSTS_MAX_AGE_SECONDS: int | None = Field(default=None, ge=0, le=2 * 365 * 86400)
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # uvicorn's line per request (read by infra when it starts the servers): off by default.
    ACCESS_LOG: bool = False
    # FastAPI's own OpenTelemetry instrumentation (spans, metrics and logs through the globally
    # configured providers). Off unless asked for: even with no provider configured it looks
    # them up on every request (~3% of a cheap read, docs/performance.md).
    OTEL_INSTRUMENTATION: bool = False
    # /metrics in the Prometheus text format, answered only to clients in these networks
    # (comma-separated addresses or CIDR networks; anyone else gets a 404): the scraper's, never
    # the public's (docs/metrics.md).
    METRICS_ENABLED: bool = True
    METRICS_ALLOW_FROM: str = "127.0.0.0/8,::1/128"
    # The reverse proxies in front of the API (comma-separated addresses or CIDR networks): only
    # a request from one of them has its X-Forwarded-For read for the client's address (the
    # throttles, the audit, METRICS_ALLOW_FROM). Empty: nobody's is, the peer is the client.
    TRUSTED_PROXIES: str = ""
    # On SIGTERM/SIGINT (`inv down`), requests under way get this long to finish (read by infra
    # when it starts the servers: uvicorn's --timeout-graceful-shutdown).
    SHUTDOWN_GRACE_SECONDS: int = Field(default=10, ge=0, le=300)
    # Identifies this checkout's test databases: the marker init-test-db looks for before it
    # rebuilds anything (test_database_guard.py). `inv setup` writes it into env/.env.test.
    PROJECT_ID: str = ""

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except Exception as exc:
            raise ValueError(f"not a database URL ({exc})") from None
        if url.drivername != "postgresql+asyncpg":
            raise ValueError("must start with postgresql+asyncpg://")
        if not url.database:
            raise ValueError("names no database")
        return value

    @field_validator("TOKEN_ENCRYPTION_KEYS")
    @classmethod
    def _token_keys(cls, value: str) -> str:
        if value:
            parse_keys(value)  # raises ValueError with the reason
        return value

    @field_validator("METRICS_ALLOW_FROM", "TRUSTED_PROXIES")
    @classmethod
    def _metrics_allow_from(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or network") from None
        return value

    @field_validator("SMTP_URL")
    @classmethod
    def _smtp_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("smtp", "smtps"):
            raise ValueError("must be smtp://host:port (STARTTLS) or smtps://host:port (TLS)")
        return value

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://")):
            raise ValueError("must start with redis:// or rediss://")
        return value

    @model_validator(mode="after")
    def _no_placeholders_outside_dev(self) -> "Settings":
        if self.ENVIRONMENT in ("development", "testing"):
            return self
        secrets = {
            "SECRET_KEY": self.SECRET_KEY,
            "DATABASE_URL": self.database_url.password or "",
            "REDIS_URL": self.REDIS_URL,
            "CALLBACK_SHARED_SECRET": self.CALLBACK_SHARED_SECRET,
        }
        for name, value in secrets.items():
            if _is_placeholder(value):
                raise ValueError(f"{name} holds a placeholder value; generate a real secret")
        if len(self.SECRET_KEY) < 32:
            raise ValueError("SECRET_KEY must be at least 32 characters")
        if not self.TOKEN_ENCRYPTION_KEYS:
            raise ValueError("TOKEN_ENCRYPTION_KEYS is empty; generate a key")
        if self.PASSWORD_HASH_MEMORY_KIB < 19456 or self.PASSWORD_HASH_TIME_COST < 2:
            raise ValueError(
                "PASSWORD_HASH_* below OWASP's argon2id minimum (19 MiB, 2 passes) outside tests"
            )
        return self

    @property
    def database_url(self) -> URL:
        return make_url(self.DATABASE_URL)

    @property
    def database_name(self) -> str:
        return self.database_url.database or ""

    @property
    def is_development(self) -> bool:
        return self.ENVIRONMENT == "development"

    @property
    def local_environment(self) -> bool:
        """Development or testing: plain http and private webhook targets are allowed."""
        return self.ENVIRONMENT in ("development", "testing")

    @property
    def registration(self) -> str:
        if self.REGISTRATION is None:
            return "open" if self.local_environment else "invite"
        return self.REGISTRATION

    @property
    def hsts_seconds(self) -> int:
        if self.HSTS_MAX_AGE_SECONDS is None:
            return 300 if self.local_environment else 365 * 86400
        return self.HSTS_MAX_AGE_SECONDS

    @property
    def webhook_allow_private(self) -> bool:
        if self.WEBHOOK_ALLOW_PRIVATE is None:
            return self.local_environment
        return self.WEBHOOK_ALLOW_PRIVATE


class TestSettings(Settings):
    """Settings of a test process: ENVIRONMENT must be testing and the database a test one."""

    __test__ = False  # a settings class, not a pytest test class

    ENVIRONMENT: Environment = "testing"
    # The development database this test process must never be pointed at.
    DEV_DATABASE_NAME: str = "dashtam"

    @model_validator(mode="after")
    def _must_be_a_test_configuration(self) -> "TestSettings":
        problem = check_test_database_config(
            environment=self.ENVIRONMENT,
            database_url=self.DATABASE_URL,
            dev_database_name=self.DEV_DATABASE_NAME,
        )
        if problem:
            raise ValueError(problem)
        return self


def env_file_path() -> Path:
    explicit = os.environ.get("DASHTAM_ENV_FILE")
    if explicit:
        return Path(explicit)
    return Path(DEFAULT_ENV_FILES.get(os.environ.get("ENVIRONMENT", ""), DEFAULT_ENV_FILE))


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "settings"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"invalid setting {where}: {message}{more}"


def load_settings(cls: type[Settings] | None = None, env_file: Path | None = None) -> Settings:
    """Build settings from the process environment and the chosen env file.

    Raises ConfigError with a one-line message that names the offending setting.
    """
    path = env_file or env_file_path()
    if not path.is_file():
        raise ConfigError(f"env file {path} not found; run `inv setup` to generate it")
    if cls is None:
        environment = os.environ.get("ENVIRONMENT") or peek_env_file("ENVIRONMENT", path)
        cls = TestSettings if environment == "testing" else Settings
    try:
        return cls(_env_file=path)
    except ValidationError as exc:
        raise ConfigError(f"{_describe(exc)} [env file {path}]") from None


def peek_env_file(key: str, path: Path | None = None) -> str | None:
    """One raw key of the (chosen) env file, read the way pydantic-settings reads it."""
    path = path or env_file_path()
    return dotenv_values(path).get(key) if path.is_file() else None


def settings_or_exit(program: str) -> Settings:
    """The process's settings, or one line on stderr and exit 1 (for server start-up)."""
    try:
        return get_settings()
    except ConfigError as exc:
        # One line instead of a traceback from inside uvicorn's factory call.
        print(f"{program}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The one settings object of this process."""
    return load_settings()
