"""The app factory: ``uvicorn dashtam_api.main:create_app --factory``."""

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from dashtam_api import __version__
from dashtam_api.accounts.router import router as accounts_router
from dashtam_api.auth.router import router as auth_router
from dashtam_api.auth.security import Passwords
from dashtam_api.connections.oauth import tls_context
from dashtam_api.connections.router import router as connections_router
from dashtam_api.context import AppContext
from dashtam_api.health.router import router as health_router
from dashtam_api.health.service import HealthProbe
from dashtam_api.jobs.loops import Jobs
from dashtam_api.problems import install_problem_handlers
from dashtam_api.providers.registry import build_registry
from dashtam_api.providers.router import router as providers_router
from dashtam_api.sandbox.router import router as sandbox_router
from dashtam_core.config import Settings, settings_or_exit
from dashtam_core.vault import Vault

log = logging.getLogger("dashtam.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or settings_or_exit("dashtam-api")
    if not settings.TOKEN_ENCRYPTION_KEYS:
        print("dashtam-api: TOKEN_ENCRYPTION_KEYS is empty: run `inv setup`", file=sys.stderr)
        raise SystemExit(1)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = AppContext.open(settings, vault=app.state.vault)
        app.state.ctx, app.state.db, app.state.redis = ctx, ctx.db, ctx.redis
        app.state.health = HealthProbe(settings=settings, db=ctx.db, redis=ctx.redis)
        jobs = Jobs(ctx) if settings.BACKGROUND_JOBS_ENABLED else None
        if jobs:
            jobs.start()
        try:
            yield
        finally:
            if jobs:
                await jobs.stop()
            await ctx.close()

    app = FastAPI(
        title="Dashtam API",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if settings.ENVIRONMENT != "production" else None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.vault = Vault.from_spec(settings.TOKEN_ENCRYPTION_KEYS)
    app.state.passwords = Passwords(settings)
    app.state.registry = build_registry(settings)
    app.state.tls = tls_context(settings.CA_CERT_FILE)
    install_problem_handlers(app)
    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(providers_router)
    app.include_router(connections_router)
    app.include_router(accounts_router)
    if settings.ENVIRONMENT in ("development", "testing"):
        app.include_router(sandbox_router)
    return app
