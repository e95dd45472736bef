"""The app factory: ``uvicorn dashtam_api.main:create_app --factory``."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from dashtam_api import __version__
from dashtam_api.health.router import router as health_router
from dashtam_api.problems import install_problem_handlers
from dashtam_core.cache import create_redis
from dashtam_core.config import Settings, settings_or_exit
from dashtam_core.database import Database

log = logging.getLogger("dashtam.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or settings_or_exit("dashtam-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = Database.from_settings(settings)
        app.state.redis = create_redis(settings)
        try:
            yield
        finally:
            await app.state.redis.aclose()
            await app.state.db.dispose()

    app = FastAPI(
        title="Dashtam API",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if settings.ENVIRONMENT != "production" else None,
        redoc_url=None,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    app.include_router(health_router)
    return app
