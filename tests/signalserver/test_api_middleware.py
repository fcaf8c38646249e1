"""API requests go through a shorter middleware list than the admin's pages (signalserver.middleware
`api_middleware`, signalserver.asgi): the same security headers, no session or CSRF cookie; the
admin keeps sessions and CSRF protection. Through the real ASGI application (httpx's transport)."""

import httpx
import pytest
from asgiref.sync import sync_to_async

from signalserver.asgi import application
from signalserver.middleware import api_middleware
from tests.factories import DeviceFactory, device_auth

pytestmark = pytest.mark.django_db(transaction=True)

SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "same-origin"}


@pytest.fixture
async def http():
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def test_the_api_list_leaves_out_only_what_pages_need_and_keeps_the_order(settings):
    api = api_middleware(settings.MIDDLEWARE)
    assert not any(name in path for path in api for name in ("Session", "Csrf", "Authentication", "Message"))
    assert not any(path.startswith("django.") for path in api)  # the rest runs on the event loop
    assert [path for path in api if path.startswith("signalserver.middleware.Loop")] == [
        "signalserver.middleware.LoopSecurityMiddleware",
        "signalserver.middleware.LoopCommonMiddleware",
        "signalserver.middleware.LoopXFrameOptionsMiddleware",
    ]


async def test_api_answers_carry_the_security_headers_and_no_cookie(http):
    device = await sync_to_async(DeviceFactory.create)()
    for path, headers, status in (
        ("/v1/accounts/whoami", {"authorization": device_auth(device)}, 200),
        ("/v1/accounts/whoami", {}, 401),
        ("/v1/no-such-route", {}, 404),
    ):
        response = await http.get(path, headers=headers)
        assert response.status_code == status
        assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
        assert int(response.headers["content-length"]) == len(response.content)
        assert "set-cookie" not in response.headers
    assert (await http.get("/v1/accounts/whoami", headers={"host": "evil.example"})).status_code == 400  # Host still checked
    # No CSRF middleware: a plain Django view answers an unsafe method itself (as tunnelled), not 403.
    refused = await http.post("/v1/messages", headers={"authorization": device_auth(device)})
    assert (refused.status_code, refused.json()) == (405, {"code": 405, "message": "Method not allowed"})


async def test_the_admin_keeps_sessions_and_csrf_protection(http):
    page = await http.get("/admin/login/")
    assert page.status_code == 200 and "csrftoken" in page.headers.get("set-cookie", "")
    assert page.headers["x-frame-options"] == "DENY"
    refused = await http.post("/admin/login/", data={"username": "x", "password": "y"})
    assert refused.status_code == 403  # no CSRF token
