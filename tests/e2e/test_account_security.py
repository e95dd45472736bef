"""Account security as a person meets it: the real HTTPS API, real mail through the
environments' mail catcher, a real authenticator's codes (pyotp). One account taken through
confirming its address, a second factor, a sign-in with it, a stolen session and a password
reset by mail that ends it.

Every test here requests ``connection``: what the servers commit is truncated afterwards."""

import re
import ssl

import httpx
import pyotp
import pytest

from tests.api.test_sessions import bearer, until_refused
from tests.fixtures.smtp import unique_address

pytestmark = pytest.mark.commits

PASSWORD = "correct horse battery"
NEW = "a brand new pass phrase"


async def test_a_person_secures_the_account_over_https_with_real_mail(
    live_servers, mail_server, connection
):
    verify = ssl.create_default_context(cafile=live_servers.ca_file)
    async with httpx.AsyncClient(base_url=live_servers.api_url, verify=verify) as api:
        email = unique_address("secure")
        registered = await api.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        for name in ("strict-transport-security", "x-content-type-options", "referrer-policy"):
            assert name in registered.headers

        # The address, confirmed by the link that arrived by mail (the page's button).
        (mail,) = await mail_server.arrived(email, "Confirm your address for Dashtam")
        link = re.search(r"(https://\S+)/verify-email\?token=(dtv_\S+)", mail.get_content())
        assert link.group(1) == live_servers.api_url
        confirmed = await api.post("/verify-email", data={"token": link.group(2)})
        assert "Address confirmed" in confirmed.text

        async def login(password: str, agent: str) -> dict:
            answer = await api.post(
                "/api/v1/auth/login",
                json={"email": email, "password": password},
                headers={"user-agent": agent},
            )
            assert answer.status_code == 200, answer.text
            return answer.json()

        mine = await login(PASSWORD, "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0")
        thief = await login(PASSWORD, "curl/8.5.0")  # someone else holds the password too
        me = await api.get("/api/v1/auth/me", headers=bearer(mine))
        assert me.json()["email_verified"] is True

        # A second factor: enrolled, confirmed with the authenticator's code.
        enrolled = (await api.post("/api/v1/auth/totp", headers=bearer(mine))).json()
        assert enrolled["otpauth_uri"].startswith("otpauth://totp/")
        authenticator = pyotp.TOTP(enrolled["secret"])
        confirm = await api.post(
            "/api/v1/auth/totp/confirm", json={"code": authenticator.now()}, headers=bearer(mine)
        )
        recovery = confirm.json()["recovery_codes"]
        assert len(recovery) == 10

        # The password alone now opens a challenge; a recovery code completes it, once.
        async def second_factor(password: str, recovery_code: str) -> httpx.Response:
            challenge = await login(password, "Firefox")
            assert challenge["second_factor_required"] is True
            return await api.post(
                "/api/v1/auth/login/second-factor",
                json={"challenge": challenge["challenge"], "recovery_code": recovery_code},
            )

        assert (await second_factor(PASSWORD, recovery[0])).status_code == 200
        assert (await second_factor(PASSWORD, recovery[0])).status_code == 401

        # Forgotten password: a link by mail, its page sets a new one, once; every session ends.
        asked = await api.post("/api/v1/auth/password-reset", json={"email": email})
        assert asked.status_code == 202
        (mail,) = await mail_server.arrived(email, "Reset your Dashtam password")
        token = re.search(r"/reset-password\?token=(dtr_\S+)", mail.get_content()).group(1)
        assert (await api.get(f"/reset-password?token={token}")).status_code == 200
        done = await api.post("/reset-password", data={"token": token, "password": NEW})
        assert "Password changed" in done.text
        again = await api.post("/reset-password", data={"token": token, "password": NEW})
        assert again.status_code == 400

        await until_refused(api, bearer(thief), within=5)
        stolen = await api.post(
            "/api/v1/auth/refresh", json={"refresh_token": thief["refresh_token"]}
        )
        assert stolen.status_code == 401
        assert (await api.get("/api/v1/auth/me", headers=bearer(mine))).status_code == 401

        assert (
            await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        ).status_code == 401
        signed_in = await second_factor(NEW, recovery[1])
        assert signed_in.status_code == 200, signed_in.text
        events = await api.get("/api/v1/auth/security-events", headers=bearer(signed_in.json()))
        actions = {e["action"] for e in events.json()["items"]}
        assert {
            "registered",
            "email_verified",
            "second_factor_enabled",
            "recovery_code_used",
            "password_reset",
            "session_ended",
        } <= actions
