"""The app's collaborators, made once per process: one object, one dependency, one argument.

The API's factory opens it (and its lifespan closes it); the background jobs and the
`dashtam-jobs` command open the same thing outside any request, so a refresh or a sync runs the
same code wherever it starts. It is the only thing the API keeps on ``app.state``: requests
reach it through deps.py (``ContextDep``, and the aliases for its parts).
"""

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpcore
import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.auth.ended_sessions import EndedSessions
from dashtam_api.auth.security import Passwords
from dashtam_api.connections.oauth import AsyncOAuth2Client, client_for, tls_context
from dashtam_api.health.service import HealthProbe
from dashtam_api.mail import Mailer
from dashtam_api.providers.registry import ProviderSpec, build_registry
from dashtam_api.webhooks.targets import GuardedBackend
from dashtam_core.cache import create_redis
from dashtam_core.config import Settings
from dashtam_core.database import Database, Reader
from dashtam_core.lost_dependencies import lost_dependency, root_cause
from dashtam_core.vault import Vault

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    settings: Settings
    db: Database
    redis: Redis
    vault: Vault
    registry: dict[str, ProviderSpec]
    tls: ssl.SSLContext
    # One connection pool to the institutions (token endpoints and data APIs), so a thousand
    # refreshes reuse a few TLS sessions instead of shaking hands a thousand times.
    transport: httpx.AsyncHTTPTransport
    passwords: Passwords
    mailer: Mailer
    # Sessions ended (in this process at once, in every other within SESSION_SYNC_SECONDS).
    ended: EndedSessions
    health: HealthProbe
    # Where requests and jobs (a refresh, a sync) open their own transactions: the database's
    # sessionmaker; tests point it at their own transaction.
    sessions: Callable[[], AsyncSession] = field(default=None)  # type: ignore[assignment]
    # What the hot read paths read with (one statement each): the database's pool reader;
    # tests point it at their own transaction's connection.
    reader: Reader = field(default=None)  # type: ignore[assignment]

    # A second pool, for servers a person names (a SimpleFIN access URL): every address it
    # connects to is checked first (webhooks/targets.py), made on first use; tests may point
    # it at an in-process app.
    guarded: httpx.AsyncBaseTransport | None = None

    _token_clients: dict[str, AsyncOAuth2Client] = field(default_factory=dict)
    _when_back: set[asyncio.Task] = field(default_factory=set)
    closed: bool = False

    def __post_init__(self) -> None:
        if self.sessions is None:
            self.sessions = self.db.sessionmaker
        if self.reader is None:
            self.reader = self.db.reader

    @classmethod
    def open(cls, settings: Settings) -> "AppContext":
        """Everything made, nothing connected yet (pools connect on first use)."""
        tls = tls_context(settings.CA_CERT_FILE)
        db, redis = Database.from_settings(settings), create_redis(settings)
        return cls(
            settings=settings,
            db=db,
            redis=redis,
            vault=Vault.from_spec(settings.TOKEN_ENCRYPTION_KEYS),
            registry=build_registry(settings),
            tls=tls,
            transport=httpx.AsyncHTTPTransport(
                verify=tls,
                limits=httpx.Limits(
                    max_connections=settings.INSTITUTION_MAX_CONNECTIONS,
                    max_keepalive_connections=settings.INSTITUTION_MAX_CONNECTIONS,
                ),
            ),
            passwords=Passwords(settings),
            mailer=Mailer(settings, tls),
            ended=EndedSessions(redis, token_seconds=settings.ACCESS_TOKEN_MINUTES * 60),
            health=HealthProbe(settings=settings, db=db, redis=redis),
        )

    def token_client(self, spec: ProviderSpec) -> AsyncOAuth2Client:
        """Authlib's client for an institution's token endpoint, one per provider kind, made
        once: refreshes share it (each reads only what its own call returns)."""
        client = self._token_clients.get(spec.key)
        if client is None:
            client = client_for(
                spec,
                redirect_uri=None,
                tls=self.tls,
                timeout=self.settings.OAUTH_HTTP_TIMEOUT_SECONDS,
                transport=self.lent_transport(),
                scoped=False,  # RFC 6749 6: an omitted scope means the scope originally granted
            )
            self._token_clients[spec.key] = client
        return client

    def lent_transport(self) -> httpx.AsyncBaseTransport:
        """The shared pool for a short-lived client: closing that client leaves it open."""
        return _Unclosable(self.transport)

    def http(self, **kwargs) -> httpx.AsyncClient:
        """A client on the shared pool."""
        return httpx.AsyncClient(
            transport=self.lent_transport(),
            timeout=self.settings.OAUTH_HTTP_TIMEOUT_SECONDS,
            **kwargs,
        )

    def guarded_http(self, **kwargs) -> httpx.AsyncClient:
        """A client on the guarded pool (addresses checked before each connection, no
        redirects followed)."""
        if self.guarded is None:
            self.guarded = guarded_transport(self.settings, self.tls)
        return httpx.AsyncClient(
            transport=_Unclosable(self.guarded),
            timeout=self.settings.OAUTH_HTTP_TIMEOUT_SECONDS,
            follow_redirects=False,
            **kwargs,
        )

    async def close_idle_connections(self) -> None:
        """Close the pool's keep-alive connections that carry no request right now.

        At shutdown: a server waits for its clients' connections to close, and in development
        and tests the sandbox institution is this very server, so the pool's idle connections
        to it would hold the shutdown up. Requests under way keep theirs.
        """
        pool = getattr(self.transport, "_pool", None)  # httpx keeps httpcore's pool private
        for connection in list(getattr(pool, "connections", ())):
            if connection.is_idle():
                await connection.aclose()

    def in_background(self, what: str, work: Awaitable[object]) -> None:
        """Run ``work`` after the request has been answered (a mail to send, say); a failure
        is logged, never raised. Kept until done, cancelled at close."""
        task = asyncio.ensure_future(self._logged(what, work))
        self._when_back.add(task)
        task.add_done_callback(self._when_back.discard)

    async def settle(self) -> None:
        """Until the background work under way has finished (what a test waits for)."""
        while self._when_back:
            await asyncio.gather(*list(self._when_back), return_exceptions=True)

    @staticmethod
    async def _logged(what: str, work: Awaitable[object]) -> None:
        try:
            await work
        except Exception as exc:
            log.warning("%s failed: %s", what, root_cause(exc))

    def when_back(
        self, what: str, write: Callable[[], Awaitable[object]], *, within: float
    ) -> None:
        """Run ``write`` in the background until our database (or cache) takes it, backing off,
        for at most ``within`` seconds: what a failure left to put right once it is back (a
        sync's claim to give back). Another kind of error ends it at once, logged."""
        task = asyncio.create_task(self._until_back(what, write, within))
        self._when_back.add(task)
        task.add_done_callback(self._when_back.discard)

    async def _until_back(self, what: str, write, within: float) -> None:
        deadline, wait = time.monotonic() + within, 0.1
        while True:
            try:
                await write()
                return
            except Exception as exc:
                if lost_dependency(exc) is None or time.monotonic() + wait > deadline:
                    log.warning("gave up on %s: %s", what, root_cause(exc))
                    return
            await asyncio.sleep(wait)
            wait = min(wait * 2, 0.5)  # a cheap write: soon after the database is back

    async def close(self) -> None:
        # What is still waiting for the database is left to its deadline's fallback (a claim
        # lapses by itself).
        for task in list(self._when_back):
            task.cancel()
        await asyncio.gather(*self._when_back, return_exceptions=True)
        await self.transport.aclose()
        if self.guarded is not None:
            await self.guarded.aclose()
        await self.redis.aclose()
        await self.db.dispose()
        self.closed = True


def guarded_transport(settings: Settings, tls: ssl.SSLContext) -> httpx.AsyncHTTPTransport:
    """httpx's transport on a pool whose network backend checks every address it connects to
    as a webhook's is (httpx takes no backend of its own: its pool is replaced, as
    close_idle_connections reads it)."""
    transport = httpx.AsyncHTTPTransport(verify=tls)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=tls,
        max_connections=settings.INSTITUTION_MAX_CONNECTIONS,
        max_keepalive_connections=settings.INSTITUTION_MAX_CONNECTIONS,
        keepalive_expiry=30.0,
        network_backend=GuardedBackend(allow_private=settings.webhook_allow_private),
    )
    return transport


class _Unclosable(httpx.AsyncBaseTransport):
    """Lends the shared transport to a short-lived client without letting it close the pool."""

    def __init__(self, transport: httpx.AsyncHTTPTransport):
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        return None
