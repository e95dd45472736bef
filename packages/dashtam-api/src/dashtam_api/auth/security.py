"""Passwords (argon2 via pwdlib), access tokens (short-lived JWT), refresh tokens (opaque)."""

import hashlib
import secrets
import uuid
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
        # Checked when the e-mail is unknown, so a miss costs what a wrong password costs.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        # argon2 is deliberately slow: keep it off the event loop.
        return await run_in_threadpool(self._hasher.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        return await run_in_threadpool(self._hasher.verify, password, password_hash or self._dummy)


def create_access_token(*, user_id: uuid.UUID, secret: str, minutes: int) -> tuple[str, int]:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "type": "access",
        "iat": now,
        "exp": now + timedelta(minutes=minutes),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), minutes * 60


def decode_access_token(token: str, *, secret: str) -> uuid.UUID:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
        if claims.get("type") != "access":
            raise Unauthorized("Not an access token.")
        return uuid.UUID(claims["sub"])
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The access token has expired.") from None
    except (jwt.InvalidTokenError, ValueError):
        raise Unauthorized("The access token is not valid.") from None


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """SHA-256 is enough here: the token is 256 random bits, not a guessable password."""
    return hashlib.sha256(token.encode()).hexdigest()
