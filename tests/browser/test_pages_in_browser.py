"""The connect flow and the docs in a real Chromium, the way a person goes through them.

The API starts an authorization (as a client app would); everything after that is the
browser's: the sandbox's approval page, the decision, the institution's redirect to the
callback server and the page it shows. Every page is checked for what a person needs (a title,
labelled controls, no secret, nothing blocked by its content security policy), then saved in
test-results/screenshots/.
"""

import re

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, expect

from tests.browser.conftest import Console, screenshot
from tests.fixtures.environment import template_settings
from tests.helpers import authorization_url, connectable_provider

pytestmark = pytest.mark.commits

NO_SCRIPTS = pytest.mark.parametrize("page_with_console", [False], indirect=True)


async def _readable(page: Page, console: Console, *, title: str) -> None:
    """What every page owes a person, whatever it says."""
    await expect(page).to_have_title(title)
    assert await page.locator("html").get_attribute("lang") == "en"
    assert await page.locator("main h1").count() == 1
    for control in await page.locator("button, input:not([type=hidden]), select, textarea").all():
        # The name a screen reader announces: a button's text, a label, an aria-label.
        assert await control.evaluate("e => e.labels?.length || e.innerText || e.ariaLabel")
    assert console.problems == []


async def _no_secret(page: Page) -> None:
    html = await page.content()
    settings = template_settings()
    for secret in (settings.SANDBOX_CLIENT_SECRET, settings.CALLBACK_SHARED_SECRET):
        assert secret not in html
    assert not re.search(r"access_token|refresh_token|code_verifier", html)


async def _decide(page: Page, live_servers, button: str) -> None:
    """Press a button of the approval page and follow the institution's redirect."""
    async with page.expect_navigation(url=f"{live_servers.callback_url}/oauth/callback?**"):
        await page.get_by_role("button", name=button).click()


async def _callback_page(page: Page, console: Console, title: str, says: str) -> None:
    await _readable(page, console, title=title)
    await expect(page.locator("main")).to_contain_text(says)
    await _no_secret(page)


def _connection(api, headers, path) -> dict:
    response = api.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@NO_SCRIPTS
async def test_approve_at_the_institution_without_scripts(api, live_servers, page_with_console):
    page, console = page_with_console
    headers, path = connectable_provider(api)

    answer = await page.goto(authorization_url(api, headers, path))
    assert answer.status == 200
    await _readable(page, console, title="Dashtam Sandbox Bank")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Dashtam Sandbox Bank")
    await expect(page.get_by_text("Dashtam asks to read your accounts, positions.")).to_be_visible()
    await _no_secret(page)
    await screenshot(page, "sandbox-approval")

    await _decide(page, live_servers, "Approve")
    await _callback_page(page, console, "Connected", "E2E <Bank> is now connected to Dashtam.")
    await screenshot(page, "callback-connected")

    assert _connection(api, headers, path)["status"] == "active"


async def test_plaid_link_through_dashtams_page(api, live_servers, page_with_console):
    """The page that opens Plaid Link (the look-alike's stand-in offline), completed in the
    browser: the public token goes back to Dashtam and the connection is active."""
    page, console = page_with_console
    headers, path = connectable_provider(api)
    provider = api.post(
        "/api/v1/providers", headers=headers, json={"provider_key": "plaid", "alias": "My Plaid"}
    ).json()
    path = f"/api/v1/providers/{provider['id']}/authorization"
    begun = api.post(path, headers=headers)
    assert begun.status_code == 201, begun.text

    assert (await page.goto(begun.json()["link_url"])).status == 200
    await _readable(page, console, title="Connect with Plaid")
    await page.get_by_role("button", name="Connect your bank").click()
    await page.get_by_label("Username").fill("user_browser")
    await screenshot(page, "plaid-link-stand-in")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#said")).to_contain_text("Connected.")
    await _readable(page, console, title="Connect with Plaid")
    await _no_secret(page)
    await screenshot(page, "plaid-link-connected")

    assert _connection(api, headers, path)["status"] == "active"


async def test_deny_at_the_institution(api, live_servers, page_with_console):
    page, console = page_with_console
    headers, path = connectable_provider(api)

    await page.goto(authorization_url(api, headers, path))
    await _decide(page, live_servers, "Deny")
    await _callback_page(page, console, "Not connected", "E2E <Bank> was not connected")
    await screenshot(page, "callback-denied")

    assert _connection(api, headers, path)["status"] == "pending"


async def test_the_docs_list_every_operation_and_call_the_api(api, live_servers, page_with_console):
    page, console = page_with_console
    operations = sum(
        1
        for item in api.get("/openapi.json").json()["paths"].values()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    )

    assert (await page.goto(f"{live_servers.api_url}/docs")).status == 200
    await expect(page.locator(".opblock")).to_have_count(operations)
    await expect(page).to_have_title("Dashtam API - API documentation")

    # Try it out: the page calls the API from the browser, under the docs' policy.
    health = page.locator("#operations-health-health-check")  # tag, then the operation id
    await health.locator(".opblock-summary").click()
    await health.get_by_role("button", name="Try it out").click()
    await health.get_by_role("button", name="Execute").click()
    await expect(
        health.locator(".live-responses-table tr.response .response-col_status")
    ).to_have_text("200")
    assert console.problems == []
    await screenshot(page, "docs")


async def test_a_browser_that_does_not_trust_the_ca_refuses_the_pages(
    live_servers, untrusting_browser
):
    """The other browsers are not passing because certificate errors are ignored somewhere."""
    page = await untrusting_browser.new_page()
    try:
        with pytest.raises(PlaywrightError, match="ERR_CERT_AUTHORITY_INVALID"):
            await page.goto(f"{live_servers.api_url}/docs")
    finally:
        await page.close()
