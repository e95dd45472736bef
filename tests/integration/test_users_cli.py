"""`dashtam-users` (`inv user-create`, `inv user-reset-password`): accounts without mail."""

import pytest
from sqlalchemy import select

from dashtam_models import SecurityAuditLog, User, UserSession
from tests.api.test_sessions import until_refused
from tests.helpers import env_for, run_main, run_module

pytestmark = pytest.mark.commits  # the command commits in its own transaction


def _password(out: str) -> str:
    return out.split("password: ", 1)[1].split()[0]


async def test_create_an_administrator_then_reset_the_password(session, test_settings, client):
    # This worker's database and Valkey index: the API here reads the sessions ended there.
    env = env_for(test_settings.DATABASE_URL, REDIS_URL=test_settings.REDIS_URL)
    created = run_module("dashtam_api.users", env, args=["create", "Root@Home.LAN", "--admin"])
    assert created.returncode == 0, created.stderr
    assert "created administrator Root@home.lan" in created.stdout  # the domain normalised
    password = _password(created.stdout)
    user = await session.scalar(select(User))
    assert (user.email, user.is_admin) == ("Root@home.lan", True)
    assert password not in user.password_hash
    await session.commit()  # the API's writes below, on this connection, are committed for real

    login = {"email": "root@home.lan", "password": password}
    tokens = (await client.post("/api/v1/auth/login", json=login)).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/api/v1/auth/me", headers=headers)).json()["is_admin"] is True

    again = run_main("dashtam_api.users", env, args=["create", "root@home.lan"])
    assert again.returncode == 1
    assert again.stderr.strip() == "dashtam-users: an account with the e-mail root@home.lan exists"

    reset = run_main("dashtam_api.users", env, args=["reset-password", "root@home.lan"])
    assert reset.returncode == 0, reset.stderr
    assert "1 session(s) ended" in reset.stdout
    assert (await client.post("/api/v1/auth/login", json=login)).status_code == 401
    login["password"] = _password(reset.stdout)
    assert (await client.post("/api/v1/auth/login", json=login)).status_code == 200
    # The session that was open has ended: its access token is refused within seconds.
    await until_refused(client, headers, within=5)
    ended = await session.scalar(
        select(UserSession.end_reason).where(UserSession.ended_at.isnot(None))
    )
    assert ended == "password_changed"
    actions = set((await session.scalars(select(SecurityAuditLog.action))).all())
    assert {"registered", "password_reset", "session_ended"} <= actions

    missing = run_main("dashtam_api.users", env, args=["reset-password", "nobody@home.lan"])
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        "dashtam-users: no account with the e-mail nobody@home.lan",
    )
