"""Requests tunnelled over the chat socket answer exactly as over HTTP, for every route
of the URL conf; and a socket's requests are flow-controlled so one client cannot stall the process.

HTTP goes through the real ASGI application (httpx's ASGI transport), the tunnel through the real
WebSocket route; both in this process, against the same database."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.urls import URLPattern, URLResolver, get_resolver

from signalserver import ratelimit
from signalserver.asgi import application
from signalserver.proto.websocket_pb2 import WebSocketMessage
from tests.factories import DeviceFactory, device_auth
from tests.messaging.helpers import parse_frame, request_frame, socket_for

pytestmark = pytest.mark.django_db(transaction=True)

# One value for each path parameter of the URL conf: well formed, naming nothing that exists (so a
# request changes nothing and both transports see the same state).
PATH_VALUES = {
    "session_id": "AAAAAAAAAAAAAAAAAAAAAA==",
    "identifier": "bm90LWEtbGluay10b2tlbg",
    "device_id": "2",
    "destination": str(uuid.UUID(int=1)),
    "service_id": str(uuid.UUID(int=2)),
    "guid": str(uuid.UUID(int=3)),
    "source": str(uuid.UUID(int=4)),
    "version": "ab" * 32,
    "credential_request": "00" * 16,
    "username_hash": "A" * 43,
    "handle": str(uuid.UUID(int=5)),
    "from_version": "0",
    "password": "AAAAAAAAAAAAAAAAAAAAAA",
}
BODIES = [b"", b"{}", b"[]", b"null", b'"text"', b"{not json", b'{"a":[null]}']
# Long polls wait for their timeout (async views): the shortest one they take.
QUERIES = {"v1/messages": "wait=1", "v1/devices/wait_for_linked_device/<str:identifier>": "timeout=1"}
# Routes whose success would change what the next request sees.
DESTRUCTIVE = {("DELETE", "v1/accounts/me")}
# Browser pages: served over HTTP only (see the admin test below).
HTTP_ONLY_APPS = {"admin"}
# Answers that are new secrets every time: the same status and fields, not the same values.
FRESH_SECRETS = {"v1/auth/token", "v1/accounts/totp", "v1/devices/provisioning/code", "v4/attachments/form/upload", "v2/accounts/data_report"}


def api_routes(patterns=None, prefix=""):
    """(route pattern, the verbs its view answers) for every route of the URL conf."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            if entry.app_name not in HTTP_ONLY_APPS:
                yield from api_routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            view = getattr(entry.callback, "cls", None) or getattr(entry.callback, "view_class", None)
            verbs = [verb.upper() for verb in ("get", "put", "post", "patch", "delete") if hasattr(view, verb)]
            yield prefix + str(entry.pattern), verbs


def concrete(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda match: PATH_VALUES[match[1]], route)


class Tunnel:
    """A socket sending tunnelled requests one at a time."""

    def __init__(self, device=None):
        headers = [(b"host", b"testserver")]  # as the HTTP client sends it
        if device is not None:
            headers.append((b"x-signal-disable-messages", b"true"))
        self.ws = socket_for(device, headers=headers)
        self.next_id = 1

    async def __aenter__(self):
        assert (await self.ws.connect())[0]
        return self

    async def __aexit__(self, *exc):
        await self.ws.disconnect()

    async def request(self, verb, path, body=b"", headers=()):
        self.next_id += 1
        await self.ws.send_to(bytes_data=request_frame(verb, path, body=body, request_id=self.next_id, headers=headers))
        frame = parse_frame(await self.ws.receive_from(timeout=5))
        assert frame.type == WebSocketMessage.RESPONSE and frame.response.id == self.next_id
        return frame.response


def comparable(status: int, body: bytes, *, fields_only: bool):
    try:
        parsed = json.loads(body) if body else None
    except ValueError:  # a page: its CSRF token is new every time
        return status, re.sub(rb'"[A-Za-z0-9]{64}"', b'"csrf-token"', body)
    return status, sorted(parsed) if fields_only and isinstance(parsed, dict) else parsed


async def both(http, tunnel, verb, route, path, body, auth):
    """(HTTP answer, tunnelled answer) of one request, each as (status, parsed body). The frame
    carries the same headers, Authorization included (read as data by registration and linking,
    never as the socket's credentials)."""
    headers = {"content-type": "application/json", **auth} if body else auth
    ratelimit.buckets().delete([ratelimit.bucket_key("*", "*")])
    over_http = await http.request(verb, path, content=body, headers=headers)
    ratelimit.buckets().delete([ratelimit.bucket_key("*", "*")])
    tunnelled = await tunnel.request(verb, path, body, headers=[f"{k}:{v}" for k, v in headers.items()])
    fields_only = route in FRESH_SECRETS
    return (
        comparable(over_http.status_code, over_http.content, fields_only=fields_only),
        comparable(tunnelled.status, tunnelled.body, fields_only=fields_only),
    )


@pytest.fixture
async def device():
    return await sync_to_async(DeviceFactory.create)()


@pytest.fixture
async def http():
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.mark.parametrize("authenticated", [True, False], ids=["device", "anonymous"])
async def test_every_route_answers_the_same_over_http_and_tunnelled(http, device, authenticated):
    routes = list(api_routes())
    assert len(routes) > 30  # the walk found the URL conf
    auth = {"authorization": device_auth(device)} if authenticated else {}
    differences = []
    async with Tunnel(device if authenticated else None) as tunnel:
        for route, verbs in routes:
            for verb in verbs:
                if (verb, route) in DESTRUCTIVE:
                    continue
                path = concrete(route) + ("?" + QUERIES[route] if route in QUERIES else "")
                for body in BODIES if verb in ("PUT", "POST", "PATCH") else [b""]:
                    over_http, tunnelled = await both(http, tunnel, verb, route, path, body, auth)
                    assert over_http[0] != 500, (verb, path, body, over_http)
                    if over_http != tunnelled:
                        differences.append((verb, path, body, over_http, tunnelled))
    assert differences == [], "\n".join(f"{d[0]} {d[1]} {d[2]!r}: HTTP {str(d[3])[:300]} / tunnel {str(d[4])[:300]}" for d in differences)


async def test_a_percent_encoded_session_id_reaches_its_session_over_the_tunnel(http):
    created = await http.post("/v1/verification/session", json={"number": "+14155550142"})
    assert created.status_code == 200, created.content
    session_id = created.json()["id"]
    encoded = session_id.replace("=", "%3D").replace("-", "%2D")
    assert "%3D" in encoded  # Signal writes session ids padded

    async with Tunnel() as tunnel:
        response = await tunnel.request("GET", f"/v1/verification/session/{encoded}")
    assert response.status == 200, response.body
    assert json.loads(response.body)["id"] == session_id


async def test_a_query_is_decoded_like_http(http, device):
    # `wait` percent-encoded, and a blank parameter kept as Django keeps it.
    async with Tunnel(device) as tunnel:
        over_socket = await tunnel.request("GET", "/v1/messages?wait=%31&x=")
    assert over_socket.status == 200
    over_http = await http.get("/v1/messages?wait=%31&x=", headers={"authorization": device_auth(device)})
    assert json.loads(over_socket.body) == over_http.json()


async def test_admin_pages_are_not_served_over_the_socket(device):
    async with Tunnel(device) as tunnel:
        for path in ("/admin/", "/admin/login/", "/admin/accounts/account/"):
            response = await tunnel.request("GET", path)
            assert (response.status, json.loads(response.body)) == (404, {"code": 404, "message": "Not found"})


@pytest.mark.parametrize(
    "mangle",
    [
        lambda raw: raw.replace(b"/v1/accounts/whoami", b"/v1/\xff\xfe\xff\xfe\xff\xfe\xff\xfe/whoami"),  # path not UTF-8
        lambda raw: raw.replace(b"GET", b"G\xffT"),  # verb not UTF-8
        lambda raw: raw.replace(b"X-A:b", b"X-A:\xff"),  # a header not UTF-8
        lambda raw: raw.replace(b"/v1/accounts/whoami", b"v1/accounts/whoami/"),  # not a path
    ],
    ids=["path", "verb", "header", "relative"],
)
async def test_a_malformed_request_frame_is_answered_400(device, mangle):
    async with Tunnel(device) as tunnel:
        await tunnel.ws.send_to(bytes_data=mangle(request_frame("GET", "/v1/accounts/whoami", request_id=9, headers=["X-A:b"])))
        frame = parse_frame(await tunnel.ws.receive_from(timeout=3))
        assert (frame.response.id, frame.response.status) == (9, 400)
        # and the socket goes on answering
        assert (await tunnel.request("GET", "/v1/accounts/whoami")).status == 200


# --- Flow control ---------------------------------------------------------------------------------


async def test_a_socket_with_its_requests_in_flight_reads_no_further_frame_until_one_finishes(device):
    from signalserver.websocket import MAX_REQUESTS_IN_FLIGHT

    async with Tunnel(device) as tunnel:
        for request_id in range(100, 100 + MAX_REQUESTS_IN_FLIGHT):  # long polls: 1 s each
            await tunnel.ws.send_to(bytes_data=request_frame("GET", "/v1/messages?wait=1", request_id=request_id))
        await tunnel.ws.send_to(bytes_data=request_frame("GET", "/v1/keepalive", request_id=999))

        assert await tunnel.ws.receive_nothing(timeout=0.5)  # the keepalive waits its turn, unread
        answered = [parse_frame(await tunnel.ws.receive_from(timeout=5)).response.id for _ in range(MAX_REQUESTS_IN_FLIGHT + 1)]
    assert sorted(answered) == [*range(100, 100 + MAX_REQUESTS_IN_FLIGHT), 999]
    assert answered.index(999) > 0  # answered only once a long poll had finished


async def test_a_socket_sending_faster_than_its_frame_rate_is_closed_with_4429_and_its_client_kept_out(device, settings, monkeypatch):
    from signalserver import websocket

    monkeypatch.setattr(websocket, "FLOOD_PENALTY_SECONDS", 1)
    settings.WEBSOCKET_FRAME_RATE, settings.WEBSOCKET_FRAME_BURST = 10, 20
    ws = socket_for(device, headers=[(b"x-signal-disable-messages", b"true")])
    assert (await ws.connect())[0]
    for request_id in range(1, 41):
        await ws.send_to(bytes_data=request_frame("GET", "/v1/keepalive", request_id=request_id))
    outputs = []
    while (output := await ws.receive_output(timeout=3))["type"] != "websocket.close":
        outputs.append(parse_frame(output["bytes"]).response.id)
    assert output["code"] == 4429
    assert 0 < len(outputs) <= 20  # some of the burst was answered, the flood was not

    again = socket_for(device)
    assert not (await again.connect())[0]  # refused (429 where the server can say so)
    other = socket_for(await sync_to_async(DeviceFactory.create)())
    assert (await other.connect())[0]  # another client is not
    await other.disconnect()
    await asyncio.sleep(1.1)
    again = socket_for(device)
    assert (await again.connect())[0]  # the penalty is over
    await again.disconnect()


async def test_a_socket_within_its_frame_rate_stays_open(device, settings):
    settings.WEBSOCKET_FRAME_RATE, settings.WEBSOCKET_FRAME_BURST = 50, 5
    async with Tunnel(device) as tunnel:
        for _ in range(15):  # 15 requests over ~0.45 s: the bucket refills faster than they come
            assert (await tunnel.request("GET", "/v1/keepalive")).status == 200
            await asyncio.sleep(0.03)


async def test_responses_to_nothing_asked_cost_frame_tokens(device, settings):
    from tests.messaging.helpers import response_frame

    settings.WEBSOCKET_FRAME_RATE, settings.WEBSOCKET_FRAME_BURST = 1, 5
    ws = socket_for(device, headers=[(b"x-signal-disable-messages", b"true")])
    assert (await ws.connect())[0]
    for request_id in range(1, 20):
        await ws.send_to(bytes_data=response_frame(request_id))
    assert (await ws.receive_output(timeout=3)) == {"type": "websocket.close", "code": 4429}
