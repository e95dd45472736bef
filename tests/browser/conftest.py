"""A real Chromium, driven by Playwright, against the real HTTPS servers (``live_servers``).

The browser is the machine's own (Debian: ``apt-get install chromium``; elsewhere the
``DASHTAM_CHROMIUM`` variable names it); Playwright downloads nothing. It trusts the project's CA
the way ``inv certs --trust`` makes a developer's Chromium trust it, through an NSS database in
its home folder (here a home of the test run's own), and never runs with certificate errors
ignored. Every page a test visits is saved as a PNG in test-results/screenshots/.
"""

import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Playwright, async_playwright

from infra import trust
from infra.layout import Layout
from tests.fixtures.environment import ROOT

SCREENSHOTS = ROOT / "test-results" / "screenshots"
# What a browser would otherwise do on its own at start: reach Google's servers (refused on a
# closed network, one error line each) and update components.
QUIET = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
HOW_TO_GET_THEM = (
    "Debian/Ubuntu: apt-get install chromium libnss3-tools; elsewhere install Chromium or Chrome "
    "(DASHTAM_CHROMIUM names it when it is not on PATH) and NSS's tools"
)


def chromium_executable() -> str | None:
    named = os.environ.get("DASHTAM_CHROMIUM")
    if named:
        return named
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


async def _launch(playwright: Playwright, home: Path) -> Browser:
    if sys.platform == "darwin":
        # Chrome on macOS trusts the keychain, not an NSS database: the way these tests trust
        # the CA (and `inv certs --trust` does for Linux browsers) does not reach it there.
        pytest.skip("the browser tests run on Linux (Chrome on macOS reads the keychain)")
    executable = chromium_executable()
    missing = [
        *(["Chromium (chromium, chromium-browser or google-chrome)"] if executable is None else []),
        *(["NSS's certutil"] if trust.find_tool("certutil") is None else []),
    ]
    if missing:
        # Only where the machine lacks them: .ci/run installs both and checks they are there.
        pytest.skip(f"not on this machine: {' and '.join(missing)} ({HOW_TO_GET_THEM})")
    return await playwright.chromium.launch(
        executable_path=executable, args=QUIET, env={**os.environ, "HOME": str(home)}
    )


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
async def browser(playwright, tmp_path_factory) -> AsyncIterator[Browser]:
    """Chromium with the project's CA trusted as `inv certs --trust` trusts it, nothing more."""
    home = tmp_path_factory.mktemp("browser-home")
    if trust.find_tool("certutil") is not None:
        layout = Layout(root=ROOT)
        outcome = trust.trust(
            layout.ca_file,
            layout.project_id(),
            system=None,  # the machine's own store is not the test's to change
            databases=trust.nss_databases(home),
        )
        assert outcome.failed == [], outcome.failed
    chromium = await _launch(playwright, home)
    yield chromium
    await chromium.close()


@pytest.fixture(scope="session")
async def untrusting_browser(playwright, tmp_path_factory) -> AsyncIterator[Browser]:
    """The same Chromium with an empty home: it has never heard of the project's CA."""
    chromium = await _launch(playwright, tmp_path_factory.mktemp("empty-home"))
    yield chromium
    await chromium.close()


class Console:
    """What the page said on its console and what it failed to load: a content security policy
    that blocks one of our own scripts or styles shows up here."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._said)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))

    def _said(self, message) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"{message.type}: {message.text}")


@pytest.fixture(autouse=True)
def _truncate_afterwards(connection) -> None:
    """The live servers commit what the browser does; the `connection` fixture of a `commits`
    test truncates the tables afterwards."""


@pytest.fixture
async def page_with_console(browser, request) -> AsyncIterator[tuple[Page, Console]]:
    scripts = getattr(request, "param", True)
    context = await browser.new_context(
        java_script_enabled=scripts, viewport={"width": 1000, "height": 700}
    )
    page = await context.new_page()
    console = Console(page)
    yield page, console
    await context.close()


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    return path
