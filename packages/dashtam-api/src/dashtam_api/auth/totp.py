"""TOTP second factor (RFC 6238 through pyotp): enroll, confirm, disable; the codes a sign-in
needs once it is on; ten single-use recovery codes.

- The secret is sealed by the vault (``users:<id>:totp``), shown once with its ``otpauth://``
  URI, and signs nothing in until a code from it confirms it.
- A code is accepted for the current 30-second step or one either side (clocks drift), and only
  for a step later than the last one accepted: a code is good once, even within its window
  (``users.totp_last_step``, moved forward by one conditional UPDATE, so two requests with the
  same code cannot both pass).
- Recovery codes: 80 random bits each (``xxxx-xxxx-xxxx-xxxx``, base32), kept as SHA-256, each
  used up by one conditional UPDATE.
"""

import base64
import hashlib
import hmac
import os
import time
import uuid
from datetime import UTC, datetime

import pyotp
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.audit import service as audit
from dashtam_api.auth import queries
from dashtam_api.errors import Conflict, Forbidden
from dashtam_core.vault import Vault, totp_context
from dashtam_models import RecoveryCode, User

ISSUER = "Dashtam"
STEP_SECONDS = 30
RECOVERY_CODES = 10


def matching_step(secret: str, code: str, *, now: float, after: int | None) -> int | None:
    """The time step (within one of ``now``'s) whose code ``code`` is, if later than ``after``."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = int(now // STEP_SECONDS)
    for step in (current, current - 1, current + 1):
        if after is not None and step <= after:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(os.urandom(10)).decode().lower()  # 80 bits, 16 characters
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace(" ", "").encode()).hexdigest()


def _secret(vault: Vault, user: User) -> str:
    return vault.open(user.totp_secret_encrypted, context=totp_context(user.id))


async def enroll(*, session: AsyncSession, vault: Vault, user: User) -> dict:
    """A new secret (replacing one not yet confirmed), shown once with its otpauth:// URI."""
    if user.totp_enabled_at is not None:
        raise Conflict("The second factor is already on: disable it first to enroll anew.")
    secret = pyotp.random_base32(32)  # 160 bits, as RFC 4226 recommends
    user.totp_secret_encrypted = vault.seal(secret, context=totp_context(user.id))
    user.totp_key_id = vault.current_key_id
    user.totp_last_step = None
    await session.flush()
    uri = pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(
        name=user.email, issuer_name=ISSUER
    )
    return {"secret": secret, "otpauth_uri": uri}


async def check(
    *,
    session: AsyncSession,
    vault: Vault,
    user: User,
    code: str | None,
    recovery_code: str | None,
    now: float | None = None,
) -> str | None:
    """Which second factor this is ("totp" or "recovery_code"), used up; None if neither."""
    if code and user.totp_secret_encrypted is not None:
        step = matching_step(
            _secret(vault, user),
            code,
            now=time.time() if now is None else now,
            after=user.totp_last_step,
        )
        # False if another request got there first: a code is good once.
        if step is not None and await queries.accept_totp_step(session, user_id=user.id, step=step):
            return "totp"
    if recovery_code and await queries.use_recovery_code(
        session, user_id=user.id, code_hash=_code_hash(recovery_code)
    ):
        return "recovery_code"
    return None


async def confirm(
    *, session: AsyncSession, vault: Vault, user: User, code: str, where: dict
) -> dict:
    """Turn it on with a code from the new secret; ten recovery codes, shown once."""
    if user.totp_enabled_at is not None:
        raise Conflict("The second factor is already on.")
    if user.totp_secret_encrypted is None:
        raise Conflict("Enroll first: POST /api/v1/auth/totp.")
    if await check(session=session, vault=vault, user=user, code=code, recovery_code=None) is None:
        raise Forbidden("That code does not match the new secret (check the device's clock).")
    user.totp_enabled_at = datetime.now(UTC)
    codes = new_recovery_codes()
    await queries.delete_recovery_codes(session, user_id=user.id)
    session.add_all(
        RecoveryCode(id=uuid.uuid4(), user_id=user.id, code_hash=_code_hash(c)) for c in codes
    )
    await audit.security(session=session, action="second_factor_enabled", user_id=user.id, **where)
    await session.flush()
    return {"recovery_codes": codes}


async def disable(
    *,
    session: AsyncSession,
    vault: Vault,
    user: User,
    code: str | None,
    recovery_code: str | None,
    where: dict,
) -> None:
    """Turn it off with a current code (or a recovery code): secret and recovery codes go."""
    if user.totp_enabled_at is None:
        raise Conflict("The second factor is not on.")
    used = await check(
        session=session, vault=vault, user=user, code=code, recovery_code=recovery_code
    )
    if used is None:
        raise Forbidden("A current code (or an unused recovery code) is needed to disable it.")
    user.totp_secret_encrypted = user.totp_key_id = None
    user.totp_enabled_at = user.totp_last_step = None
    await queries.delete_recovery_codes(session, user_id=user.id)
    await audit.security(
        session=session,
        action="second_factor_disabled",
        user_id=user.id,
        details={"with": used},
        **where,
    )
    await session.flush()
