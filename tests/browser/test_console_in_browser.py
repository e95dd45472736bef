"""The web console (/app/) in a real Chromium, the way a person uses it, without scripts: the
sign-in form refusing a wrong password, then the overview with the person's account and the
connection that needs them, then signing out. Each page is checked as every page is (a title,
one heading, labelled controls, nothing blocked by its policy, no secret) and saved in
test-results/screenshots/."""

import os

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import expect

from tests.browser.conftest import screenshot
from tests.browser.test_pages_in_browser import NO_SCRIPTS, _decide, _no_secret, _readable

pytestmark = pytest.mark.commits
PASSWORD = "correct horse battery"
# axe-core's WCAG 2.0/2.1 A and AA rules, the bar: zero violations on every page.
WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


async def accessible(page) -> None:
    """axe-core run in the page (so only where scripts are on: the no-script walk reads the
    same pages, which the scripted walk checks)."""
    found = await Axe().run(page, options=WCAG)
    assert found.violations_count == 0, found.generate_snapshot()


def person_with_an_account(api) -> tuple[str, dict]:
    email = f"console-{os.urandom(4).hex()}@example.com"
    assert api.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD}).is_success
    token = api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    made = api.post(
        "/api/v1/accounts",
        headers=headers,
        json={"name": "Everyday checking", "account_type": "checking", "currency": "EUR",
              "opening_balance": "2043.17"},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    bank = api.post(
        "/api/v1/providers", headers=headers, json={"provider_key": "sandbox", "alias": "My bank"}
    )
    assert bank.status_code == 201, bank.text
    return email, headers


@NO_SCRIPTS
async def test_sign_in_see_the_overview_and_sign_out(api, live_servers, page_with_console):
    page, console = page_with_console
    email, _ = person_with_an_account(api)

    await page.goto(f"{live_servers.api_url}/app/")
    # Not signed in: the sign-in page.
    await expect(page).to_have_url(f"{live_servers.api_url}/app/sign-in")
    await _readable(page, console, title="Sign in · Dashtam")
    await page.get_by_label("E-mail address").fill(email)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("Wrong e-mail or password")
    await screenshot(page, "console-sign-in")

    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{live_servers.api_url}/app/")
    await _readable(page, console, title="Overview · Dashtam")
    await expect(page.get_by_role("heading", name="Needs your attention")).to_be_visible()
    await expect(page.locator("section", has_text="Needs your attention")).to_contain_text(
        "Connect it"
    )
    await expect(page.get_by_role("cell", name="Everyday checking")).to_be_visible()
    await expect(page.locator(".totals")).to_contain_text("2,043.17 EUR")
    await _no_secret(page)
    html = await page.content()
    assert "dashtam_access" not in html  # the cookies stay cookies (HttpOnly)
    await screenshot(page, "console-overview")

    await page.get_by_role("button", name=f"Sign out {email}").click()
    await expect(page).to_have_url(f"{live_servers.api_url}/app/sign-in")
    await page.goto(f"{live_servers.api_url}/app/")
    await expect(page).to_have_url(f"{live_servers.api_url}/app/sign-in")


async def test_every_page_reads_well_and_a_secret_gets_a_copy_button(
    api, live_servers, page_with_console
):
    """With scripts on (the console's one script, from Dashtam itself): the pages of the
    navigation, each readable with nothing blocked; a setup token's Copy button shows."""
    page, console = page_with_console
    email, _ = person_with_an_account(api)
    await page.goto(f"{live_servers.api_url}/app/sign-in")
    await accessible(page)
    await page.get_by_label("E-mail address").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{live_servers.api_url}/app/")
    # The sandbox institution connected from the console: its sign-in page, the callback's
    # page linking back, a sync.
    await page.get_by_role("link", name="Connect it").click()
    await accessible(page)
    await page.get_by_role("button", name="Continue to Dashtam Sandbox Bank").click()
    await _decide(page, live_servers, "Approve")
    await page.get_by_role("link", name="Back to your connections in Dashtam").click()
    await page.get_by_role("link", name="My bank").click()
    await page.get_by_role("button", name="Sync now").click()
    await expect(page.get_by_role("status")).to_contain_text("Synced")
    await _readable(page, console, title="My bank · Dashtam")
    await accessible(page)
    await screenshot(page, "console-connection")
    await page.get_by_role("link", name="Overview", exact=True).click()
    # The sandbox's account beside the person's own "Everyday checking".
    await expect(page.get_by_role("cell", name="Everyday Checking", exact=True)).to_be_visible()
    # Connected a minute ago (its refresh token good for a week): nothing needs the person.
    await expect(page.get_by_role("heading", name="Needs your attention")).to_have_count(0)
    await _readable(page, console, title="Overview · Dashtam")
    await accessible(page)
    await screenshot(page, "console-overview-synced")
    for link, title in (
        ("Transactions", "Transactions"),
        ("Connections", "Connections"),
        ("Share with apps", "Share with apps"),
        ("Security", "Security"),
    ):
        await page.get_by_role("link", name=link, exact=True).click()
        await _readable(page, console, title=f"{title} · Dashtam")
        await accessible(page)
        await screenshot(page, f"console-{link.lower().replace(' ', '-')}")
    await page.get_by_role("button", name="Set up a second factor").click()
    await expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    await _readable(page, console, title="Security · Dashtam")
    await accessible(page)
    await screenshot(page, "console-second-factor")
    await page.get_by_role("link", name="Share with apps", exact=True).click()
    await page.get_by_label("Which app it is for").fill("Actual")
    await page.get_by_role("button", name="Make a setup token").click()
    await expect(page.get_by_role("button", name="Copy")).to_be_visible()
    await _readable(page, console, title="Share with apps · Dashtam")
    await accessible(page)
    await screenshot(page, "console-setup-token")
    secret = await page.locator("#secret").input_value()
    await page.goto(f"{live_servers.api_url}/app/sharing")
    assert secret not in await page.content()  # shown once
