"""The callback server's app factory: ``uvicorn dashtam_callback.main:create_app --factory``.

It only answers its health check for now; the OAuth redirect handling comes with the connect flow.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dashtam_callback import __version__
from dashtam_core.config import Settings, settings_or_exit


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or settings_or_exit("dashtam-callback")

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "healthy",
                "service": "callback",
                "version": __version__,
                "environment": settings.ENVIRONMENT,
            }
        )

    app = Starlette(routes=[Route("/health", health)])
    app.state.settings = settings
    return app
