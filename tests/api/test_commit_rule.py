"""The one commit rule (docs/architecture.md): the request's session commits once, when the
endpoint has returned; an endpoint that raises keeps nothing; a sign-in's refusal keeps what it
wrote (its audit row, its failure); work that must see the request's rows runs after the commit."""

import httpx
import pytest
from sqlalchemy import text

from dashtam_api.deps import SessionDep, SignInSessionDep
from dashtam_api.errors import Conflict
from dashtam_api.unit_of_work import after_commit
from dashtam_models import User
from tests.fixtures.app import running_app


@pytest.fixture
async def probed(test_settings, connection):
    """An app of its own with a probe route on each kind of session: it adds a person, then
    answers, is refused, or crashes, as asked."""
    async with running_app(test_settings, connection) as app:
        happened: list[str] = []

        async def probe(session, outcome: str, email: str) -> dict:
            session.add(User(email=email, name="Probe"))
            await session.flush()
            after_commit(session, lambda: happened.append(email))
            if outcome == "refused":
                raise Conflict("refused after writing")
            if outcome == "crashed":
                raise RuntimeError("a bug after writing")
            return {}

        async def plain(outcome: str, email: str, session: SessionDep) -> dict:
            return await probe(session, outcome, email)

        async def sign_in(outcome: str, email: str, session: SignInSessionDep) -> dict:
            return await probe(session, outcome, email)

        app.add_api_route("/_probe/plain/{outcome}", plain, methods=["POST"])
        app.add_api_route("/_probe/sign-in/{outcome}", sign_in, methods=["POST"])
        yield app, happened


async def kept(connection, email: str) -> bool:
    found = await connection.scalar(
        text("SELECT count(*) FROM users WHERE email = :e"), {"e": email}
    )
    return found == 1


@pytest.mark.parametrize(
    ("kind", "outcome", "status", "keeps"),
    [
        ("plain", "answered", 200, True),
        ("plain", "refused", 409, False),
        ("plain", "crashed", 500, False),
        ("sign-in", "answered", 200, True),
        ("sign-in", "refused", 409, True),  # the refusal's writes are the point
        ("sign-in", "crashed", 500, False),  # a bug keeps nothing, even here
    ],
)
async def test_what_a_request_keeps(probed, connection, kind, outcome, status, keeps):
    app, happened = probed
    email = f"{kind}-{outcome}@probe.example"
    # A crash answers 500 here instead of being raised into the test.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answer = await client.post(f"/_probe/{kind}/{outcome}", params={"email": email})
    assert answer.status_code == status, answer.text
    assert await kept(connection, email) is keeps
    assert happened == ([email] if keeps else [])  # after the commit, and only after one
