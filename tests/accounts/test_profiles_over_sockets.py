"""Profile reads over the chat socket, served as a hot route in batches across the sockets of the
process (accounts.profiles.api, accounts.profiles.services.read_profiles): they answer exactly as
over HTTP, errors included; many reads at once each get their own answer; rate limits and blocks
hold for each read of a batch; a batch costs two queries however many reads it holds.

HTTP goes through the real ASGI application (httpx's ASGI transport), the tunnel through the real
WebSocket route; both in this process, against the same database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import uuid

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.blocks.services import block
from accounts.profiles.services import ProfileRead, read_profiles
from groups.send_tokens import group_send_credentials
from keys.models import Identity, IdentityKey
from signalserver import ratelimit
from signalserver.asgi import application
from signalserver.auth import authenticate_authorization
from signalserver.errors import NotFound, Unauthorized
from signalserver.websocket import MAX_REQUESTS_IN_FLIGHT
from signalserver.wire import ServiceId
from tests.accounts.test_profiles import profile_body
from tests.factories import DeviceFactory, device_auth, override_limit
from tests.groups.test_send_tokens import client_token
from tests.keys.test_bundles_over_sockets import over_http, tunnelled
from tests.messaging.helpers import parse_frame, request_frame
from tests.signalserver.test_tunnel import Tunnel

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def http():
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


class Target:
    """An account with two devices (of different capabilities), identity keys, and two profile
    versions set through the API: `old` (replaced) and `current`."""

    def __init__(self, *, unrestricted: bool = False):
        self.device = DeviceFactory(capabilities=["spqr", "storage"], account__unrestricted_unidentified_access=unrestricted)
        DeviceFactory(account=self.device.account, device_id=2, capabilities=["spqr"])
        self.account = self.device.account
        self.aci_key = b"\x05" + os.urandom(32)
        self.pni_key = b"\x05" + os.urandom(32)
        IdentityKey.objects.create(account=self.account, identity=Identity.ACI, public_key=self.aci_key)
        IdentityKey.objects.create(account=self.account, identity=Identity.PNI, public_key=self.pni_key)
        self.old, self.current = profile_body(), profile_body()

    async def set_profiles(self, http) -> None:
        for body in (self.old, self.current):
            response = await http.put("/v1/profile", json=body, headers={"authorization": device_auth(self.device)})
            assert response.status_code == 200

    @property
    def key(self) -> str:
        return base64.b64encode(bytes(self.account.unidentified_access_key)).decode()

    def expected(self, version: dict | None) -> dict:
        """The answer to a read of this account's ACI (and of `version`), as Signal's JSON."""
        checksum = hmac.new(bytes(self.account.unidentified_access_key), bytes(32), hashlib.sha256).digest()
        facts = {
            "identityKey": b64(self.aci_key),
            "unidentifiedAccess": b64(checksum),
            "unrestrictedUnidentifiedAccess": self.account.unrestricted_unidentified_access,
            "capabilities": {
                "storage": False,  # only one device declared it
                "transfer": False,
                "attachmentBackfill": False,
                "spqr": True,
                "profiles_v2": False,
                "usernameChangeSyncMessage": False,
                "optionalPhoneNumber": False,
            },
            "badges": [],
            "uuid": str(self.account.aci),
        }
        if version is None:
            return facts
        fields = {
            "name": version["name"],
            "about": version["about"],
            "aboutEmoji": version["aboutEmoji"],
            "avatar": None,
            "paymentAddress": version["paymentAddress"] if version is self.current else None,
            "phoneNumberSharing": version["phoneNumberSharing"],
        }
        return {**facts, **fields}


NULL_VERSION = dict.fromkeys(("name", "about", "aboutEmoji", "avatar", "paymentAddress", "phoneNumberSharing"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def make_target(http, **kwargs) -> Target:
    target = await sync_to_async(Target)(**kwargs)
    await target.set_profiles(http)
    return target


# --- The same answers both ways -------------------------------------------------------------------


async def test_profile_reads_and_their_errors_answer_the_same_over_http_and_tunnelled(http):
    target = await make_target(http)
    reader = await sync_to_async(DeviceFactory.create)()
    credentials = await sync_to_async(group_send_credentials)([str(target.account.aci), str(reader.account_id)], str(reader.account_id))
    token = client_token(credentials, [str(target.account.aci)])
    other_token = client_token(credentials, [str(reader.account_id)])
    nobody = uuid.uuid4()
    gone = await sync_to_async(group_send_credentials)([str(nobody), str(reader.account_id)], str(reader.account_id))
    token_for_nobody = client_token(gone, [str(nobody)])
    aci, pni, key, wrong_key = target.account.aci, target.account.pni, target.key, b64(os.urandom(16))
    current, old = target.current["version"], target.old["version"]
    cases = {
        # (path, headers) → expected status; `True`: an authenticated reader, else anonymous.
        True: [
            (f"/v1/profile/{aci}", {}, 200),
            (f"/v1/profile/PNI:{pni}", {}, 200),
            (f"/v1/profile/{aci}/{current}", {}, 200),
            (f"/v1/profile/{aci}/{old}", {}, 200),
            (f"/v1/profile/{aci}/{current.upper()}", {}, 200),
            (f"/v1/profile/{aci}/{'ab' * 32}", {}, 200),
            (f"/v1/profile/{aci}/x", {}, 200),
            (f"/v1/profile/{aci}/{'a' * 300}", {}, 200),
            (f"/v1/profile/{aci}/ab%00cd", {}, 200),
            (f"/v1/profile/{nobody}", {}, 404),
            (f"/v1/profile/{nobody}/{current}", {}, 404),
            (f"/v1/profile/PNI:{pni}/{current}", {}, 422),
            ("/v1/profile/abc", {}, 422),
            ("/v1/profile/not-a-uuid", {}, 422),
            (f"/v1/profile/{aci}", {"Unidentified-Access-Key": key}, 400),
            (f"/v1/profile/{aci}", {"Group-Send-Token": token}, 400),
        ],
        False: [
            (f"/v1/profile/{aci}", {"Unidentified-Access-Key": key}, 200),
            (f"/v1/profile/{aci}/{current}", {"Unidentified-Access-Key": key}, 200),
            (f"/v1/profile/{aci}/{'cd' * 32}", {"Unidentified-Access-Key": key}, 200),
            (f"/v1/profile/{aci}/ab%00cd", {"Unidentified-Access-Key": key}, 200),
            (f"/v1/profile/{aci}", {"Group-Send-Token": token}, 200),
            (f"/v1/profile/{aci}", {}, 401),
            (f"/v1/profile/{aci}/{current}", {}, 401),
            (f"/v1/profile/{aci}", {"Unidentified-Access-Key": wrong_key}, 401),
            (f"/v1/profile/{aci}/{current}", {"Unidentified-Access-Key": wrong_key}, 401),
            (f"/v1/profile/{aci}", {"Unidentified-Access-Key": "bad!"}, 401),
            (f"/v1/profile/PNI:{pni}", {"Unidentified-Access-Key": key}, 401),
            (f"/v1/profile/{nobody}", {"Unidentified-Access-Key": key}, 401),
            (f"/v1/profile/{nobody}/{current}", {"Unidentified-Access-Key": key}, 401),
            (f"/v1/profile/{aci}", {"Group-Send-Token": other_token}, 401),
            (f"/v1/profile/{aci}", {"Group-Send-Token": "AAAA"}, 401),
            (f"/v1/profile/{aci}/{current}", {"Group-Send-Token": token}, 401),
            (f"/v1/profile/{nobody}", {"Group-Send-Token": token_for_nobody}, 404),
            (f"/v1/profile/{aci}", {"Unidentified-Access-Key": key, "Group-Send-Token": token}, 400),
            ("/v1/profile/abc", {"Unidentified-Access-Key": key}, 422),
        ],
    }
    for authenticated, requests in cases.items():
        auth = {"authorization": device_auth(reader)} if authenticated else {}
        async with Tunnel(reader if authenticated else None) as tunnel:
            for path, headers, status in requests:
                by_http = await over_http(http, path, {**auth, **headers})
                by_socket = await tunnelled(tunnel, path, headers)
                assert by_http == by_socket, (authenticated, path, headers)
                assert by_http[0] == status, (authenticated, path, headers, by_http)

    async with Tunnel() as anonymous, Tunnel(reader) as identified:
        read = await tunnelled(anonymous, f"/v1/profile/{aci}/{current}", {"Unidentified-Access-Key": key})
        assert read == (200, target.expected(target.current), False)
        read = await tunnelled(identified, f"/v1/profile/{aci}/{old}", {})
        assert read == (200, target.expected(target.old), False)
        read = await tunnelled(identified, f"/v1/profile/{aci}", {})
        assert read == (200, target.expected(None), False)
        read = await tunnelled(identified, f"/v1/profile/{aci}/ab%00cd", {})
        assert read == (200, {**target.expected(None), **NULL_VERSION}, False)
        read = await tunnelled(identified, f"/v1/profile/PNI:{pni}", {})
        assert read[1] == {**target.expected(None), "identityKey": b64(target.pni_key), "unidentifiedAccess": None, "uuid": f"PNI:{pni}"}
        refused = await anonymous.request("GET", f"/v1/profile/{aci}", headers=[f"Unidentified-Access-Key:{wrong_key}"])
        assert (refused.status, json.loads(refused.body)) == (401, {"code": 401, "message": "Unauthorized"})
        assert "WWW-Authenticate:Basic realm=\"signal\"" in refused.headers


async def test_an_unrestricted_account_is_read_with_any_key_and_a_blocked_reader_gets_404_both_ways(http):
    open_target, target = await make_target(http, unrestricted=True), await make_target(http)
    blocked = await sync_to_async(DeviceFactory.create)()
    await sync_to_async(block)(account=target.account, target=ServiceId(blocked.account_id))
    any_key = {"Unidentified-Access-Key": b64(os.urandom(16))}
    async with Tunnel() as anonymous, Tunnel(blocked) as blocked_socket:
        path = f"/v1/profile/{open_target.account.aci}/{open_target.current['version']}"
        assert await over_http(http, path, any_key) == await tunnelled(anonymous, path, any_key) == (200, open_target.expected(open_target.current), False)
        for path in (f"/v1/profile/{target.account.aci}", f"/v1/profile/{target.account.aci}/{target.current['version']}"):
            by_http = await over_http(http, path, {"authorization": device_auth(blocked)})
            assert by_http == await tunnelled(blocked_socket, path, {}) == (404, {"code": 404, "message": "Not found"}, False)
        # Its access key still reads the profile: a block holds for credentials only (accounts.blocks).
        path = f"/v1/profile/{target.account.aci}"
        assert (await tunnelled(anonymous, path, {"Unidentified-Access-Key": target.key}))[0] == 200


async def test_the_profile_limit_answers_429_with_retry_after_both_ways(http):
    target = await make_target(http)
    reader = await sync_to_async(DeviceFactory.create)()
    await sync_to_async(override_limit)("profile", 1, 600)
    path, auth = f"/v1/profile/{target.account.aci}", {"authorization": device_auth(reader)}
    answers = []
    async with Tunnel(reader) as tunnel:
        for read in (lambda: over_http(http, path, auth), lambda: tunnelled(tunnel, path, {})):
            ratelimit.buckets().delete([ratelimit.bucket_key("*", "*")])
            answers.append([await read(), await read()])
    by_http, by_socket = answers
    assert by_http == by_socket
    assert [status for status, _, _ in by_http] == [200, 429]
    assert by_http[1] == (429, {"code": 429, "message": "Rate limit exceeded"}, True)


# --- Many reads at once ---------------------------------------------------------------------------


async def read_at_once(tunnel: Tunnel, requests: list[tuple[str, list[str]]]) -> list:
    """Send every (path, headers) read before reading any answer; the responses in that order."""
    assert len(requests) <= MAX_REQUESTS_IN_FLIGHT
    first = tunnel.next_id + 1
    for offset, (path, headers) in enumerate(requests):
        await tunnel.ws.send_to(bytes_data=request_frame("GET", path, request_id=first + offset, headers=headers))
    tunnel.next_id += len(requests)
    answers = {}
    for _ in requests:
        response = parse_frame(await tunnel.ws.receive_from(timeout=20)).response
        answers[response.id] = response
    return [answers[first + offset] for offset in range(len(requests))]


async def test_many_sockets_reading_at_once_each_get_their_own_answer(http):
    # Four targets (one open to any key), 12 anonymous sockets with access keys (some wrong), 4
    # sockets with credentials, one of them blocked by a target: 16 reads in flight on each, all
    # sent before any answer is read, so the reads of many sockets meet in the same batches.
    targets = [await make_target(http, unrestricted=index == 3) for index in range(4)]
    readers = [await sync_to_async(DeviceFactory.create)() for _ in range(4)]
    await sync_to_async(block)(account=targets[0].account, target=ServiceId(readers[3].account_id))
    await sync_to_async(override_limit)("profile", 1_000_000, 0.001)
    nobody = uuid.uuid4()

    def requests_of(socket: int) -> list[tuple[str, list[str], int, dict | None]]:
        """(path, frame headers, status, body) of each read a socket makes."""
        reader = readers[socket - 12] if socket >= 12 else None
        wanted = []
        for n in range(MAX_REQUESTS_IN_FLIGHT):
            target = targets[(socket + n) % 4]
            aci = target.account.aci
            kind = (socket * 7 + n) % 6
            version = (target.current, target.old, None, {"version": "ef" * 32}, {"version": "ab%00"}, target.current)[kind]
            path = f"/v1/profile/{aci}" + (f"/{version['version']}" if version is not None else "")
            if kind == 3 and reader is not None:
                path = f"/v1/profile/{nobody}/{target.current['version']}"
            headers = [] if reader is not None else [f"Unidentified-Access-Key:{target.key}"]
            if version is None or version is target.current or version is target.old:
                body = target.expected(version)
            else:
                body = {**target.expected(None), **NULL_VERSION}
            status = 200
            if reader is not None and kind == 3:
                status, body = 404, {"code": 404, "message": "Not found"}  # no such account
            elif reader is not None and reader is readers[3] and target is targets[0]:
                status, body = 404, {"code": 404, "message": "Not found"}  # blocked
            elif reader is None and kind == 5 and target is not targets[3]:
                headers = [f"Unidentified-Access-Key:{b64(os.urandom(16))}"]  # a wrong key
                status, body = 401, {"code": 401, "message": "Unauthorized"}
            elif reader is None and kind == 3:
                path = f"/v1/profile/{nobody}"
                status, body = 401, {"code": 401, "message": "Unauthorized"}  # never 404 to a key
            wanted.append((path, headers, status, body))
        return wanted

    async def one_socket(socket: int) -> list[tuple]:
        requests = requests_of(socket)
        async with Tunnel(readers[socket - 12] if socket >= 12 else None) as tunnel:
            responses = await read_at_once(tunnel, [(path, headers) for path, headers, _, _ in requests])
        return [
            (path, (response.status, json.loads(response.body)), (status, body))
            for (path, _, status, body), response in zip(requests, responses, strict=True)
        ]

    results = await asyncio.gather(*(one_socket(socket) for socket in range(16)))
    answers = [entry for result in results for entry in result]
    assert len(answers) == 16 * MAX_REQUESTS_IN_FLIGHT
    assert [(path, got) for path, got, expected in answers if got != expected] == []
    statuses = {expected[0] for _, _, expected in answers}
    assert statuses == {200, 401, 404}  # every kind of answer was in the mix


async def test_the_profile_limit_holds_for_each_read_of_a_batch(http):
    target = await make_target(http)
    limited, other = [await sync_to_async(DeviceFactory.create)() for _ in range(2)]
    await sync_to_async(override_limit)("profile", 3, 600)
    path = f"/v1/profile/{target.account.aci}/{target.current['version']}"
    async with Tunnel(limited) as first, Tunnel(other) as second:
        answers = await asyncio.gather(read_at_once(first, [(path, [])] * 8), read_at_once(second, [(path, [])] * 2))
    statuses = [[response.status for response in socket_answers] for socket_answers in answers]
    assert sorted(statuses[0]) == [200] * 3 + [429] * 5  # the reading account's bucket: 3 reads
    assert all(any(line.lower().startswith("retry-after:") for line in r.headers) for r in answers[0] if r.status == 429)
    assert statuses[1] == [200, 200]  # another account's own bucket


# --- The cost of a batch --------------------------------------------------------------------------


def test_a_batch_of_reads_costs_two_queries_and_each_read_gets_its_own_outcome(client_for):
    targets = [Target() for _ in range(6)]
    for target in targets:
        for body in (target.old, target.current):
            assert client_for(target.device).put("/v1/profile", body, format="json").status_code == 200
    reader = authenticate_authorization(device_auth(DeviceFactory()))
    override_limit("profile", 1_000_000, 0.001)
    reads = []
    for target in targets:
        aci = ServiceId(target.account.aci)
        reads += [
            ProfileRead(None, aci, bytes(target.account.unidentified_access_key), version=target.current["version"]),
            ProfileRead(reader, aci, version=target.old["version"]),
            ProfileRead(reader, ServiceId(target.account.pni, is_pni=True)),
            ProfileRead(None, aci, os.urandom(16)),
        ]
    reads.append(ProfileRead(reader, ServiceId(uuid.uuid4())))
    read_profiles(reads[1:2])  # the first limiter check after a change of limits loads them
    with CaptureQueriesContext(connection) as queries:
        outcomes = read_profiles(reads)
    assert len(queries) == 2  # the accounts with their keys and devices, then the versions
    for index, target in enumerate(targets):
        current, old, pni, wrong = outcomes[4 * index : 4 * index + 4]
        assert current["name"] == base64.b64decode(target.current["name"]) and current["paymentAddress"] is not None
        assert old["name"] == base64.b64decode(target.old["name"]) and old["paymentAddress"] is None
        assert (pni["uuid"], pni["identityKey"]) == (f"PNI:{target.account.pni}", target.pni_key)
        assert isinstance(wrong, Unauthorized)
    assert isinstance(outcomes[-1], NotFound)

    with CaptureQueriesContext(connection) as queries:
        outcomes = read_profiles([ProfileRead(None, ServiceId(targets[0].account.aci)), ProfileRead(reader, ServiceId(targets[0].account.aci), version="x")])
    assert len(queries) == 1  # no key: refused before any read; no version worth looking up
    assert isinstance(outcomes[0], Unauthorized) and outcomes[1]["name"] is None
