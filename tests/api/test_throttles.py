"""Throttles on guessed credentials slow attackers, not owners (dashtam_api/throttle.py): a
credential's failures back off per address, a credential guessed from everywhere slows instead
of locking, an address failing across credentials is refused only its failures, and the address
is the client's real one behind a trusted proxy only."""

from dataclasses import replace
from urllib.parse import urlsplit

import httpx
import pytest

from dashtam_api import throttle as throttle_module
from dashtam_api.throttle import Throttle
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.api.test_totp import enrolled, second_factor
from tests.fixtures.app import running_app
from tests.fixtures.simplefin_client import SimplefinClient

WRONG = "not the password"
PASSWORD = "correct horse battery"


def client_from(app, address: str) -> httpx.AsyncClient:
    """A client whose requests reach the app from ``address`` (the ASGI peer)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40000)),
        base_url="http://testserver",
    )


async def login(client, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_guessing_from_elsewhere_never_locks_the_owner_out(
    app, client, sign_up, test_settings
):
    _, _, (email, password) = await sign_up()
    async with client_from(app, "203.0.113.7") as attacker:
        for _ in range(test_settings.LOGIN_MAX_FAILURES):
            assert (await login(attacker, email, WRONG)).status_code == 401
        # The guesser waits, even with the right password: same credential, same address.
        throttled = await login(attacker, email, password)
        is_problem(throttled, 429)
        assert 0 < int(throttled.headers["retry-after"]) <= test_settings.LOGIN_BACKOFF_SECONDS
    # The owner, from their own address, signs in as if nothing happened.
    assert (await login(client, email, password)).status_code == 200


async def test_failures_back_off_exponentially_up_to_the_lockout(
    redis_client, test_settings, monkeypatch
):
    settings = test_settings.model_copy(
        update={"LOGIN_MAX_FAILURES": 2, "LOGIN_BACKOFF_SECONDS": 10, "LOGIN_LOCKOUT_SECONDS": 35}
    )
    now = [1_000_000.0]
    monkeypatch.setattr(throttle_module.time, "time", lambda: now[0])
    guesser = Throttle(
        redis=redis_client, settings=settings, scope="test", credential="a@example.com",
        address="198.51.100.1",
    )  # fmt: skip
    waits = []
    for _ in range(2 + 4):
        assert await guesser.wait() == 0  # each failure comes once the last wait is over
        await guesser.failed()
        waits.append(await guesser.wait())
        now[0] += waits[-1]
    assert waits == [0, 10, 20, 35, 35, 35]  # free, then doubling, at most the lockout
    await guesser.succeeded()
    assert await guesser.wait() == 0
    await guesser.failed()
    assert await guesser.wait() == 0  # a success starts the pair afresh


async def test_a_credential_guessed_everywhere_slows_without_locking_its_owner(
    redis_client, test_settings
):
    settings = test_settings.model_copy(
        update={"LOGIN_CREDENTIAL_MAX_FAILURES": 6, "LOGIN_SLOW_SECONDS": 30}
    )
    of = Throttle(redis=redis_client, settings=settings, scope="test", credential="b@x", address="")
    for n in range(6):  # six addresses, one guess each: none of them is backed off alone
        guesser = replace(of, address=f"198.51.100.{n}")
        assert await guesser.wait() == 0
        await guesser.failed()
    # Past the ceiling: each address gets one try per LOGIN_SLOW_SECONDS.
    seventh = replace(of, address="198.51.100.99")
    assert await seventh.wait() == 0
    assert 0 < await seventh.wait() <= 30
    owner = replace(of, address="192.0.2.10")
    assert await owner.wait() == 0  # the owner's own turn
    other = replace(of, credential="c@x", address="198.51.100.99")
    assert await other.wait() == 0  # other credentials are not slowed


async def test_a_stale_apps_failures_never_refuse_anothers_valid_access(app, client, test_settings):
    """One app polling with a revoked or mistyped access URL, and another person's app behind
    the same address (the same proxy): the valid one is served throughout."""
    accesses = []
    for who in ("stale", "valid"):
        headers = await signed_in(client, f"sf-{who}")
        made = await client.post("/api/v1/simplefin/setup-tokens", headers=headers, json={})
        assert made.status_code == 201, made.text
        accesses.append(await SimplefinClient(client).claim(made.json()["setup_token"]))
    stale, valid = (urlsplit(url) for url in accesses)
    root = f"{test_settings.API_BASE_URL}/simplefin/accounts"
    for _ in range(test_settings.LOGIN_MAX_FAILURES + 2):
        await client.get(root, auth=(stale.username, "mistyped"))
    is_problem(await client.get(root, auth=(stale.username, "mistyped")), 429)
    answer = await client.get(root, auth=(valid.username, valid.password))
    assert answer.status_code == 200, answer.text


async def test_an_address_failing_across_credentials_is_refused_its_failures_only(
    client, test_settings, connection, redis_client
):
    settings = test_settings.model_copy(update={"LOGIN_ADDRESS_MAX_FAILURES": 3})
    async with running_app(settings, connection) as own, client_from(own, "127.0.0.1") as http:
        headers = await signed_in(http, "sprayed")
        made = await http.post("/api/v1/simplefin/setup-tokens", headers=headers, json={})
        valid = urlsplit(await SimplefinClient(http).claim(made.json()["setup_token"]))
        root = f"{settings.API_BASE_URL}/simplefin/accounts"
        for n in range(3):  # three usernames, one failure each: under every pair's limit
            is_problem(await http.get(root, auth=(f"guess{n}", "x")), 403)
        # Names never handed out leave no keys behind per name: only the address's count.
        assert [k async for k in redis_client.scan_iter("throttle:simplefin:credential:*")] == []
        refused = await http.get(root, auth=("guess-next", "x"))
        is_problem(refused, 429)
        assert int(refused.headers["retry-after"]) > 0
        answer = await http.get(root, auth=(valid.username, valid.password))
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("trusted", [True, False])
async def test_the_clients_address_comes_from_trusted_proxies_only(
    test_settings, connection, sign_up, trusted
):
    """Behind the project's proxy, each client is throttled by its own address; a forwarded
    header from anyone else is ignored, so it cannot dodge its own throttle."""
    settings = test_settings.model_copy(update={"TRUSTED_PROXIES": "10.0.0.0/8" if trusted else ""})
    async with running_app(settings, connection) as own, client_from(own, "10.1.2.3") as proxy:
        email = f"proxied-{trusted}@example.com"
        registered = await proxy.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        guesser = {"X-Forwarded-For": "203.0.113.50"}
        owner = {"X-Forwarded-For": "192.0.2.60"}
        for _ in range(settings.LOGIN_MAX_FAILURES):
            await proxy.post(
                "/api/v1/auth/login", json={"email": email, "password": WRONG}, headers=guesser
            )
        answer = await proxy.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=owner
        )
        # Trusted: the owner's own address, not the guesser's. Untrusted: both are the proxy.
        assert answer.status_code == (200 if trusted else 429), answer.text


async def test_a_much_guessed_owner_with_a_second_factor_still_signs_in(
    client, sign_up, test_settings, connection
):
    """Past the ceiling, the owner's password step takes their address's turn; the second
    factor, which only a right password reaches, is not slowed, and a known address is not
    slowed again. A stranger's address is."""
    _, _, codes, (email, password) = await enrolled(client, sign_up)
    settings = test_settings.model_copy(
        update={"LOGIN_CREDENTIAL_MAX_FAILURES": 3, "LOGIN_SLOW_SECONDS": 60}
    )
    async with running_app(settings, connection) as own:
        for n in range(3):
            async with client_from(own, f"198.51.100.{n}") as guesser:
                assert (await login(guesser, email, WRONG)).status_code == 401
        async with client_from(own, "192.0.2.77") as owner:
            challenge = (await login(owner, email, password)).json()["challenge"]
            signed_in = await second_factor(owner, challenge, recovery_code=codes[0])
            assert signed_in.status_code == 200, signed_in.text
            again = await login(owner, email, password)
            assert again.status_code == 200, again.text  # a known address: not slowed
        async with client_from(own, "203.0.113.9") as stranger:
            assert (await login(stranger, email, WRONG)).status_code == 401  # its turn
            is_problem(await login(stranger, email, WRONG), 429)  # slowed
