"""The app factory: ``uvicorn dashtam_api.main:create_app --factory``."""

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from dashtam_api import __version__, docs, metrics, openapi
from dashtam_api.accounts.router import router as accounts_router
from dashtam_api.apikeys.router import router as api_keys_router
from dashtam_api.auth.admin_router import router as admin_router
from dashtam_api.auth.reset_page import router as reset_page_router
from dashtam_api.auth.router import router as auth_router
from dashtam_api.body_limit import BodyLimit
from dashtam_api.connections.link_page import router as link_page_router
from dashtam_api.connections.router import router as connections_router
from dashtam_api.console.accounts_router import router as console_accounts_router
from dashtam_api.console.connections_router import router as console_connections_router
from dashtam_api.console.router import router as console_router
from dashtam_api.console.security_router import router as console_security_router
from dashtam_api.console.sharing_router import router as console_sharing_router
from dashtam_api.context import AppContext
from dashtam_api.headers import SecurityHeaders
from dashtam_api.health.router import router as health_router
from dashtam_api.imports.router import router as imports_router
from dashtam_api.jobs.loops import Jobs
from dashtam_api.plaid_webhooks.router import router as plaid_webhooks_router
from dashtam_api.problems import install_problem_handlers
from dashtam_api.providers.router import router as providers_router
from dashtam_api.routing import include
from dashtam_api.sandbox.enablebanking import router as enablebanking_router
from dashtam_api.sandbox.ibkr_flex import router as ibkr_flex_router
from dashtam_api.sandbox.plaid_lookalike import router as plaid_lookalike_router
from dashtam_api.sandbox.router import router as sandbox_router
from dashtam_api.sandbox.simplefin_bridge import router as simplefin_bridge_router
from dashtam_api.simplefin.router import protocol as simplefin_protocol
from dashtam_api.simplefin.router import router as simplefin_router
from dashtam_api.transactions.router import router as transactions_router
from dashtam_api.webhooks.router import router as webhooks_router
from dashtam_core.config import Settings, settings_or_exit

log = logging.getLogger("dashtam.api")


def _on_exit_signals(callback) -> None:
    """Run ``callback`` on the event loop when the server is told to stop (SIGINT, SIGTERM),
    before uvicorn drains its connections; uvicorn's own handlers (signal.signal) still run."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(sig, frame, previous=previous):
            loop.call_soon_threadsafe(callback)
            previous(sig, frame)

        signal.signal(signum, handler)


async def _let_go(ctx: AppContext, jobs: Jobs | None) -> None:
    """Between the stop signal and the lifespan's shutdown: no new background work (work under
    way finishes), and outbound connections closed as soon as they are idle. uvicorn waits for
    every open connection before it shuts the app down, and in development and tests the
    sandbox institution is this very server: its pooled connections to itself would hold the
    stop up for as long as they stay open."""
    if jobs:
        jobs.wind_down()
    while True:
        await ctx.close_idle_connections()
        await asyncio.sleep(0.1)


# gc thresholds (young generation, then how many of its collections per older one).
GC_THRESHOLDS = (20_000, 10, 10)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or settings_or_exit("dashtam-api")
    if not settings.TOKEN_ENCRYPTION_KEYS:
        print("dashtam-api: TOKEN_ENCRYPTION_KEYS is empty: run `inv setup`", file=sys.stderr)
        raise SystemExit(1)

    # Every collaborator, made once; the lifespan starts what runs beside the app, and closes it.
    ctx = AppContext.open(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ctx.closed:  # its clients and pools were closed by the lifespan before
            raise RuntimeError("this app has served once and was shut down: make a new one")
        # The sign-in's stand-in hash, made beside the start instead of before it.
        preparing = asyncio.ensure_future(asyncio.to_thread(ctx.passwords.prepare))
        ended = ctx.ended
        with contextlib.suppress(Exception):  # Valkey away at start: the loop keeps trying
            await ended.sync()
        watching = asyncio.ensure_future(ended.keep_synced(settings.SESSION_SYNC_SECONDS))
        jobs = Jobs(ctx) if settings.BACKGROUND_JOBS_ENABLED else None
        if jobs:
            jobs.start()
        letting_go: list[asyncio.Task] = []
        sampling = None
        if settings.METRICS_ENABLED:
            metrics.started()
            sampling = asyncio.ensure_future(metrics.keep_sampling(ctx.db))
        # Everything made so far (modules, the app, its models) lives as long as the process:
        # out of the collector's sight, a full collection no longer walks it (p99 of the
        # provider list under load: ~100 ms -> ~25 ms), and young collections come every
        # 20,000 allocations instead of 700 (+7-10% requests/s); see docs/performance.md.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        if threading.current_thread() is threading.main_thread():
            _on_exit_signals(lambda: letting_go.append(asyncio.ensure_future(_let_go(ctx, jobs))))
        try:
            yield
        finally:
            for task in letting_go:
                task.cancel()
            watching.cancel()
            if sampling:
                sampling.cancel()
                metrics.stopped()
            if jobs:
                await jobs.stop()
            await ctx.close()
            await preparing

    app = FastAPI(
        title="Dashtam API",
        version=__version__,
        lifespan=lifespan,
        openapi_tags=openapi.TAGS,
        generate_unique_id_function=openapi.operation_id,
        telemetry={kind: settings.OTEL_INSTRUMENTATION for kind in ("tracing", "metrics", "logs")},
        docs_url=None,  # served by docs.py, from the project (works offline)
        redoc_url=None,
    )
    # The one thing on app.state (deps.py hands it out; tests rebind it: tests/fixtures/app.py).
    app.state.ctx = ctx
    install_problem_handlers(app)
    app.add_middleware(
        BodyLimit,
        import_max_bytes=settings.IMPORT_MAX_BYTES,
        request_max_bytes=settings.REQUEST_MAX_BYTES,
    )
    app.add_middleware(SecurityHeaders, hsts_seconds=settings.hsts_seconds)
    openapi.install(
        app,
        provider_kinds=sorted(ctx.registry),
        webhooks_https_only=not settings.local_environment,
    )
    if settings.METRICS_ENABLED:
        metrics.install(app, settings)
    if settings.TRUSTED_PROXIES:
        # Outermost (added last): everything inside, the throttles and the audit included, sees
        # the client's address from X-Forwarded-For, read only from these proxies. Servers run
        # uvicorn with --no-proxy-headers: the app, not the server, decides whom to believe.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.TRUSTED_PROXIES)
    # Routes are tried in this order, one by one (~3 us a route): the hot reads first. The
    # document lists them in TAGS' order (openapi.py). On the app itself, flat: routing.py.
    include(
        app,
        health_router,
        accounts_router,
        transactions_router,
        imports_router,
        providers_router,
        auth_router,
        admin_router,
        reset_page_router,
        console_router,
        console_connections_router,
        console_sharing_router,
        console_security_router,
        console_accounts_router,
        connections_router,
        webhooks_router,
        api_keys_router,
        simplefin_router,
        simplefin_protocol,
        plaid_webhooks_router,
        link_page_router,
    )
    if settings.ENVIRONMENT in ("development", "testing"):
        include(app, sandbox_router)
        include(app, simplefin_bridge_router)
        include(app, ibkr_flex_router)
        include(app, enablebanking_router)
        include(app, plaid_lookalike_router)
    # The console's stylesheet: after every route, as docs' mounts are.
    app.mount(
        "/app/static", StaticFiles(directory=str(files("dashtam_api") / "console" / "static"))
    )
    if settings.ENVIRONMENT != "production":
        # Last: its static mounts are tried after every API route, not before each request.
        docs.install(app)
    return app
