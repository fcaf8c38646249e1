"""Static files under the production web process: the Procfile's `web:` line (uvicorn, DEBUG off,
no collectstatic run, no proxy) serves the admin's styles and the assets of `/v1/docs` and
`/v1/redoc` itself (signalserver/static.py), with their content types and caching headers; a
static path it does not hold answers the API's JSON 404."""

import re

import httpx
import pytest

from tests.servers import live_server_process

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10.0
CONTENT_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}


def static_references(html: str) -> list[str]:
    """Every /static/ URL a page's `src` and `href` attributes name."""
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


def assert_served(http: httpx.Client, url: str) -> httpx.Response:
    response = http.get(url)
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    suffix = url[url.rindex(".") :]
    assert response.headers["content-type"].split(";")[0] == CONTENT_TYPES[suffix], url
    assert int(response.headers["content-length"]) == len(response.content) > 0
    assert response.headers["cache-control"] == "max-age=60, public"
    return response


def test_the_procfile_web_process_serves_the_admin_and_api_docs_assets():
    with live_server_process(procfile=True) as server, httpx.Client(base_url=server.url, timeout=WAIT) as http:
        docs = http.get("/v1/docs")
        assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
        docs_assets = static_references(docs.text)
        # Swagger UI's script, its standalone preset, its stylesheet and the favicon, all local.
        assert {url.rsplit("/", 1)[1] for url in docs_assets} >= {
            "swagger-ui-bundle.js",
            "swagger-ui-standalone-preset.js",
            "swagger-ui.css",
        }, docs_assets
        redoc_assets = static_references(http.get("/v1/redoc").text)
        assert any(url.endswith("redoc.standalone.js") for url in redoc_assets), redoc_assets

        login = http.get("/admin/login/")
        assert login.status_code == 200
        admin_assets = static_references(login.text)
        assert "/static/admin/css/base.css" in admin_assets and "/static/admin/css/login.css" in admin_assets

        for url in docs_assets + redoc_assets + admin_assets:
            assert_served(http, url)

        # Browsers revalidate: an unchanged file answers 304 without a body.
        first = assert_served(http, "/static/admin/css/base.css")
        again = http.get("/static/admin/css/base.css", headers={"If-None-Match": first.headers["etag"]})
        assert (again.status_code, again.content) == (304, b"")
        part = http.get("/static/admin/css/base.css", headers={"Range": "bytes=10-19"})
        assert (part.status_code, part.content) == (206, first.content[10:20])
        head = http.head("/static/admin/css/base.css")
        assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", str(len(first.content)))

        # Only files the static finders know: anything else under /static/ is the API's JSON 404.
        for missing in ("/static/admin/css/missing.css", "/static/", "/static/admin/../../settings.py"):
            response = http.get(missing)
            assert response.status_code == 404, missing
            assert response.json() == {"code": 404, "message": "Not found"}
