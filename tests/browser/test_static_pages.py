"""The API docs and the admin in real Chromium against the Procfile's web process (uvicorn, DEBUG
off, no collectstatic, no proxy): their scripts and styles come from the server itself
(signalserver/static.py), so `/v1/docs` renders the API and the admin login page is styled."""

import pytest
from django.conf import settings

from tests.servers import live_server_process

# The server process reads the test database: nothing may stay in an uncommitted test transaction.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def procfile_server():
    with live_server_process(procfile=True) as server:
        yield server


def same_origin_responses(page, origin: str) -> list:
    """Every response the page gets from `origin` from now on (a list that fills as it loads)."""
    responses = []
    page.on("response", lambda response: response.url.startswith(origin) and responses.append(response))
    return responses


def assert_assets_loaded(responses) -> None:
    static = [response for response in responses if "/static/" in response.url]
    assert static, "the page loaded no static file"
    assert [(r.url, r.status) for r in static if r.status != 200] == []


def test_api_docs_render_the_api_title_and_operations(procfile_server, page, screenshot):
    responses = same_origin_responses(page, procfile_server.url)
    page.goto(procfile_server.url + "/v1/docs")

    title = page.locator(".swagger-ui .info .title")
    title.wait_for()
    assert title.inner_text().startswith(settings.SPECTACULAR_SETTINGS["TITLE"])
    page.locator(".swagger-ui .opblock").first.wait_for()  # the operations of /v1/openapi.json
    assert page.locator(".swagger-ui .opblock").count() > 10
    assert_assets_loaded(responses)
    assert screenshot(page, "api-docs").stat().st_size > 0


def test_admin_login_page_is_styled(procfile_server, page, screenshot):
    responses = same_origin_responses(page, procfile_server.url)
    page.goto(procfile_server.url + "/admin/login/")
    page.wait_for_load_state("networkidle")

    assert_assets_loaded(responses)
    # The admin's stylesheets applied: a coloured header bar and a narrow centred login box;
    # unstyled, the header is transparent and the box spans the page.
    header_background = page.eval_on_selector("#header", "element => getComputedStyle(element).backgroundColor")
    assert header_background not in ("rgba(0, 0, 0, 0)", "transparent"), header_background
    box_width = page.eval_on_selector("#container", "element => element.getBoundingClientRect().width")
    page_width = page.evaluate("document.documentElement.clientWidth")
    assert box_width < page_width / 2, (box_width, page_width)
    assert screenshot(page, "admin-login").stat().st_size > 0
