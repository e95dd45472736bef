"""Request dependencies, injected through ``Annotated`` aliases.

The app's collaborators are one ``AppContext`` (context.py), the only thing on ``app.state``,
read here alone (``context_of``); ``ContextDep`` hands it out, and the other aliases hand out
its parts, each reading it directly rather than depending on ``ContextDep`` (a dependency of a
dependency is one more turn of FastAPI's resolver per request).

Every one is ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
hop per dependency per request, for what is an attribute lookup.
"""

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.apikeys import service as api_keys
from dashtam_api.apikeys.scopes import OPERATION_SCOPES
from dashtam_api.auth import queries as people
from dashtam_api.auth.ended_sessions import EndedSessions
from dashtam_api.auth.security import Passwords, decode_access_token, session_of
from dashtam_api.context import AppContext
from dashtam_api.errors import ACCOUNT_GONE, Forbidden, ProblemError, Unauthorized
from dashtam_api.health.service import HealthProbe
from dashtam_api.openapi import operation_id
from dashtam_api.unit_of_work import commit
from dashtam_core.config import Settings
from dashtam_core.database import Database, Reader
from dashtam_core.vault import Vault
from dashtam_models import User


def context_of(request: Request) -> AppContext:
    """The app's collaborators (main.py puts them on app.state once; tests rebind them)."""
    return request.app.state.ctx


async def get_settings_dep(request: Request) -> Settings:
    return context_of(request).settings


async def get_context(request: Request) -> AppContext:
    return context_of(request)


async def get_database(request: Request) -> Database:
    return context_of(request).db


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session, and the one commit rule (docs/architecture.md): it commits once,
    when the endpoint has returned, before the answer is sent (a failed commit is the answer);
    when the endpoint raises, nothing it wrote is kept. Routers and services never commit."""
    async with context_of(request).sessions() as session:
        yield session
        await commit(session)


async def get_sign_in_session(request: Request) -> AsyncIterator[AsyncSession]:
    """As ``get_session``, but a refusal (a ProblemError: a wrong password, a reused refresh
    token) keeps what it wrote: the security audit row, the failure counted, the session family
    revoked. The one place where a failed request still writes; any other error keeps nothing."""
    async with context_of(request).sessions() as session:
        try:
            yield session
        except ProblemError:
            await commit(session)
            raise
        await commit(session)


async def get_reader(request: Request) -> Reader:
    return context_of(request).reader


async def get_redis(request: Request) -> Redis:
    return context_of(request).redis


async def get_vault(request: Request) -> Vault:
    return context_of(request).vault


async def get_passwords(request: Request) -> Passwords:
    return context_of(request).passwords


async def get_health_probe(request: Request) -> HealthProbe:
    return context_of(request).health


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
HealthProbeDep = Annotated[HealthProbe, Depends(get_health_probe)]
ContextDep = Annotated[AppContext, Depends(get_context)]
DatabaseDep = Annotated[Database, Depends(get_database)]
# scope="function": the commit runs when the endpoint returns, before the answer is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SignInSessionDep = Annotated[AsyncSession, Depends(get_sign_in_session, scope="function")]
ReaderDep = Annotated[Reader, Depends(get_reader)]
RedisDep = Annotated[Redis, Depends(get_redis)]
VaultDep = Annotated[Vault, Depends(get_vault)]
PasswordsDep = Annotated[Passwords, Depends(get_passwords)]


class AccessTokenBearer(HTTPBearer):
    """The Bearer scheme (so OpenAPI documents it) answering with the user id that a valid
    access token names, in one dependency. Whether that user still exists and may sign in is
    the caller's to check: get_current_user does, and so does every query that reads by it.

    It takes nothing but the request (an API key is checked with the app's reader, the one
    ReaderDep gives): each dependency of its own is a turn of FastAPI's resolver on every
    authenticated request, ~25-50 us of a ~800 us read (docs/performance.md)."""

    def __init__(self) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer")

    async def __call__(self, request: Request) -> uuid.UUID:  # type: ignore[override]
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if not token or scheme.lower() != "bearer":
            raise Unauthorized("Authentication required.", error="invalid_request")
        ctx = context_of(request)
        if api_keys.is_api_key(token):
            return await _api_key_subject(request, ctx.reader, token)
        return decode_access_token(token, secret=ctx.settings.SECRET_KEY, ended=ctx.ended)


async def _api_key_subject(request: Request, reader: Reader, token: str) -> uuid.UUID:
    """The key's person, if the key is good (else 401) and opens this operation (else 403,
    naming the scope it lacks, or saying that no key opens it)."""
    verified = await api_keys.verify(reader, token)
    route = request.scope.get("route")
    operation = operation_id(route) if route is not None else ""
    needed = OPERATION_SCOPES.get(operation)
    if needed is None:
        raise Forbidden(
            "API keys cannot be used here; sign in with your password.", operation=operation
        )
    if needed not in verified.scopes:
        raise Forbidden(
            f"This API key lacks the scope {needed!r}.", missing_scope=needed, operation=operation
        )
    return verified.user_id


TokenSubjectDep = Annotated[uuid.UUID, Depends(AccessTokenBearer())]


async def get_current_user(subject: TokenSubjectDep, session: SessionDep) -> User:
    """The user of a valid access token: one primary-key lookup per request, nothing more."""
    user = await people.user_by_id(session, user_id=subject)
    if user is None or not user.is_active:
        raise Unauthorized(ACCOUNT_GONE)
    return user


CurrentUserDep = Annotated[User, Depends(get_current_user)]


async def get_admin(user: CurrentUserDep) -> User:
    if not user.is_admin:
        raise Forbidden("Only an administrator may do this.")
    return user


AdminDep = Annotated[User, Depends(get_admin)]


async def get_current_session(request: Request, user: CurrentUserDep) -> uuid.UUID | None:
    """The session the caller's access token belongs to (after it was checked)."""
    token = (request.headers.get("Authorization") or "").partition(" ")[2]
    return session_of(token, secret=context_of(request).settings.SECRET_KEY)


CurrentSessionDep = Annotated[uuid.UUID | None, Depends(get_current_session)]


async def get_ended_sessions(request: Request) -> EndedSessions:
    return context_of(request).ended


EndedSessionsDep = Annotated[EndedSessions, Depends(get_ended_sessions)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def where(request: Request) -> dict:
    """Who asked, for the security audit: the client's address and user agent."""
    return {"ip": client_ip(request), "user_agent": request.headers.get("user-agent")}
