"""Passwords (argon2 via pwdlib), access tokens (short-lived JWT), refresh tokens (opaque)."""

import functools
import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Container
from datetime import UTC, datetime, timedelta

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from starlette.concurrency import run_in_threadpool

from dashtam_api.errors import Unauthorized
from dashtam_core.config import Settings

ALGORITHM = "HS256"


class Passwords:
    """argon2id with the costs from settings (cheap in the test env, strong everywhere else)."""

    def __init__(self, settings: Settings):
        self._hasher = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=settings.PASSWORD_HASH_TIME_COST,
                    memory_cost=settings.PASSWORD_HASH_MEMORY_KIB,
                    parallelism=settings.PASSWORD_HASH_PARALLELISM,
                ),
            )
        )
        # Checked when the e-mail is unknown, so a miss costs what a wrong password costs. Made
        # by prepare() (the app's start-up, in a thread: ~0.16 s of CPU at production costs, off
        # the path to the first answer) or by the first miss, whichever comes first.
        self._dummy: str | None = None
        self._making_dummy = threading.Lock()

    def prepare(self) -> None:
        with self._making_dummy:
            if self._dummy is None:
                self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        # argon2 is deliberately slow: keep it off the event loop.
        return await run_in_threadpool(self._hasher.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        return await run_in_threadpool(self._verify, password, password_hash)

    def _verify(self, password: str, password_hash: str | None) -> bool:
        if not password_hash:
            self.prepare()
            password_hash = self._dummy
        return self._hasher.verify(password, password_hash)


def create_access_token(
    *, user_id: uuid.UUID, session_id: uuid.UUID, secret: str, minutes: int
) -> tuple[str, int]:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "type": "access",
        "iat": now,
        "exp": now + timedelta(minutes=minutes),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), minutes * 60


def decode_access_token(token: str, *, secret: str, ended: Container[str] = ()) -> uuid.UUID:
    """The user id of a valid access token (signature, type, subject and expiry) whose session
    has not ended, else 401.

    The signature is checked once per token per process (a client sends the same token with
    every request until it expires): verifying it was a fifth of a cheap request's time. The
    expiry and the session are checked on every use.
    """
    user_id, expires_at, session_id = _verified_access_token(token, secret)
    if expires_at <= time.time():
        raise Unauthorized("The access token has expired.")
    if session_id in ended:
        raise Unauthorized("This session has ended; sign in again.")
    return user_id


def session_of(token: str, *, secret: str) -> uuid.UUID | None:
    """The session a valid access token belongs to (None for a token older than sessions)."""
    session_id = _verified_access_token(token, secret)[2]
    return uuid.UUID(session_id) if session_id else None


@functools.lru_cache(maxsize=4096)
def _verified_access_token(token: str, secret: str) -> tuple[uuid.UUID, float, str | None]:
    """Only tokens that verify are kept (a failure raises, and lru_cache keeps no exceptions),
    so a stranger cannot fill the cache; 4096 entries are ~2 MB at most."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
        if claims.get("type") != "access":
            raise Unauthorized("Not an access token.")
        session_id = claims.get("sid")
        if session_id is not None:
            session_id = str(uuid.UUID(session_id))
        return uuid.UUID(claims["sub"]), float(claims["exp"]), session_id
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The access token has expired.") from None
    except (jwt.InvalidTokenError, ValueError):
        raise Unauthorized("The access token is not valid.") from None


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """SHA-256 is enough here: the token is 256 random bits, not a guessable password."""
    return hashlib.sha256(token.encode()).hexdigest()
