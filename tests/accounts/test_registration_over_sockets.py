"""Registration over an unauthenticated chat socket, as libsignal's registration service sends it:
the verification session requests and `POST /v1/registration` are hot routes there
(accounts.verification.api, accounts.registration.api), answered without a Django request; they
answer exactly as over HTTP, errors included, and the limits per client address count the
socket's address.

HTTP goes through the real ASGI application (httpx's ASGI transport), the tunnel through the real
WebSocket route; both in this process, against the same database."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from asgiref.sync import sync_to_async

from signalserver import ratelimit, tunnel
from signalserver.asgi import application
from tests.accounts.test_registration import registration_body
from tests.factories import basic_auth, override_limit
from tests.signalserver.test_tunnel import Tunnel

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "socket-registered-password-0123"
CODE = "246810"


@pytest.fixture(autouse=True)
def verification_settings(settings):
    settings.VERIFICATION_SENDER = "development"  # sends nothing; every code is DEV_VERIFICATION_CODE
    settings.DEV_VERIFICATION_CODE = CODE
    settings.CAPTCHA_PROVIDER = "none"


@pytest.fixture
async def http():
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def no_views(monkeypatch):
    """Fails a test whose tunnelled request reaches a Django view: these routes are hot."""

    async def refuse(*args, **kwargs):
        raise AssertionError(f"a Django request was built for {args[2]}")

    monkeypatch.setattr(tunnel, "_dispatch_to_view", refuse)


async def call(socket: Tunnel, verb: str, path: str, body=None, headers=None) -> tuple[int, object]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    lines = ["content-type:application/json"] + [f"{name}:{value}" for name, value in (headers or {}).items()]
    response = await socket.request(verb, path, data, headers=lines)
    return response.status, json.loads(response.body) if response.body else None


async def over_http(http, verb: str, path: str, body=None, headers=None) -> tuple[int, object]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    response = await http.request(verb, path, content=data, headers={"content-type": "application/json", **(headers or {})})
    return response.status_code, response.json() if response.content else None


async def test_a_client_registers_over_an_unauthenticated_socket_without_a_django_request(http, no_views):
    number = "+14155550171"
    async with Tunnel() as socket:
        status, session = await call(socket, "POST", "/v1/verification/session", {"number": number})
        assert status == 200 and session["allowedToRequestCode"] and not session["verified"]
        path = f"/v1/verification/session/{session['id']}"
        status, sent = await call(socket, "POST", path + "/code", {"transport": "sms", "client": "android-2021-03"})
        assert status == 200 and sent["nextSms"] is not None
        status, checked = await call(socket, "PUT", path + "/code", {"code": "000000"})
        assert (status, checked["verified"]) == (200, False)  # a wrong code is not an error
        status, checked = await call(socket, "PUT", path + "/code", {"code": CODE})
        assert (status, checked["verified"]) == (200, True)
        status, read = await call(socket, "GET", path)
        assert (status, read["verified"]) == (200, True)
        body = registration_body(sessionId=session["id"])
        status, registered = await call(
            socket, "POST", "/v1/registration", body, headers={"authorization": basic_auth(number, PASSWORD)}
        )
    assert status == 200, registered
    assert registered["number"] == number and registered["reregistration"] is False
    credentials = base64.b64encode(f"{registered['uuid']}.1:{PASSWORD}".encode()).decode()
    whoami = await http.get("/v1/accounts/whoami", headers={"authorization": f"Basic {credentials}"})
    assert whoami.status_code == 200 and whoami.json()["uuid"] == registered["uuid"]


async def test_every_answer_is_the_same_over_http_and_tunnelled_errors_included(http, no_views):
    async def both(verb, path, body=None, headers=None):
        ratelimit.buckets().delete([ratelimit.bucket_key("*", "*")])
        answer_http = await over_http(http, verb, path, body, headers)
        ratelimit.buckets().delete([ratelimit.bucket_key("*", "*")])
        answer_socket = await call(socket, verb, path, body, headers)
        return answer_http, answer_socket

    async with Tunnel() as socket:
        _, session = await call(socket, "POST", "/v1/verification/session", {"number": "+14155550172"})
        path = f"/v1/verification/session/{session['id']}"
        unknown = "/v1/verification/session/" + base64.urlsafe_b64encode(bytes(16)).decode()
        cases = [
            ("POST", "/v1/verification/session", b"{not json", None, 400),
            ("POST", "/v1/verification/session", b"", None, 422),  # an empty body is an empty object
            ("POST", "/v1/verification/session", [1, 2], None, 422),
            ("POST", "/v1/verification/session", {"number": "not a number"}, None, 422),
            ("POST", "/v1/verification/session", {"number": "+1415555017"}, None, 422),
            ("POST", "/v1/verification/session", {"number": "+14155550173", "pushToken": "t"}, None, 422),
            ("GET", unknown, None, None, 404),
            ("GET", "/v1/verification/session/AAAA", None, None, 400),
            ("GET", "/v1/verification/session/%%%", None, None, 422),
            ("PATCH", path, {"captcha": None}, None, 200),
            ("PATCH", unknown, {}, None, 404),
            ("POST", path + "/code", {"transport": "pigeon", "client": "ios"}, None, 422),
            ("POST", unknown + "/code", {"transport": "sms", "client": "ios"}, None, 404),
            ("PUT", path + "/code", {"code": CODE}, None, 409),  # no code requested yet
            ("PUT", path + "/code", {}, None, 422),
            ("POST", "/v1/registration", registration_body(sessionId=session["id"]), None, 401),
            (
                "POST",
                "/v1/registration",
                registration_body(sessionId=session["id"]),
                {"authorization": basic_auth("+14155550172", PASSWORD)},
                401,  # the session is not verified
            ),
            (
                "POST",
                "/v1/registration",
                {"sessionId": session["id"]},
                {"authorization": basic_auth("+14155550172", PASSWORD)},
                422,
            ),
            (
                "POST",
                "/v1/registration",
                b"[",
                {"authorization": basic_auth("+14155550172", PASSWORD)},
                400,
            ),
        ]
        for verb, route, body, headers, status in cases:
            answer_http, answer_socket = await both(verb, route, body, headers)
            assert answer_http == answer_socket, (verb, route, body)
            assert answer_socket[0] == status, (verb, route, body, answer_socket)


async def test_the_limit_per_client_address_counts_the_socket_address(http, no_views):
    await sync_to_async(override_limit)("verificationSessionPerIp", 2, 3600)
    ratelimit.buckets().delete([ratelimit.bucket_key("*", "*")])
    socket = Tunnel()
    socket.ws.scope["client"] = ("127.0.0.1", 40001)  # as uvicorn gives it (the communicator gives none)
    async with socket:
        answers = [await call(socket, "POST", "/v1/verification/session", {"number": f"+1415555018{i}"}) for i in range(3)]
    assert [status for status, _ in answers] == [200, 200, 429]
    # Same address over HTTP (the test client's 127.0.0.1): the bucket is the same one.
    blocked = await http.post("/v1/verification/session", json={"number": "+14155550189"})
    assert blocked.status_code == 429 and blocked.headers["retry-after"]
