"""GET /v2/calling/relays (Signal's TURN relays for one-to-one calls) through the real routes, over
HTTP and tunnelled over the socket; and the credentials it hands out against a real coturn
(tests/turn.py), which must allocate a relay with them and refuse them once expired or forged."""

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time

import pytest
from aioice import stun
from asgiref.sync import sync_to_async

from messaging.calling import relays
from tests.factories import DeviceFactory
from tests.messaging.helpers import parse_frame, request_frame, socket_for
from tests.turn import allocate, turn_server  # noqa: F401 (the fixture)

pytestmark = pytest.mark.django_db

PATH = "/v2/calling/relays"
SECRET = "test-shared-secret"
URLS = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349?transport=tcp"]
URLS_WITH_IPS = ["turn:192.0.2.7:3478?transport=udp", "turns:192.0.2.7:5349?transport=tcp"]
TTL = 3600
# `<expiry>:<random id>`: digits, a colon, then the opaque id (never the account's identifiers).
USERNAME = re.compile(r"(?P<expiry>[0-9]+):(?P<id>[0-9a-f]{16})")
FRESH = ("username", "password")  # new on every request


def rest_api_password(secret: str, username: str) -> str:
    """coturn's `use-auth-secret` password: base64(HMAC-SHA1(secret, username))."""
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


def without_credentials(relay: dict) -> dict:
    return {name: value for name, value in relay.items() if name not in FRESH}


@pytest.fixture
def device():
    return DeviceFactory()


@pytest.fixture
def turn_configured(settings):
    settings.TURN_SECRET = SECRET
    settings.TURN_URLS = URLS
    settings.TURN_URLS_WITH_IPS = URLS_WITH_IPS
    settings.TURN_HOSTNAME = "turn.example.org"
    settings.TURN_TTL_SECONDS = TTL
    return settings


@pytest.fixture
def turn_unconfigured(settings):
    settings.TURN_SECRET = ""
    settings.TURN_URLS = []
    settings.TURN_URLS_WITH_IPS = []
    settings.TURN_HOSTNAME = ""
    return settings


async def tunnelled_get(device, path: str = PATH):
    """(status, parsed body) of GET `path` over the chat socket of `device` (None: anonymous)."""
    ws = socket_for(device, headers=[(b"x-signal-disable-messages", b"true")] if device else [])
    assert (await ws.connect())[0]
    await ws.send_to(bytes_data=request_frame("GET", path, request_id=7))
    response = parse_frame(await ws.receive_from(timeout=3)).response
    await ws.disconnect()
    assert response.id == 7
    return response.status, json.loads(response.body) if response.body else None


# --- the endpoint ---------------------------------------------------------------------------------


def test_a_relay_has_signals_fields_and_credentials_valid_for_the_ttl(client_for, device, turn_configured):
    before = int(time.time())
    response = client_for(device).get(PATH)
    after = int(time.time())

    assert response.status_code == 200
    (relay,) = response.json()["relays"]
    assert list(relay) == ["username", "password", "ttl", "urls", "urlsWithIps", "hostname"]
    assert without_credentials(relay) == {"ttl": TTL, "urls": URLS, "urlsWithIps": URLS_WITH_IPS, "hostname": "turn.example.org"}
    username = USERNAME.fullmatch(relay["username"])
    assert username, relay["username"]
    assert before + TTL <= int(username["expiry"]) <= after + TTL
    assert relay["password"] == rest_api_password(SECRET, relay["username"])


def test_every_request_gets_a_new_random_username_naming_no_account(client_for, device, turn_configured):
    api = client_for(device)
    first, second = (api.get(PATH).json()["relays"][0] for _ in range(2))

    assert USERNAME.fullmatch(first["username"])["id"] != USERNAME.fullmatch(second["username"])["id"]
    for identifier in (str(device.account.aci), device.account.aci.hex, device.account.number, str(device.account.pk)):
        assert identifier not in first["username"]


def test_without_ip_urls_or_hostname_those_are_an_empty_list_and_null(client_for, device, turn_configured):
    turn_configured.TURN_URLS_WITH_IPS = []
    turn_configured.TURN_HOSTNAME = ""

    (relay,) = client_for(device).get(PATH).json()["relays"]

    assert (relay["urls"], relay["urlsWithIps"], relay["hostname"]) == (URLS, [], None)


def test_without_turn_configured_the_answer_is_no_relay(client_for, device, turn_unconfigured):
    response = client_for(device).get(PATH)

    assert (response.status_code, response.json()) == (200, {"relays": []})


def test_the_relays_need_device_credentials(client, client_for, device, turn_configured):
    assert client.get(PATH).status_code == 401
    assert client_for(device, password="not-the-password-of-this-device").get(PATH).status_code == 401


@pytest.mark.django_db(transaction=True)
async def test_over_the_socket_the_answer_is_the_one_over_http(client_for, turn_configured):
    device = await sync_to_async(DeviceFactory)()
    over_http = await sync_to_async(lambda: client_for(device).get(PATH))()

    status, body = await tunnelled_get(device)

    assert (status, over_http.status_code) == (200, 200)
    (tunnelled,) = body["relays"]
    (relay,) = over_http.json()["relays"]
    assert list(tunnelled) == list(relay)
    assert without_credentials(tunnelled) == without_credentials(relay)
    assert tunnelled["password"] == rest_api_password(SECRET, tunnelled["username"])


@pytest.mark.django_db(transaction=True)
async def test_over_the_socket_without_turn_configured_the_answer_is_no_relay(turn_unconfigured):
    device = await sync_to_async(DeviceFactory)()

    assert await tunnelled_get(device) == (200, {"relays": []})


@pytest.mark.django_db(transaction=True)
async def test_over_an_anonymous_socket_the_relays_are_refused(turn_configured):
    status, _ = await tunnelled_get(None)

    assert status == 401


# --- against a real coturn ---------------------------------------------------------------------------


@pytest.fixture
def coturn_configured(settings, turn_server):  # noqa: F811 (the fixture imported above)
    settings.TURN_SECRET = turn_server.secret
    settings.TURN_URLS = turn_server.urls()
    settings.TURN_URLS_WITH_IPS = []
    settings.TURN_HOSTNAME = ""
    settings.TURN_TTL_SECONDS = TTL
    return turn_server


def run(coroutine):
    """Run the TURN client from a synchronous test (its own event loop)."""
    return asyncio.run(coroutine)


def refusal(url: str, username: str, password: str) -> int:
    """The STUN error code with which the TURN server refuses to allocate (fails if it allocates)."""
    with pytest.raises(stun.TransactionFailed) as refused:
        relayed = run(allocate(url, username, password))
        pytest.fail(f"allocated {relayed} with {username!r}")
    return refused.value.response.error_code


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_coturn_allocates_a_relay_with_the_credentials_the_endpoint_returns(client_for, device, coturn_configured, transport):
    (relay,) = client_for(device).get(PATH).json()["relays"]
    (url,) = [url for url in relay["urls"] if url.endswith(f"transport={transport}")]

    host, port = run(allocate(url, relay["username"], relay["password"]))

    assert host == "127.0.0.1" and port in coturn_configured.relay_ports


def test_coturn_refuses_expired_credentials(coturn_configured):
    # Signed correctly with the server's secret, but issued so long ago that the expiry has passed.
    (relay,) = relays(now=time.time() - TTL - 60)["relays"]
    assert int(USERNAME.fullmatch(relay["username"])["expiry"]) < time.time() - 30
    assert relay["password"] == rest_api_password(coturn_configured.secret, relay["username"])

    assert refusal(relay["urls"][0], relay["username"], relay["password"]) == 401


def test_coturn_refuses_a_forged_password_or_a_username_with_a_later_expiry(client_for, device, coturn_configured):
    (relay,) = client_for(device).get(PATH).json()["relays"]
    url, username = relay["urls"][0], relay["username"]
    expiry, opaque = username.split(":")
    later = f"{int(expiry) + 10 * TTL}:{opaque}"

    assert refusal(url, username, rest_api_password("a-guessed-secret", username)) == 401
    assert refusal(url, later, relay["password"]) == 401
    assert run(allocate(url, username, relay["password"]))  # the genuine pair still allocates


@pytest.mark.django_db
def test_relays_are_limited_per_account(client_for):
    from tests.factories import DeviceFactory, override_limit

    override_limit("getCallingRelays", 2, 3600)
    device = DeviceFactory()
    assert [client_for(device).get("/v2/calling/relays").status_code for _ in range(3)] == [200, 200, 429]
    assert client_for(DeviceFactory()).get("/v2/calling/relays").status_code == 200
