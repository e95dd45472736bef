"""The API's routers, and how the app takes their routes.

``api_router`` is FastAPI's ``APIRouter`` whose operations get Dashtam's ids
(``openapi.operation_id``) as they are declared, so a route is complete where it is written:
path with its prefix, tags, id, response class.

``include`` puts a router's routes on the app itself, which is what ``app.include_router``
did until FastAPI 0.137. Since then an included router stays a node of its own that every
request walks (each router's prefix tried, the matching one's routes twice, their contexts
looked up per match): measured side by side in one process, the same app answered every
route with 10-13% less CPU once flat (an authenticated read ~880 -> ~790 us; docs/
performance.md). The price: ``app.dependency_overrides`` does not reach flat routes (they
are shared by every app made in a process); the app's collaborators are on
``app.state.ctx`` instead, which is what tests rebind (tests/fixtures/app.py).
"""

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Route

from dashtam_api.openapi import operation_id


def api_router(**options: Any) -> APIRouter:
    return APIRouter(generate_unique_id_function=operation_id, **options)


def include(app: FastAPI, *routers: APIRouter) -> None:
    """Each router's routes on the app, in order (a request tries them in that order)."""
    for router in routers:
        if router.dependencies or router.callbacks:
            raise ValueError("include() takes routers without router-wide dependencies/callbacks")
        routes: list[BaseRoute] = list(router.routes)
        for route in routes:
            if not isinstance(route, APIRoute | Route):
                raise ValueError(f"include() takes plain routes, not {type(route).__name__}")
        app.router.routes.extend(routes)
