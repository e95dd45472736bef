"""The console's sign-in, held in cookies: the API's own session and tokens, nothing new.

Signing in at /app/ opens a session as POST /api/v1/auth/login does (a row in the sessions
table, an access token naming it, a refresh token of its family). The access token rides in
the ``dashtam_access`` cookie, the refresh token in ``dashtam_refresh``: ``HttpOnly`` (no
script reads them), ``Secure``, ``SameSite=Strict`` (no other site's page sends them), path
``/app``. An expired access token is renewed by rotating the refresh token (the API's rule: a
rotated token presented again ends the session). So whatever ends an API session ends the
console's: signing out, "end all others", a password change.

Forms carry a CSRF token bound to the session (an HMAC of its id with SECRET_KEY); the sign-in
form, before any session, a random one that must match its cookie (double submit).
"""

import hashlib
import hmac
import secrets
import uuid

from fastapi import Request
from fastapi.responses import Response

from dashtam_api.auth import security
from dashtam_api.auth.schemas import TokenPair
from dashtam_api.errors import Unauthorized

ACCESS = "dashtam_access"
REFRESH = "dashtam_refresh"
SIGN_IN_CSRF = "dashtam_signin"
PATH = "/app"


def set_pair(response: Response, pair: TokenPair, *, refresh_days: int) -> None:
    common = {"httponly": True, "secure": True, "samesite": "strict", "path": PATH}
    response.set_cookie(ACCESS, pair.access_token, max_age=pair.expires_in, **common)
    response.set_cookie(REFRESH, pair.refresh_token, max_age=refresh_days * 86400, **common)


def clear(response: Response) -> None:
    for name in (ACCESS, REFRESH):
        response.delete_cookie(name, path=PATH, secure=True, httponly=True, samesite="strict")


def signed_in_as(request: Request, secret: str, ended) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(user id, session id) of a valid access cookie, else None (expired, ended, absent)."""
    token = request.cookies.get(ACCESS)
    if not token:
        return None
    try:
        user_id = security.decode_access_token(token, secret=secret, ended=ended)
        session_id = security.session_of(token, secret=secret)
    except Unauthorized:
        return None
    return (user_id, session_id) if session_id else None


def csrf_token(secret: str, session_id: uuid.UUID) -> str:
    return hmac.new(
        secret.encode(), f"console-csrf:{session_id}".encode(), hashlib.sha256
    ).hexdigest()


def csrf_holds(secret: str, session_id: uuid.UUID, given: str) -> bool:
    return hmac.compare_digest(csrf_token(secret, session_id), given or "")


def sign_in_csrf() -> str:
    return secrets.token_urlsafe(24)


def set_sign_in_csrf(response: Response, value: str) -> None:
    response.set_cookie(
        SIGN_IN_CSRF, value, max_age=3600, httponly=True, secure=True, samesite="strict", path=PATH
    )


def sign_in_csrf_holds(request: Request, given: str) -> bool:
    cookie = request.cookies.get(SIGN_IN_CSRF) or ""
    return bool(cookie) and hmac.compare_digest(cookie, given or "")
