"""The person's side (``/api/v1/simplefin``: setup tokens, accesses) and the protocol's
(``/simplefin``: info, create, claim, accounts) of Dashtam's SimpleFIN server."""

import base64
import binascii
import html
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query, Request, Response, Security
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.security import HTTPBasic

from dashtam_api.deps import (
    ContextDep,
    CurrentUserDep,
    RedisDep,
    SessionDep,
    SettingsDep,
    client_ip,
    where,
)
from dashtam_api.errors import ProblemError
from dashtam_api.openapi import problems
from dashtam_api.routing import api_router
from dashtam_api.simplefin import service
from dashtam_api.simplefin.schemas import (
    AccessList,
    Info,
    SetupTokenCreate,
    SetupTokenCreated,
)
from dashtam_core.pages import page_headers

router = api_router(prefix="/api/v1/simplefin", tags=["simplefin"])
protocol = api_router(prefix=service.ROOT, tags=["simplefin-protocol"])


@router.post(
    "/setup-tokens",
    status_code=201,
    response_model=SetupTokenCreated,
    responses=problems(404),
    name="create_setup_token",
)
async def create_setup_token(
    body: SetupTokenCreate,
    request: Request,
    user: CurrentUserDep,
    session: SessionDep,
    settings: SettingsDep,
) -> dict:
    """A one-time SimpleFIN setup token for an app (Actual, Firefly III, ...): paste it there;
    the app claims read access to these accounts with it (404 naming any that is not yours)."""
    created = await service.create_setup_token(
        session=session,
        settings=settings,
        user=user,
        label=body.label,
        account_ids=body.account_ids,
        where=where(request),
    )
    return created


@router.get("/access", response_model=AccessList, name="list_access")
async def list_access(user: CurrentUserDep, session: SessionDep) -> dict:
    """Every app that claimed access, with when and from where it last read."""
    return await service.listed(session=session, user=user)


@router.delete("/access/{access_id}", status_code=204, name="revoke_access")
async def revoke_access(
    access_id: uuid.UUID, request: Request, user: CurrentUserDep, session: SessionDep
) -> Response:
    """The app's credentials stop working at once (its next read is a 403)."""
    await service.revoke(session=session, user=user, access_id=access_id, where=where(request))
    return Response(status_code=204)


_CHALLENGE = 'Basic realm="SimpleFIN", charset="UTF-8"'


class CredentialsMissing(ProblemError):
    """No credentials at all: HTTP's 401 and its challenge (RFC 9110). Wrong ones are the
    protocol's 403."""

    status = 401

    def __init__(self) -> None:
        super().__init__(
            "HTTP Basic credentials from a claimed access URL are required.",
            headers={"WWW-Authenticate": _CHALLENGE},
        )


class AccessCredentials(HTTPBasic):
    """HTTP Basic with an access URL's credentials (so the document names the scheme); parsed
    here so that a malformed header is the spec's 403, not FastAPI's 401. No header at all is
    a 401 (CredentialsMissing)."""

    def __init__(self) -> None:
        super().__init__(auto_error=False, scheme_name="SimpleFINAccess")

    async def __call__(self, request: Request) -> service.Credentials | None:  # type: ignore[override]
        header = request.headers.get("Authorization")
        if not header:
            raise CredentialsMissing()
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            username, sep, password = (
                base64.b64decode(encoded, validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return None
        return service.Credentials(username, password) if sep else None


# 9999-12-31T23:59:59Z, the last second a datetime holds: the bound the document gives Unix
# times (a later one would not be a time this server can read).
LAST_SECOND = 253_402_300_799

AccessCredentialsDep = Annotated[service.Credentials | None, Security(AccessCredentials())]


@protocol.get("/info", response_model=Info, name="info")
async def info() -> dict:
    """The protocol versions this server speaks."""
    return {"versions": service.VERSIONS}


@protocol.get("/create", response_class=HTMLResponse, name="create")
async def create(settings: SettingsDep) -> HTMLResponse:
    """Where an app sends a person to make a setup token: how to, in Dashtam."""
    api = html.escape(settings.API_BASE_URL)
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Connect an app to Dashtam"
        "</title><body style='font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto'>"
        "<h1>Connect an app to Dashtam</h1><p>Make a SimpleFIN setup token in Dashtam, signed "
        f"in: <code>POST {api}/api/v1/simplefin/setup-tokens</code> (in the API's "
        f"<a href='{api}/docs'>documentation</a>, <em>simplefin</em>), then paste its "
        "<code>setup_token</code> into the app. The app can read your accounts, balances, "
        "holdings and transactions, never change anything; revoke it whenever you like "
        "(<code>DELETE /api/v1/simplefin/access/{id}</code>).</p></body></html>",
        headers=page_headers("default-src 'none'"),
    )


@protocol.post(
    "/claim/{token}",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}, **problems(403)},
    name="claim",
)
async def claim(
    token: Annotated[str, Path(max_length=200)],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> PlainTextResponse:
    """The access URL for a setup token, once (no other authentication: the token is it)."""
    access_url = await service.claim(
        session=session, settings=settings, token=token, where=where(request)
    )
    return PlainTextResponse(access_url, headers={"Cache-Control": "no-store"})


@protocol.get(
    "/accounts",
    responses={
        **problems(403, 429),
        401: {
            "description": "No credentials: the access URL's user name and password, please.",
            "headers": {
                "WWW-Authenticate": {
                    "description": "The challenge: " + _CHALLENGE,
                    "schema": {"type": "string"},
                }
            },
        },
    },
    name="accounts",
)
async def accounts(
    request: Request,
    credentials: AccessCredentialsDep,
    ctx: ContextDep,
    session: SessionDep,
    redis: RedisDep,
    start_date: Annotated[int | None, Query(alias="start-date", ge=0, le=LAST_SECOND)] = None,
    end_date: Annotated[int | None, Query(alias="end-date", ge=0, le=LAST_SECOND)] = None,
    pending: Annotated[int, Query(ge=0, le=1)] = 0,
    account: Annotated[list[str] | None, Query(max_length=200)] = None,
    balances_only: Annotated[int, Query(alias="balances-only", ge=0, le=1)] = 0,
) -> dict:
    """The spec's Account Set: accounts, balances, holdings and transactions (posted, and
    pending ones with ``pending=1``) between ``start-date`` (default: 90 days ago) and
    ``end-date``, as Unix times."""
    access, _user = await service.authenticate(
        session=session,
        redis=redis,
        settings=ctx.settings,
        credentials=credentials,
        ip=client_ip(request),
    )
    query = service.AccountsQuery(
        start=None if start_date is None else datetime.fromtimestamp(start_date, UTC),
        end=None if end_date is None else datetime.fromtimestamp(end_date, UTC),
        pending=bool(pending),
        accounts=tuple(account or ()),
        balances_only=bool(balances_only),
    )
    answer = await service.account_set(ctx=ctx, session=session, access=access, query=query)
    return answer
