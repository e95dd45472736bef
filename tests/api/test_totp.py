"""TOTP second factor: the code arithmetic on a fixed clock (time steps, the window, a code good
once), and end to end: enroll, confirm, sign in with a code and with a recovery code (each once),
throttling, disable."""

import time

import pyotp
import pytest
from sqlalchemy import select

from dashtam_api.auth.totp import STEP_SECONDS, matching_step
from dashtam_models import SecurityAuditLog, User
from tests.api.test_auth import is_problem

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
T0 = 1_800_000_000.0  # a fixed clock: the start of step 60,000,000


def code_at(when: float, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret, interval=STEP_SECONDS).at(when)


def test_a_code_matches_its_step_and_one_either_side_only():
    step = int(T0 // STEP_SECONDS)
    assert matching_step(SECRET, code_at(T0), now=T0, after=None) == step
    # A device 30 s behind or ahead still signs in; 60 s does not.
    assert matching_step(SECRET, code_at(T0 - 30), now=T0, after=None) == step - 1
    assert matching_step(SECRET, code_at(T0 + 30), now=T0, after=None) == step + 1
    assert matching_step(SECRET, code_at(T0 - 60), now=T0, after=None) is None
    assert matching_step(SECRET, code_at(T0 + 60), now=T0, after=None) is None
    # The same code 29 s later is still in its window...
    assert matching_step(SECRET, code_at(T0), now=T0 + 29, after=None) == step
    # ...but once accepted for its step, never again (replay in the same window).
    assert matching_step(SECRET, code_at(T0), now=T0 + 29, after=step) is None
    # An older step's code after a newer one was used: refused too.
    assert matching_step(SECRET, code_at(T0 - 30), now=T0, after=step) is None
    # The next step's code goes on working.
    assert matching_step(SECRET, code_at(T0 + 30), now=T0 + 30, after=step) == step + 1
    for bad in ("", "12345", "1234567", "abcdef", code_at(T0, "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU")):
        assert matching_step(SECRET, bad, now=T0, after=None) is None


async def login(client, email, password):
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def second_factor(client, challenge, **code):
    return await client.post(
        "/api/v1/auth/login/second-factor", json={"challenge": challenge, **code}
    )


async def enrolled(client, sign_up) -> tuple[dict, str, list[str], tuple[str, str]]:
    headers, _, (email, password) = await sign_up()
    enrollment = await client.post("/api/v1/auth/totp", headers=headers)
    assert enrollment.status_code == 201, enrollment.text
    secret = enrollment.json()["secret"]
    assert enrollment.json()["otpauth_uri"].startswith("otpauth://totp/Dashtam:")
    # Not on until a code confirms it: a wrong one is refused.
    is_problem(
        await client.post("/api/v1/auth/totp/confirm", headers=headers, json={"code": "000000"}),
        403,
    )
    assert "access_token" in (await login(client, email, password)).json()
    confirmed = await client.post(
        "/api/v1/auth/totp/confirm", headers=headers, json={"code": code_at(time.time(), secret)}
    )
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    return headers, secret, codes, (email, password)


async def test_enroll_confirm_and_sign_in_with_a_code_once(client, sign_up, session):
    headers, secret, _codes, (email, password) = await enrolled(client, sign_up)
    me = (await client.get("/api/v1/auth/me", headers=headers)).json()
    assert me["totp_enabled"] is True
    user = await session.scalar(select(User).where(User.email == email))
    assert secret.encode() not in user.totp_secret_encrypted  # sealed

    first = (await login(client, email, password)).json()
    assert first["second_factor_required"] is True
    assert "access_token" not in first
    # The code that confirmed the enrollment used its step: a device a step ahead signs in
    # (the window allows one) without waiting 30 s for the next; the confirming code does not.
    used = user.totp_last_step
    is_problem(
        await second_factor(client, first["challenge"], code=code_at(used * 30, secret)), 401
    )
    first = (await login(client, email, password)).json()
    code = code_at((used + 1) * STEP_SECONDS, secret)
    signed = await second_factor(client, first["challenge"], code=code)
    assert signed.status_code == 200, signed.text
    assert "access_token" in signed.json()
    # The same code again (same window), with a new challenge: refused.
    again = (await login(client, email, password)).json()
    is_problem(await second_factor(client, again["challenge"], code=code), 401)
    # A used challenge is gone.
    is_problem(await second_factor(client, first["challenge"], code=code), 401)


async def test_recovery_codes_work_once_and_wrong_codes_are_throttled(
    client, sign_up, test_settings
):
    _headers, _secret, codes, (email, password) = await enrolled(client, sign_up)
    challenge = (await login(client, email, password)).json()["challenge"]
    assert (await second_factor(client, challenge, recovery_code=codes[0])).status_code == 200
    challenge = (await login(client, email, password)).json()["challenge"]
    is_problem(await second_factor(client, challenge, recovery_code=codes[0]), 401)  # used
    is_problem(await second_factor(client, challenge, code="123456", recovery_code=codes[1]), 422)

    # Wrong codes count with wrong passwords: after LOGIN_MAX_FAILURES in all (the used
    # recovery code was one), even the right password is throttled. A challenge takes at most
    # SECOND_FACTOR_ATTEMPTS codes.
    for _ in range(test_settings.LOGIN_MAX_FAILURES - 1):
        is_problem(await second_factor(client, challenge, code="000000"), 401)
    throttled = await login(client, email, password)
    is_problem(throttled, 429)
    assert int(throttled.headers["retry-after"]) > 0
    if test_settings.LOGIN_MAX_FAILURES >= test_settings.SECOND_FACTOR_ATTEMPTS:
        gone = await second_factor(client, challenge, recovery_code=codes[1])
        is_problem(gone, 401)
        assert "unknown or has expired" in gone.text


async def test_disable_needs_a_code_and_is_audited(client, sign_up, session):
    headers, _secret, codes, (email, password) = await enrolled(client, sign_up)
    is_problem(
        await client.post("/api/v1/auth/totp/disable", headers=headers, json={"code": "000000"}),
        403,
    )
    off = await client.post(
        "/api/v1/auth/totp/disable", headers=headers, json={"recovery_code": codes[3].upper()}
    )
    assert off.status_code == 204, off.text
    assert "access_token" in (await login(client, email, password)).json()
    is_problem(
        await client.post("/api/v1/auth/totp/disable", headers=headers, json={"code": "1"}), 409
    )
    actions = set((await session.scalars(select(SecurityAuditLog.action))).all())
    assert {"second_factor_enabled", "second_factor_disabled"} <= actions


@pytest.mark.parametrize("body", [{}, {"code": "123456", "recovery_code": "x"}])
async def test_disable_wants_exactly_one_code(client, auth_headers, body):
    is_problem(await client.post("/api/v1/auth/totp/disable", headers=auth_headers, json=body), 422)
