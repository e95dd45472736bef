"""The web console (issue 37), first pages: sign in (password, then the second factor), the
overview, sign out; the cookies are the API's own session (what ends one ends the other), every
form carries a CSRF token, every page a policy that allows nothing from another origin."""

import base64
import re
import time
import uuid
from datetime import date, timedelta

import httpx
import pyotp
import pytest

from dashtam_api.auth.totp import STEP_SECONDS
from dashtam_api.console import cookies
from tests.fixtures.app import asgi_client

PASSWORD = "correct horse battery"


@pytest.fixture
async def browser(app):
    """A client over HTTPS (the console's cookies are Secure: never sent over plain HTTP)."""
    async with asgi_client(app) as http:
        http.base_url = httpx.URL("https://testserver")
        yield http


def csrf_of(page: httpx.Response) -> str:
    return re.search(r'name="csrf" value="([^"]*)"', page.text).group(1)


async def person(client) -> tuple[str, dict]:
    email = f"console-{uuid.uuid4().hex[:8]}@example.com"
    made = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert made.status_code == 201, made.text
    tokens = (
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    return email, {"Authorization": f"Bearer {tokens['access_token']}"}


async def sign_in(browser, email: str, password: str = PASSWORD) -> httpx.Response:
    form = await browser.get("/app/sign-in")
    assert form.status_code == 200, form.text
    return await browser.post(
        "/app/sign-in", data={"email": email, "password": password, "csrf": csrf_of(form)}
    )


async def test_pages_need_a_sign_in_and_allow_nothing_from_another_origin(browser):
    away = await browser.get("/app/")
    assert (away.status_code, away.headers["location"]) == (303, "/app/sign-in")
    form = await browser.get("/app/sign-in")
    policy = form.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "http" not in policy  # no other origin named
    assert form.headers["cache-control"] == "no-store"
    # Every control labelled.
    for control in re.findall(r'<input id="([^"]+)"', form.text):
        assert f'<label for="{control}">' in form.text
    css = await browser.get("/app/static/console.css")
    assert (css.status_code, css.headers["content-type"].split(";")[0]) == (200, "text/css")


async def test_a_person_signs_in_sees_the_overview_and_signs_out(browser, client):
    email, headers = await person(client)
    made = await client.post(
        "/api/v1/accounts",
        headers=headers,
        json={"name": "Credit union", "account_type": "checking", "currency": "USD",
              "opening_balance": "1250.50"},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    pending = await client.post(
        "/api/v1/providers", headers=headers, json={"provider_key": "sandbox", "alias": "My bank"}
    )
    assert pending.status_code == 201, pending.text

    # A form without its token is refused, a wrong password said so, nothing set.
    refused = await browser.post("/app/sign-in", data={"email": email, "password": PASSWORD})
    assert refused.status_code == 400
    wrong = await sign_in(browser, email, "not the password at all")
    assert wrong.status_code == 200  # the form again, saying what was wrong
    assert 'role="alert">Wrong e-mail or password' in wrong.text
    assert cookies.ACCESS not in browser.cookies

    signed = await sign_in(browser, email)
    assert (signed.status_code, signed.headers["location"]) == (303, "/app/")
    set_cookies = signed.headers.get_list("set-cookie")
    access = next(c for c in set_cookies if c.startswith(f"{cookies.ACCESS}="))
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/app"):
        assert flag.lower() in access.lower()

    page = await browser.get("/app/")
    assert page.status_code == 200, page.text
    assert "<h1>Overview</h1>" in page.text
    assert "Credit union" in page.text
    assert "1,250.50 USD" in page.text  # the account, and the net worth in its currency
    # The sandbox provider never connected: at the top, with the one action that fixes it.
    attention = page.text.split('id="attention"')[1].split("</section>")[0]
    assert "My bank" in attention
    assert "Connect it" in attention

    # Signing out needs the page's token; then the session is over, its refresh token too.
    assert (await browser.post("/app/sign-out", data={})).status_code == 400
    refresh = browser.cookies[cookies.REFRESH]
    out = await browser.post("/app/sign-out", data={"csrf": csrf_of(page)})
    assert (out.status_code, out.headers["location"]) == (303, "/app/sign-in")
    assert (await browser.get("/app/")).status_code == 303
    browser.cookies.set(cookies.REFRESH, refresh, domain="testserver", path="/app")
    assert (await browser.get("/app/")).status_code == 303


async def test_an_expired_access_cookie_is_renewed_and_a_password_change_ends_the_sign_in(
    browser, client
):
    email, headers = await person(client)
    assert (await sign_in(browser, email)).status_code == 303
    first_refresh = browser.cookies[cookies.REFRESH]
    # The access cookie gone (expired): the refresh cookie renews both, rotated.
    browser.cookies.delete(cookies.ACCESS)
    page = await browser.get("/app/")
    assert page.status_code == 200, page.text
    assert browser.cookies[cookies.REFRESH] != first_refresh
    assert cookies.ACCESS in browser.cookies
    # A new password (through the API) ends every other session: the console's too.
    changed = await client.patch(
        "/api/v1/auth/me",
        headers=headers,
        json={"password": "an entirely new password", "current_password": PASSWORD},
    )
    assert changed.status_code == 200, changed.text
    assert (await browser.get("/app/")).status_code == 303


async def test_with_a_second_factor_the_code_completes_the_sign_in(browser, client):
    email, headers = await person(client)
    secret = (await client.post("/api/v1/auth/totp", headers=headers)).json()["secret"]
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    confirmed = await client.post(
        "/api/v1/auth/totp/confirm", headers=headers, json={"code": totp.now()}
    )
    assert confirmed.status_code == 200, confirmed.text
    asked = await sign_in(browser, email)
    assert asked.status_code == 200
    assert "second factor" in asked.text
    challenge = re.search(r'name="challenge" value="([^"]+)"', asked.text).group(1)
    form = {"challenge": challenge, "csrf": csrf_of(asked)}
    wrong = await browser.post("/app/sign-in/second-factor", data=form | {"code": "000000"})
    assert wrong.status_code == 200
    assert "not valid" in wrong.text
    assert cookies.ACCESS not in browser.cookies
    # The code just confirmed was used once already: the next step's is good.
    code = totp.at(time.time() + STEP_SECONDS)
    done = await browser.post("/app/sign-in/second-factor", data=form | {"code": code})
    assert (done.status_code, done.headers.get("location")) == (303, "/app/"), done.text
    assert (await browser.get("/app/")).status_code == 200


async def test_transactions_newest_first_with_filters_pages_and_one_transactions_page(
    browser, client
):
    from tests.api.test_imports import _ofx, imported

    email, headers = await person(client)
    made = await client.post(
        "/api/v1/accounts",
        headers=headers,
        json={"name": "Checking <b>", "account_type": "checking", "currency": "USD"},
    )
    account = made.json()
    start = date(2026, 9, 1)
    rows = [
        (f"T{n}", f"{start + timedelta(days=n):%Y%m%d}", f"-{n + 1}.25", f"SHOP {n}")
        for n in range(55)
    ]
    rows[3] = ("T3", "20260904", "-4.25", "BLUE BOTTLE COFFEE")
    await imported(client, headers, account["id"], _ofx(*rows[:28]), "a.ofx")
    await imported(client, headers, account["id"], _ofx(*rows[28:]), "b.ofx")
    assert (await sign_in(browser, email)).status_code == 303

    first = await browser.get("/app/transactions")
    assert first.status_code == 200, first.text
    shown = re.findall(r"<td>(2026-\d\d-\d\d)</td>", first.text)
    assert len(shown) == 50
    assert shown == sorted(shown, reverse=True)  # newest first
    older = re.search(r'<a href="([^"]+)" rel="next">', first.text).group(1)
    rest = await browser.get(older.replace("&amp;", "&"))
    assert len(re.findall(r"<td>(2026-\d\d-\d\d)</td>", rest.text)) == 5
    assert 'rel="next"' not in rest.text

    # Text search; what a person or a bank named is escaped, never markup.
    found = await browser.get("/app/transactions", params={"q": "blue bottle"})
    assert "BLUE BOTTLE COFFEE" in found.text
    assert "Checking &lt;b&gt;" in found.text
    assert "<b>" not in found.text
    assert len(re.findall(r"<td>(2026-\d\d-\d\d)</td>", found.text)) == 1
    # Bad filters say so; another person's account is not a choice.
    bad = await browser.get("/app/transactions", params={"from": "yesterday"})
    assert bad.status_code == 400
    assert 'role="alert"' in bad.text
    stranger = await browser.get("/app/transactions", params={"account": str(uuid.uuid4())})
    assert stranger.status_code == 400

    link = re.search(r'href="/app/transactions/([0-9a-f-]{36})">BLUE', found.text).group(1)
    one = await browser.get(f"/app/transactions/{link}")
    assert one.status_code == 200
    assert "-4.25 USD" in one.text
    assert "Checking &lt;b&gt;" in one.text
    assert (await browser.get(f"/app/transactions/{uuid.uuid4()}")).status_code == 404
    assert (await browser.get("/app/transactions/not-an-id")).status_code == 404


@pytest.fixture
async def institutions(app, browser):
    """The console's client, with the app's institution pool pointed at the app itself (the
    look-alikes answer in-process)."""
    ctx = app.state.ctx
    saved = ctx.transport
    ctx.transport = httpx.ASGITransport(app=app)
    try:
        yield browser
    finally:
        ctx.transport = saved


async def added(browser, page, key: str, alias: str) -> tuple[str, httpx.Response]:
    made = await browser.post(
        "/app/connections",
        data={"provider_key": key, "alias": alias, "csrf": csrf_of(page)},
    )
    assert made.status_code == 303, made.text
    shown = await browser.get(made.headers["location"])
    assert shown.status_code == 200, shown.text
    return made.headers["location"], shown


async def test_connections_are_added_connected_synced_disconnected_and_deleted(
    institutions, client
):
    browser = institutions
    email, _ = await person(client)
    assert (await sign_in(browser, email)).status_code == 303
    listing = await browser.get("/app/connections")
    assert listing.status_code == 200
    assert 'value="ibkr"' in listing.text  # every configured institution is offered

    # IBKR: the token and query typed, tried at the look-alike, sealed.
    here, page = await added(browser, listing, "ibkr", "My IBKR")
    assert "Flex token" in page.text
    made = (await client.post("/sandbox/ibkr/tokens", json={})).json()
    wrong = await browser.post(
        f"{here}/connect", data={"csrf": csrf_of(page), "token": "1" * 24, "query_id": "1"}
    )
    assert wrong.status_code == 200
    assert "1015" in wrong.text  # IBKR's refusal, said on the form
    done = await browser.post(
        f"{here}/connect",
        data={"csrf": csrf_of(page), "token": made["token"], "query_id": made["query_id"]},
    )
    assert done.headers["location"] == f"{here}?done=connected"
    page = await browser.get(done.headers["location"])
    assert "Connected." in page.text
    assert made["token"] not in page.text
    synced = await browser.post(f"{here}/sync", data={"csrf": csrf_of(page)})
    assert synced.headers["location"] == f"{here}?done=synced"
    page = await browser.get(synced.headers["location"])
    assert "<td>succeeded</td>" in page.text
    assert "Individual" in page.text  # an account it read
    # Without the page's token nothing happens.
    assert (await browser.post(f"{here}/revoke", data={})).status_code == 400
    gone = await browser.post(f"{here}/revoke", data={"csrf": csrf_of(page)})
    assert gone.headers["location"] == f"{here}?done=revoked"
    assert "revoked" in (await browser.get(here)).text
    deleted = await browser.post(f"{here}/delete", data={"csrf": csrf_of(page)})
    assert deleted.headers["location"] == "/app/connections?done=deleted"
    assert (await browser.get(here)).status_code == 404

    # OAuth2: the button leads to the institution's sign-in.
    here, page = await added(browser, listing, "sandbox", "My bank")
    started = await browser.post(f"{here}/connect", data={"csrf": csrf_of(page)})
    assert started.status_code == 303
    assert "/sandbox/oauth/authorize?" in started.headers["location"]
    # SimpleFIN: what is not a setup token is said on the form.
    here, page = await added(browser, listing, "simplefin", "My Bridge")
    refused = await browser.post(
        f"{here}/connect", data={"csrf": csrf_of(page), "setup_token": "not a token"}
    )
    assert (refused.status_code, "not of the form" in refused.text) == (200, True)
    # Enable Banking: a country's banks, then the bank's consent page.
    here, page = await added(browser, listing, "enablebanking", "My EU bank")
    listed = await browser.get(here, params={"country": "FI"})
    bank = re.search(r'<option value="([^"]+)">', listed.text.split('id="bank"')[1]).group(1)
    consent = await browser.post(
        f"{here}/connect", data={"csrf": csrf_of(listed), "bank": bank, "country": "FI"}
    )
    assert consent.status_code == 303
    assert "/sandbox/enablebanking/bank/" in consent.headers["location"]
    # Plaid: the button opens the Link page.
    here, page = await added(browser, listing, "plaid", "My Plaid")
    linked = await browser.post(f"{here}/connect", data={"csrf": csrf_of(page)})
    assert "/api/v1/link/" in linked.headers["location"]
    # A name taken twice is said on the form; another person's connection is not found.
    again = await browser.post(
        "/app/connections",
        data={"provider_key": "plaid", "alias": "My Plaid", "csrf": csrf_of(listing)},
    )
    assert (again.status_code, "already have" in again.text) == (200, True)
    assert (await browser.get(f"/app/connections/{uuid.uuid4()}")).status_code == 404


async def test_sharing_shows_each_secret_once_and_revokes_what_it_made(browser, client):
    email, _ = await person(client)
    assert (await sign_in(browser, email)).status_code == 303
    page = await browser.get("/app/sharing")
    assert page.status_code == 200, page.text

    # A SimpleFIN setup token: shown once, claimed by an app, the app listed, revoked.
    made = await browser.post(
        "/app/sharing/simplefin", data={"label": "Actual", "scope": "all", "csrf": csrf_of(page)}
    )
    assert made.status_code == 200
    token = re.search(r'id="secret" type="text" readonly value="([^"]+)"', made.text).group(1)
    assert "Actual" in made.text
    assert token not in (await browser.get("/app/sharing")).text  # once
    claim_url = base64.b64decode(token).decode()
    claimed = await client.post(httpx.URL(claim_url).path)
    assert claimed.status_code == 200, claimed.text
    page = await browser.get("/app/sharing")
    access = re.search(r"/app/sharing/simplefin/([0-9a-f-]{36})/revoke", page.text).group(1)
    revoked = await browser.post(
        f"/app/sharing/simplefin/{access}/revoke", data={"csrf": csrf_of(page)}
    )
    assert revoked.headers["location"] == "/app/sharing?done=revoked"
    assert "revoked" in (await browser.get("/app/sharing")).text

    # An API key: shown once, works, revoked stops working.
    bad = await browser.post("/app/sharing/keys", data={"name": "x", "csrf": csrf_of(page)})
    assert (bad.status_code, "at least one scope" in bad.text) == (200, True)
    made = await browser.post(
        "/app/sharing/keys",
        data={"name": "script", "scopes": ["accounts:read"], "expires_in_days": "7",
              "csrf": csrf_of(page)},
    )  # fmt: skip
    key = re.search(r'id="secret" type="text" readonly value="(dtk_[^"]+)"', made.text).group(1)
    bearer = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/api/v1/accounts", headers=bearer)).status_code == 200
    page = await browser.get("/app/sharing")
    key_id = re.search(r"/app/sharing/keys/([0-9a-f-]{36})/revoke", page.text).group(1)
    await browser.post(f"/app/sharing/keys/{key_id}/revoke", data={"csrf": csrf_of(page)})
    assert (await client.get("/api/v1/accounts", headers=bearer)).status_code == 401

    # A webhook: its secret shown once; a test event queued; deleted.
    refused = await browser.post(
        "/app/sharing/webhooks",
        data={"url": "ftp://example.com/x", "events": ["sync.succeeded"], "csrf": csrf_of(page)},
    )
    assert 'role="alert"' in refused.text
    made = await browser.post(
        "/app/sharing/webhooks",
        data={"url": "https://example.com/hooks", "events": ["sync.succeeded"],
              "csrf": csrf_of(page)},
    )  # fmt: skip
    assert re.search(r'readonly value="whsec_[^"]+"', made.text)
    page = await browser.get("/app/sharing")
    hook = re.search(r'href="/app/sharing/webhooks/([0-9a-f-]{36})"', page.text).group(1)
    hook_page = await browser.get(f"/app/sharing/webhooks/{hook}")
    assert "https://example.com/hooks" in hook_page.text
    assert "whsec_" not in hook_page.text
    tested = await browser.post(
        f"/app/sharing/webhooks/{hook}/test", data={"csrf": csrf_of(hook_page)}
    )
    assert tested.headers["location"] == f"/app/sharing/webhooks/{hook}?done=tested"
    gone = await browser.post(
        f"/app/sharing/webhooks/{hook}/delete", data={"csrf": csrf_of(hook_page)}
    )
    assert gone.headers["location"] == "/app/sharing?done=deleted"
    assert (await browser.get(f"/app/sharing/webhooks/{hook}")).status_code == 404
    assert (await browser.get(f"/app/sharing/webhooks/{uuid.uuid4()}")).status_code == 404


async def test_security_sessions_password_and_the_second_factor(browser, client, session):
    email, headers = await person(client)  # a session of the API's own
    assert (await sign_in(browser, email)).status_code == 303
    page = await browser.get("/app/security")
    assert page.status_code == 200
    assert "(this one)" in page.text
    other = re.findall(r"/app/security/sessions/([0-9a-f-]{36})/end", page.text)
    assert len(other) == 1  # the API's, not the console's own
    ended = await browser.post(
        f"/app/security/sessions/{other[0]}/end", data={"csrf": csrf_of(page)}
    )
    assert ended.headers["location"] == "/app/security?done=ended"
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401

    # The password: the current one is needed; a new one ends every other session.
    wrong = await browser.post(
        "/app/security/password",
        data={
            "current_password": "nope",
            "password": "a brand new password",
            "csrf": csrf_of(page),
        },
    )
    assert 'role="alert"' in wrong.text
    changed = await browser.post(
        "/app/security/password",
        data={"current_password": PASSWORD, "password": "a brand new password",
              "csrf": csrf_of(page)},
    )  # fmt: skip
    assert changed.headers["location"] == "/app/security?done=password"
    assert (await browser.get("/app/security")).status_code == 200  # this one stays

    # The second factor: a QR code drawn here, a code confirms, ten recovery codes once.
    page = await browser.get("/app/security")
    enrolling = await browser.post("/app/security/totp", data={"csrf": csrf_of(page)})
    assert "<svg" in enrolling.text
    assert "<script" not in enrolling.text.split("<main")[1]
    secret = re.search(r"Key: <code>([A-Z2-7]+)</code>", enrolling.text).group(1)
    refused = await browser.post(
        "/app/security/totp/confirm", data={"code": "000000", "csrf": csrf_of(page)}
    )
    assert "does not match" in refused.text
    code = pyotp.TOTP(secret, interval=STEP_SECONDS).now()
    on = await browser.post(
        "/app/security/totp/confirm", data={"code": code, "csrf": csrf_of(page)}
    )
    codes = re.findall(r"<li><code>([^<]+)</code></li>", on.text)
    assert len(codes) == 10
    again = await browser.get("/app/security")
    assert codes[0] not in again.text  # shown once
    assert "Turn the second factor off" in again.text
    off = await browser.post(
        "/app/security/totp/disable", data={"code": codes[0], "csrf": csrf_of(again)}
    )
    assert off.headers["location"] == "/app/security?done=off"
    events = (await browser.get("/app/security")).text
    assert "second factor enabled" in events
    assert "second factor disabled" in events


async def test_register_forgot_password_and_invitations(browser, client, session):
    from sqlalchemy import update

    from dashtam_models import User

    form = await browser.get("/app/register")
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    short = await browser.post(
        "/app/register", data={"email": email, "password": "short", "csrf": csrf_of(form)}
    )
    assert "12 characters" in short.text
    # Each form shown carries a token of its own (the one shown again, a new one).
    made = await browser.post(
        "/app/register", data={"email": email, "password": PASSWORD, "csrf": csrf_of(short)}
    )
    assert (made.status_code, made.headers["location"]) == (303, "/app/")
    assert (await browser.get("/app/")).status_code == 200  # signed in at once
    form = await browser.get("/app/register")
    taken = await browser.post(
        "/app/register", data={"email": email, "password": PASSWORD, "csrf": csrf_of(form)}
    )
    assert "already exists" in taken.text

    forgot = await browser.get("/app/forgot-password")
    asked = await browser.post(
        "/app/forgot-password", data={"email": "nobody@example.com", "csrf": csrf_of(forgot)}
    )
    # This test app sends no mail: the page says who can help instead (the API's 409).
    assert 'role="alert">This instance sends no mail' in asked.text

    # Invitations: administrators only.
    assert (await browser.get("/app/admin/invitations")).status_code == 403
    # A form to it, with or without a token, shows a person who is no administrator nothing.
    for data in ({}, {"csrf": "x", "email": "a@example.com"}):
        posted = await browser.post("/app/admin/invitations", data=data)
        assert posted.status_code in (400, 403)
        assert "Make an invitation" not in posted.text
    await session.execute(update(User).where(User.email == email).values(is_admin=True))
    await session.flush()
    page = await browser.get("/app/admin/invitations")
    assert page.status_code == 200
    invited = await browser.post(
        "/app/admin/invitations",
        data={"email": "friend@example.com", "note": "Sam", "csrf": csrf_of(page)},
    )
    link = re.search(r'readonly value="([^"]+/app/register\?invitation=[^"]+)"', invited.text)
    assert link is not None
    page = await browser.get("/app/admin/invitations")
    assert link.group(1) not in page.text  # shown once
    invitation = re.search(r"/app/admin/invitations/([0-9a-f-]{36})/revoke", page.text).group(1)
    revoked = await browser.post(
        f"/app/admin/invitations/{invitation}/revoke", data={"csrf": csrf_of(page)}
    )
    assert revoked.headers["location"] == "/app/admin/invitations?done=revoked"
    assert "revoked" in (await browser.get("/app/admin/invitations")).text


async def test_the_overview_draws_net_worth_over_time_per_currency(browser, client, session):
    from datetime import UTC, datetime
    from decimal import Decimal

    from dashtam_models import BalanceSnapshot

    email, headers = await person(client)
    made = {}
    for currency, opening in (("USD", "1000.10"), ("EUR", "250.00")):
        answer = await client.post(
            "/api/v1/accounts",
            headers=headers,
            json={"name": f"Cash {currency}", "account_type": "checking", "currency": currency,
                  "opening_balance": opening},
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
        made[currency] = uuid.UUID(answer.json()["id"])
    # The USD account had a balance two weeks ago too: two points, a chart.
    session.add(
        BalanceSnapshot(
            account_id=made["USD"],
            as_of=datetime.now(UTC) - timedelta(days=14),
            currency="USD",
            current=Decimal("900.00"),
        )
    )
    await session.flush()
    assert (await sign_in(browser, email)).status_code == 303
    page = await browser.get("/app/", params={"interval": "week"})
    charts = re.findall(r'<svg viewBox="[^"]+" role="img" aria-labelledby="([^"]+)"', page.text)
    assert charts == ["worth-usd-t worth-usd-d"]
    # One point is no chart: said in words (the figures beside it all the same).
    assert "EUR: one week so far" in page.text
    assert "900.00 USD" in page.text.split("The figures in USD")[1]
    assert "Net worth in USD, by week" in page.text
    assert "1,000.10 USD" in page.text.split("The figures in USD")[1]  # the figures beside it
    assert 'href="/app/?interval=week" aria-current="page"' in page.text
    # What is not an interval is the default one, never an error.
    assert "Net worth in USD, by day" in (await browser.get("/app/?interval=x")).text


async def test_an_account_of_ones_own_made_and_a_file_imported_into_it(browser, client):
    from tests.api.test_imports import _ofx

    email, _ = await person(client)
    assert (await sign_in(browser, email)).status_code == 303
    form = await browser.get("/app/accounts/new")
    bad = await browser.post(
        "/app/accounts/new",
        data={"name": "Cash", "account_type": "cash", "currency": "US", "csrf": csrf_of(form)},
    )
    assert "three-letter currency" in bad.text
    made = await browser.post(
        "/app/accounts/new",
        data={"name": "Credit union", "account_type": "checking", "currency": "usd",
              "opening_balance": "100.00", "csrf": csrf_of(form)},
    )  # fmt: skip
    assert made.status_code == 303
    here = made.headers["location"]
    page = await browser.get(here)
    assert "100.00 USD" in page.text

    statement = _ofx(("F1", "20261101", "-4.50", "COFFEE"), ("F2", "20261102", "-20.00", "GROCER"))
    done = await browser.post(
        f"{here}/import",
        data={"csrf": csrf_of(page)},
        files={"file": ("nov.ofx", statement)},
    )
    assert done.headers["location"] == f"{here}?done=imported"
    page = await browser.get(done.headers["location"])
    assert "Imported" in page.text
    assert re.search(r"<td>nov\.ofx \(ofx\)</td><td>done</td><td class=\"num\">2</td>", page.text)
    again = await browser.post(
        f"{here}/import", data={"csrf": csrf_of(page)}, files={"file": ("nov.ofx", statement)}
    )
    page = await browser.get(again.headers["location"])
    assert re.search(r"<td class=\"num\">0</td><td class=\"num\">2</td>", page.text)
    broken = await browser.post(
        f"{here}/import",
        data={"csrf": csrf_of(page)},
        files={"file": ("x.ofx", statement.replace(b"20261102", b"20261199"))},
    )
    assert broken.status_code == 200
    assert "is not a date" in broken.text  # the line named, nothing kept

    # Before it is read: no sign-in cookie, no length, or too long: refused.
    account_id = here.rsplit("/", 1)[1]
    async with asgi_client(browser._transport.app) as stranger:
        stranger.base_url = httpx.URL("https://testserver")
        refused = await stranger.post(
            f"/app/accounts/{account_id}/import", files={"file": ("a.ofx", statement)}
        )
    assert refused.status_code == 401
    huge = await browser.post(
        f"{here}/import",
        content=b"x",
        headers={"content-type": "multipart/form-data; boundary=x",
                 "content-length": str(10**12)},
    )  # fmt: skip
    assert huge.status_code == 413
