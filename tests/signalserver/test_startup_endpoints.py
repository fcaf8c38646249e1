"""What Signal clients fetch at start-up besides the core API: the remote configuration, and
the paths of features we do not have, which answer a JSON 404 (docs/api.md). Over HTTP (the
real ASGI application) and tunnelled over the chat socket, which must answer alike."""

from __future__ import annotations

import json

import httpx
import pytest
from asgiref.sync import sync_to_async

from signalserver.asgi import application
from tests.factories import DeviceFactory, device_auth
from tests.messaging.helpers import parse_frame, request_frame, socket_for

CONFIG = "/v2/config"
NOT_FOUND = {"code": 404, "message": "Not found"}

# Every start-up path but /v2/config (above), /v2/calling/relays and
# /v1/devices/wait_for_linked_device (routes of their own), as Signal's clients call them. 404 for
# absent features (docs/api.md, "Not supported, and why").
ABSENT_FEATURES = [
    ("GET", "/v1/certificate/auth/group?redemptionStartSeconds=1700006400&redemptionEndSeconds=1700611200"),
    ("GET", "/v1/storage/auth"),
    ("GET", "/v2/backup/auth"),
    ("GET", "/v2/svr/auth"),
    ("POST", "/v2/backup/auth/check"),
    ("POST", "/v2/svr/auth/check"),
    ("GET", "/v2/directory/auth"),
    ("POST", "/v1/call-link/create-auth"),
    ("GET", "/v1/payments/auth"),
    ("GET", "/v1/payments/conversions"),
    ("GET", "/v1/archives"),
    ("GET", "/v1/archives/auth?redemptionStartSeconds=1700006400&redemptionEndSeconds=1700611200"),
    ("PUT", "/v1/archives/backupid"),
    ("GET", "/v1/archives/upload/form"),
    ("POST", "/v1/key-transparency/search"),
    ("POST", "/v1/key-transparency/monitor"),
    ("GET", "/v1/key-transparency/distinguished"),
    ("GET", "/v1/sticker/pack/form/3"),
    ("GET", "/v1/subscription/configuration"),
    ("GET", "/v1/subscription/c3Vic2NyaWJlci1pZA"),
    ("POST", "/v1/donation/redeem-receipt"),
    ("GET", "/v1/devices/restore_account/cmVzdG9yZS10b2tlbg"),
    ("PUT", "/v1/devices/restore_account/cmVzdG9yZS10b2tlbg"),
    ("GET", "/v1/devices/transfer_archive"),
    ("PUT", "/v1/devices/transfer_archive"),
    # Signal's retired predecessor of /v2/config; Signal-Server no longer routes it either.
    ("GET", "/v1/config"),
]


def expected_config(settings) -> dict[str, str]:
    return {
        "global.attachments.maxBytes": str(settings.ATTACHMENT_MAX_BYTES),
        "global.groupsv2.maxGroupSize": "151",
        "global.groupsv2.groupSizeHardLimit": "1000",
        "global.messageQueueTimeInSeconds": str(settings.MESSAGE_RETENTION_DAYS * 86400),
    }


def header(frame_response, name: str) -> str | None:
    """A header of a tunnelled response (`Name:value` strings)."""
    for line in frame_response.headers:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


async def tunnelled(device, verb: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None):
    """The response frame to one request tunnelled over a socket (authenticated when `device` is given)."""
    ws = socket_for(device, headers=[(b"x-signal-disable-messages", b"true")] if device else [])
    assert (await ws.connect())[0]
    try:
        lines = [f"{name}:{value}" for name, value in (headers or {}).items()]
        await ws.send_to(bytes_data=request_frame(verb, path, body=body, request_id=7, headers=lines))
        response = parse_frame(await ws.receive_from(timeout=5)).response
    finally:
        await ws.disconnect()
    assert response.id == 7
    return response


@pytest.fixture
async def http():
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


# --- GET /v2/config ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_config_carries_the_limits_this_server_applies(client_for, settings):
    response = client_for(DeviceFactory()).get(CONFIG)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"config": expected_config(settings)}
    limits = response.json()["config"]
    assert int(limits["global.groupsv2.maxGroupSize"]) < int(limits["global.groupsv2.groupSizeHardLimit"])  # Desktop asserts it


@pytest.mark.django_db
def test_the_config_follows_the_settings(client_for, settings):
    settings.ATTACHMENT_MAX_BYTES = 12_345_678
    settings.MESSAGE_RETENTION_DAYS = 7

    config = client_for(DeviceFactory()).get(CONFIG).json()["config"]

    assert (config["global.attachments.maxBytes"], config["global.messageQueueTimeInSeconds"]) == ("12345678", "604800")


@pytest.mark.django_db
def test_the_config_needs_device_credentials(client, client_for):
    assert client.get(CONFIG).status_code == 401
    response = client_for(DeviceFactory(), password="not-the-password").get(CONFIG)
    assert (response.status_code, response.json()) == (401, {"code": 401, "message": "Unauthorized"})


@pytest.mark.django_db
def test_the_etag_is_a_quoted_hash_that_stays_the_same_while_nothing_changes(client_for):
    api = client_for(DeviceFactory())

    first, second = api.get(CONFIG)["ETag"], api.get(CONFIG)["ETag"]

    assert first == second
    assert len(first) > 2 and first[0] == first[-1] == '"'


@pytest.mark.django_db
@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "W/{etag}", '"older", {etag}', "{bare}", "*"],
    ids=["exact", "weak", "in a list", "unquoted", "any"],
)
def test_a_matching_if_none_match_answers_304_without_a_body(client_for, if_none_match):
    api = client_for(DeviceFactory())
    etag = api.get(CONFIG)["ETag"]

    response = api.get(CONFIG, HTTP_IF_NONE_MATCH=if_none_match.format(etag=etag, bare=etag.strip('"')))

    assert (response.status_code, response.content, response["ETag"]) == (304, b"", etag)


@pytest.mark.django_db
@pytest.mark.parametrize("if_none_match", ['"0123456789abcdef"', "", '""', "W/", ",,", "\u00e9t\u00e9"])
def test_an_if_none_match_naming_another_config_answers_the_config(client_for, settings, if_none_match):
    response = client_for(DeviceFactory()).get(CONFIG, HTTP_IF_NONE_MATCH=if_none_match)

    assert response.status_code == 200
    assert response.json() == {"config": expected_config(settings)}


@pytest.mark.django_db
def test_the_etag_changes_with_a_value_and_the_old_one_then_gets_the_new_config(client_for, settings):
    api = client_for(DeviceFactory())
    old = api.get(CONFIG)["ETag"]

    settings.ATTACHMENT_MAX_BYTES = settings.ATTACHMENT_MAX_BYTES // 2
    response = api.get(CONFIG, HTTP_IF_NONE_MATCH=old)

    assert response.status_code == 200
    assert response["ETag"] != old
    assert response.json()["config"]["global.attachments.maxBytes"] == str(settings.ATTACHMENT_MAX_BYTES)
    assert api.get(CONFIG, HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304


@pytest.mark.django_db(transaction=True)
async def test_the_config_answers_the_same_over_http_and_tunnelled(http, settings):
    device = await sync_to_async(DeviceFactory)()

    over_http = await http.get(CONFIG, headers={"authorization": device_auth(device)})
    over_socket = await tunnelled(device, "GET", CONFIG)

    assert (over_socket.status, json.loads(over_socket.body)) == (over_http.status_code, over_http.json())
    assert over_http.json() == {"config": expected_config(settings)}
    assert header(over_socket, "ETag") == over_http.headers["etag"]
    assert header(over_socket, "Content-Type") == "application/json"


@pytest.mark.django_db(transaction=True)
async def test_a_tunnelled_if_none_match_answers_304_without_a_body(http):
    device = await sync_to_async(DeviceFactory)()
    etag = (await http.get(CONFIG, headers={"authorization": device_auth(device)})).headers["etag"]

    response = await tunnelled(device, "GET", CONFIG, headers={"If-None-Match": etag})

    assert (response.status, response.body, header(response, "ETag")) == (304, b"", etag)


@pytest.mark.django_db(transaction=True)
async def test_the_config_over_an_anonymous_socket_is_401_as_over_http(http):
    over_http = await http.get(CONFIG)
    over_socket = await tunnelled(None, "GET", CONFIG)

    assert (over_socket.status, json.loads(over_socket.body)) == (over_http.status_code, over_http.json())
    assert over_http.status_code == 401


# --- the other start-up paths: features we do not have -----------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("verb,path", ABSENT_FEATURES, ids=[f"{verb} {path.split('?')[0]}" for verb, path in ABSENT_FEATURES])
async def test_an_absent_feature_answers_a_json_404_over_http_and_tunnelled(http, verb, path):
    device = await sync_to_async(DeviceFactory)()
    body = b"{}" if verb in ("PUT", "POST") else b""
    headers = {"content-type": "application/json"} if body else {}

    over_http = await http.request(verb, path, content=body, headers={"authorization": device_auth(device), **headers})
    over_socket = await tunnelled(device, verb, path, body=body, headers=headers)

    assert (over_http.status_code, over_http.headers["content-type"], over_http.json()) == (404, "application/json", NOT_FOUND)
    assert (over_socket.status, header(over_socket, "Content-Type"), json.loads(over_socket.body)) == (404, "application/json", NOT_FOUND)


@pytest.mark.parametrize("method", ["get", "post", "put", "delete"])
@pytest.mark.parametrize("debug", [True, False])
def test_an_unknown_path_is_a_json_404_with_or_without_debug(client, settings, method, debug):
    settings.DEBUG = debug
    response = getattr(client, method)("/v9/no/such/thing", content_type="application/json")
    assert (response.status_code, response["Content-Type"], response.json()) == (404, "application/json", {"code": 404, "message": "Not found"})
