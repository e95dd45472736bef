"""Who may register: REGISTRATION=open (development's default), invite (production's: an
administrator's single-use invitation), closed (administrators create accounts)."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from dashtam_models import Invitation, User
from tests.api.test_auth import is_problem
from tests.fixtures.institution import client_of

PASSWORD = "correct horse battery"


async def register(client, email: str, **extra):
    return await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, **extra}
    )


async def admin_headers(client, session, email: str) -> dict:
    assert (await register(client, email)).status_code == 201
    await session.execute(update(User).where(User.email == email).values(is_admin=True))
    await session.commit()
    tokens = (
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def test_closed_registration_refuses_everyone(test_settings, connection):
    closed = test_settings.model_copy(update={"REGISTRATION": "closed"})
    async with client_of(closed, connection) as client:
        answer = await register(client, "someone@example.com")
        is_problem(answer, 403)
        assert answer.json()["needs"] == "administrator"


async def test_invitations_are_single_use_short_lived_and_for_whom_they_name(
    test_settings, connection, session
):
    open_ = test_settings.model_copy(update={"REGISTRATION": "open"})
    invite = test_settings.model_copy(update={"REGISTRATION": "invite"})
    async with client_of(open_, connection) as client:
        admin = await admin_headers(client, session, "admin@home.lan")
        assert (await register(client, "plain@example.com")).status_code == 201
        plain = (
            await client.post(
                "/api/v1/auth/login", json={"email": "plain@example.com", "password": PASSWORD}
            )
        ).json()
    async with client_of(invite, connection) as client:
        # Only administrators invite.
        not_admin = {"Authorization": f"Bearer {plain['access_token']}"}
        is_problem(await client.post("/api/v1/invitations", headers=not_admin, json={}), 403)
        is_problem(await client.get("/api/v1/invitations", headers=not_admin), 403)

        anyone = await client.post("/api/v1/invitations", headers=admin, json={"note": "Bo"})
        assert anyone.status_code == 201, anyone.text
        token = anyone.json()["token"]
        assert token.startswith("dti_")
        assert anyone.json()["state"] == "open"
        named = (
            await client.post(
                "/api/v1/invitations", headers=admin, json={"email": "Cy@Example.com"}
            )
        ).json()

        is_problem(await register(client, "bo@example.com"), 403)  # no invitation
        is_problem(await register(client, "bo@example.com", invitation="dti_forged"), 403)
        # An invitation for someone else's address.
        is_problem(await register(client, "bo@example.com", invitation=named["token"]), 403)
        assert (await register(client, "bo@example.com", invitation=token)).status_code == 201
        is_problem(await register(client, "bo2@example.com", invitation=token), 403)  # used
        assert (
            await register(client, "cy@example.com", invitation=named["token"])
        ).status_code == 201

        # Revoked and expired ones are refused too.
        revoked = (await client.post("/api/v1/invitations", headers=admin, json={})).json()
        gone = await client.delete(f"/api/v1/invitations/{revoked['id']}", headers=admin)
        assert gone.status_code == 204
        is_problem(await register(client, "dee@example.com", invitation=revoked["token"]), 403)
        old = (await client.post("/api/v1/invitations", headers=admin, json={})).json()
        await session.execute(
            update(Invitation)
            .where(Invitation.id == old["id"])
            # An hour back: the test transaction's now() is its start, before Python's clock.
            .values(expires_at=datetime.now(UTC) - timedelta(hours=1))
        )
        await session.commit()
        is_problem(await register(client, "dee@example.com", invitation=old["token"]), 403)

        listed = (await client.get("/api/v1/invitations", headers=admin)).json()["items"]
        states = {i["id"]: i["state"] for i in listed}
        assert states[anyone.json()["id"]] == "used"
        assert states[revoked["id"]] == "revoked"
        assert states[old["id"]] == "expired"
        assert all("token" not in i for i in listed)  # shown once
