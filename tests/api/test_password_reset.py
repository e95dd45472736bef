"""Password reset by mail, end to end through the environments' mail catcher (STARTTLS, the
project's CA; the tests read what it kept through its API):
the same answer, as fast, for a known and an unknown address; the link's page works once and
ends every session; no mail configured is a clear 409."""

import re
import statistics
import time

import pytest
from sqlalchemy import select

from dashtam_models import SecurityAuditLog
from tests.api.test_auth import is_problem
from tests.api.test_sessions import bearer, until_refused
from tests.fixtures.institution import client_of
from tests.fixtures.smtp import unique_address

PASSWORD = "correct horse battery"
NEW = "a brand new pass phrase"


RESET = "Reset your Dashtam password"
CONFIRM = "Confirm your address for Dashtam"


async def mail_to(server, address: str, subject: str = RESET):
    return await server.arrived(address, subject)


async def registered(client, email: str) -> None:
    answer = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 201, answer.text
    # Its confirmation mail goes out after the answer: done before the next request (here
    # every request shares the test's one database connection).
    await client.app.state.ctx.settle()


async def test_a_reset_link_arrives_and_works_once(test_settings, connection, mail_server, session):
    settings = test_settings.model_copy(update={"SMTP_URL": mail_server.url})
    async with client_of(settings, connection) as client:
        email = unique_address("reset-me")
        await registered(client, email)
        tokens = (
            await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        ).json()

        asked = await client.post("/api/v1/auth/password-reset", json={"email": email})
        assert asked.status_code == 202, asked.text
        (message,) = await mail_to(mail_server, email)
        assert message["X-Dashtam-Environment"] == "testing"
        body = message.get_content()
        link = re.search(r"https://\S+/reset-password\?token=(dtr_\S+)", body)
        assert link, body
        token = link.group(1)

        # The link's page: a form without script, then the new password set through it.
        page = await client.get(f"/reset-password?token={token}")
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert f'value="{token}"' in page.text
        done = await client.post("/reset-password", data={"token": token, "password": NEW})
        assert done.status_code == 200, done.text
        assert "Password changed" in done.text

        # Once only; the old password and the old session are gone, the new password works.
        again = await client.post("/reset-password", data={"token": token, "password": NEW})
        assert again.status_code == 400
        assert "does not work" in again.text
        is_problem(  # the API: no open link has this token (the page above: its form, 400)
            await client.post(
                "/api/v1/auth/password-reset/complete", json={"token": token, "password": NEW}
            ),
            404,
        )
        await until_refused(client, bearer(tokens), within=5)
        old = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert old.status_code == 401
        new = await client.post("/api/v1/auth/login", json={"email": email, "password": NEW})
        assert new.status_code == 200
    actions = set((await session.scalars(select(SecurityAuditLog.action))).all())
    assert {"password_reset_requested", "password_reset", "session_ended"} <= actions


async def test_a_known_and_an_unknown_address_get_the_same_answer_as_fast(
    test_settings, connection, mail_server
):
    settings = test_settings.model_copy(update={"SMTP_URL": mail_server.url})
    async with client_of(settings, connection) as client:
        known = unique_address("known", "example.com")
        await registered(client, known)
        unknown = [unique_address(f"nobody{n}", "example.com") for n in range(8)]

        async def asked(address: str) -> tuple[int, str, float]:
            started = time.perf_counter()
            answer = await client.post("/api/v1/auth/password-reset", json={"email": address})
            took = time.perf_counter() - started
            # The lookup and the mail, after the answer: done before the next request (here
            # they share the test's one database connection).
            await client.app.state.ctx.settle()
            return answer.status_code, answer.text, took

        times: dict[str, list[float]] = {"known": [], "unknown": []}
        answers = set()
        for n in range(8):  # alternating, so the machine's drift touches both alike
            for kind, address in (("known", known), ("unknown", unknown[n])):
                status, text, took = await asked(address)
                answers.add((status, text))
                times[kind].append(took)
        assert len(answers) == 1  # the very same answer
        assert answers.pop()[0] == 202
        await mail_to(mail_server, known)
        assert all(mail_server.to(address) == [] for address in unknown)
        # The answer comes before any lookup: medians within a few milliseconds of each other
        # (a generous bound for a shared machine; the mail itself is sent afterwards).
        medians = [statistics.median(t) for t in times.values()]
        assert abs(medians[0] - medians[1]) < max(0.015, 0.5 * min(medians)), times


async def test_no_mail_configured_is_a_clear_409_for_everyone(client):
    for address in ("someone@example.com", "nobody@example.com"):
        answer = await client.post("/api/v1/auth/password-reset", json={"email": address})
        is_problem(answer, 409)
        assert answer.json()["needs"] == "mail"
        assert "inv user-reset-password" in answer.text


async def test_a_server_without_tls_is_refused(test_settings):
    """STARTTLS is required: a plain SMTP server on the other end is an error, not a
    cleartext mail (checked against a listener that offers no STARTTLS)."""
    from aiosmtpd.controller import Controller

    from dashtam_api.connections.oauth import tls_context
    from dashtam_api.mail import Mailer, MailError
    from tests.fixtures.receiver import free_port

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            return "250 kept"

    port = free_port()
    plain = Controller(Sink(), hostname="127.0.0.1", port=port)
    plain.start()
    try:
        settings = test_settings.model_copy(update={"SMTP_URL": f"smtp://localhost:{port}"})
        mailer = Mailer(settings, tls_context(settings.CA_CERT_FILE))
        message = mailer.message(to="a@example.com", subject="s", text="t")
        with pytest.raises(MailError, match="STARTTLS"):
            await mailer.send(message)
    finally:
        plain.stop()


async def test_an_address_is_confirmed_by_the_link_mailed_to_it(
    test_settings, connection, mail_server
):
    settings = test_settings.model_copy(update={"SMTP_URL": mail_server.url})
    async with client_of(settings, connection) as client:
        email = unique_address("confirm-me", "nas.local")
        await registered(client, email)
        (message,) = await mail_to(mail_server, email, CONFIRM)
        token = re.search(r"/verify-email\?token=(dtv_\S+)", message.get_content()).group(1)
        tokens = (
            await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        ).json()
        me = await client.get("/api/v1/auth/me", headers=bearer(tokens))
        assert me.json()["email_verified"] is False

        # Opening the link changes nothing (mail scanners open links): the button does.
        page = await client.get(f"/verify-email?token={token}")
        assert page.status_code == 200
        assert "Confirm my address" in page.text
        assert (await client.get("/api/v1/auth/me", headers=bearer(tokens))).json()[
            "email_verified"
        ] is False
        done = await client.post("/verify-email", data={"token": token})
        assert done.status_code == 200, done.text
        assert "Address confirmed" in done.text
        me = await client.get("/api/v1/auth/me", headers=bearer(tokens))
        assert me.json()["email_verified"] is True

        # Once only; and a verified address needs no new link.
        again = await client.post("/api/v1/auth/verify-email", json={"token": token})
        is_problem(again, 404)
        is_problem(
            await client.post("/api/v1/auth/verify-email/resend", headers=bearer(tokens)), 409
        )
