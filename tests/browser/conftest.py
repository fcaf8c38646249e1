"""Browser tests: the Django admin in real headless Chromium (Debian's /usr/bin/chromium, see
`make test`), driven by Playwright's sync API against pytest-django's `live_server`."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
# No outside network on the test machines: keep Chromium from phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="package", autouse=True)
def _allow_sync_db_under_playwright():
    """Playwright's sync API keeps an asyncio event loop running in this thread, so Django's
    async-safety check would refuse the tests' (synchronous) DB access with "You cannot call
    this from an async context". Nothing here is actually async: allow it, for these tests only."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# Package scope, not session: Playwright's loop stays running while the browser is open, and
# pytest-asyncio tests collected after these would fail ("cannot be called from a running event loop").
@pytest.fixture(scope="package")
def browser(_allow_sync_db_under_playwright):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make /usr/bin/chromium` (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh context (no cookies shared between tests) and page, 10 s default timeout."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def screenshot(request):
    """`shot(page, name)`: a full-page PNG at test-artifacts/browser/<test>/<NN>-<name>.png; returns its path."""
    directory = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    count = 0

    def shot(page, name):
        nonlocal count
        count += 1
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return shot
