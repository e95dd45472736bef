"""The OAuth2 protocol work: state kept server-side, PKCE, and Authlib's client on httpx."""

import functools
import json
import secrets
import ssl
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from authlib.deprecate import AuthlibDeprecationWarning
from redis.asyncio import Redis

from dashtam_api.providers.registry import ProviderSpec

# Authlib 1.9 prefers the "httpx2" fork and warns on import when it falls back to httpx, which
# this project uses everywhere (and whose exceptions the services catch); moving is a change of
# its own. authlib.deprecate installs an "always" filter on import, so ours goes in after it.
warnings.filterwarnings(
    "ignore", message="The httpx module is deprecated", category=AuthlibDeprecationWarning
)

from authlib.integrations.httpx_client import AsyncOAuth2Client  # noqa: E402
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # noqa: E402

STATE_PREFIX = "oauth:state:"


def new_code_verifier() -> str:
    """RFC 7636: 43-128 characters from the unreserved set; 64 here."""
    return secrets.token_urlsafe(48)


def code_challenge(verifier: str) -> str:
    return create_s256_code_challenge(verifier)


@dataclass(frozen=True)
class PendingAuthorization:
    """What the state stands for, kept in Valkey; the code verifier never leaves the server."""

    user_id: str
    provider_id: str
    connection_id: str
    code_verifier: str | None
    redirect_uri: str


async def save_state(redis: Redis, pending: PendingAuthorization, ttl: int) -> str:
    state = secrets.token_urlsafe(32)
    await redis.set(STATE_PREFIX + state, json.dumps(asdict(pending)), ex=ttl, nx=True)
    return state


async def take_state(redis: Redis, state: str) -> PendingAuthorization | None:
    """The pending authorization for state, at most once (GETDEL is atomic)."""
    if not state or len(state) > 200:
        return None
    raw = await redis.getdel(STATE_PREFIX + state)
    return PendingAuthorization(**json.loads(raw)) if raw else None


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """The system's trust store plus the project's CA (the sandbox is served under it).

    One per CA file (and version of it) in a process: reading the system's store costs ~50 ms
    of CPU, an app and its context each asked for one, and the tests build apps by the hundred.
    A context is made to be shared by the connections that use it; nobody here changes one
    after it is made. A CA remade (`inv certs --force`) is a new version: a new context."""
    version = ca_file.stat().st_mtime_ns if ca_file.is_file() else None
    return _tls_context(ca_file, version)


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: Path, version: int | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if version is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def client_for(
    spec: ProviderSpec,
    *,
    redirect_uri: str | None,
    tls: ssl.SSLContext,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
    scoped: bool = True,
) -> AsyncOAuth2Client:
    """Authlib's client for one institution; on a shared ``transport`` when given (its pool)."""
    connection = {"transport": transport} if transport is not None else {"verify": tls}
    return AsyncOAuth2Client(
        client_id=spec.client_id,
        client_secret=spec.client_secret,
        token_endpoint_auth_method=spec.token_endpoint_auth_method,
        redirect_uri=redirect_uri,
        scope=(" ".join(spec.scopes) or None) if scoped else None,
        code_challenge_method="S256" if spec.pkce else None,
        timeout=timeout,
        **connection,
    )


def authorization_url(
    spec: ProviderSpec, client: AsyncOAuth2Client, *, state: str, code_verifier: str | None
) -> str:
    url, _ = client.create_authorization_url(
        spec.authorize_url, state=state, code_verifier=code_verifier
    )
    return url


def new_pending(
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    connection_id: uuid.UUID,
    spec: ProviderSpec,
    redirect_uri: str,
) -> PendingAuthorization:
    return PendingAuthorization(
        user_id=str(user_id),
        provider_id=str(provider_id),
        connection_id=str(connection_id),
        code_verifier=new_code_verifier() if spec.pkce else None,
        redirect_uri=redirect_uri,
    )
