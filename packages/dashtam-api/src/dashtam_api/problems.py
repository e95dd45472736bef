"""Every error as ``application/problem+json`` (RFC 9457); nothing leaks a traceback."""

import logging
import re
from http import HTTPStatus

import asyncpg
import redis.exceptions as redis_errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dashtam_api.errors import ProblemError
from dashtam_core.lost_dependencies import lost_dependency, root_cause

PROBLEM_JSON = "application/problem+json"
# Seconds a client should wait after a 503 for our own database or cache: a restart or a
# failover is over in about that, and the pools replace dead connections at once.
RETRY_AFTER_SECONDS = 1
log = logging.getLogger("dashtam.api")


def problem(
    status: int, detail: str | None = None, *, headers=None, title: str | None = None, **extra
) -> JSONResponse:
    body = {"type": "about:blank", "title": title or HTTPStatus(status).phrase, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def expected_error(request: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.status, exc.detail, headers=exc.headers, title=exc.title, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        headers = getattr(exc, "headers", None)
        allowed = _allowed_methods(request) if exc.status_code == 405 else None
        if allowed:
            # Starlette names the methods of the first route on the path only; a path served
            # by several routes (GET and PATCH /auth/me) allows all of theirs.
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return problem(exc.status_code, detail, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return problem(422, "The request is not valid.", errors=errors)

    # Failures of our own database or cache are 503 (try again), not 500. Registered on the
    # exception types they come as, so that they are answered here, not by the last-resort
    # handler below (Starlette re-raises after that one, for the server to log as a crash).
    async def dependency_error(request: Request, exc: Exception) -> JSONResponse:
        lost = lost_dependency(exc)
        if lost is None:
            return await unexpected_error(request, exc)
        log.warning(
            "%s unavailable on %s %s: %s",
            lost,
            request.method,
            request.url.path,
            root_cause(exc),
        )
        return problem(
            503,
            f"The {lost} is unavailable right now; try again shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    for kind in (
        SQLAlchemyError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        redis_errors.RedisError,
        ConnectionError,
    ):
        app.add_exception_handler(kind, dependency_error)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "An unexpected error occurred.")


def _allowed_methods(request: Request) -> list[str] | None:
    """The methods the OpenAPI document lists for the request's path (None if it lists none)."""
    for pattern, methods in _documented_methods(request.app):
        if pattern.fullmatch(request.url.path):
            return methods
    return None


def _documented_methods(app) -> list[tuple[re.Pattern, list[str]]]:
    cached = getattr(app.state, "documented_methods", None)
    if cached is None:
        cached = []
        for path, operations in app.openapi().get("paths", {}).items():
            pattern = re.compile(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(path)))
            methods = {method.upper() for method in operations}
            if "GET" in methods:
                methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
            cached.append((pattern, sorted(methods)))
        app.state.documented_methods = cached
    return cached
