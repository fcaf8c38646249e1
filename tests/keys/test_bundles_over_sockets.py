"""Prekey bundle fetches over the chat socket, served as a hot route in batches across the sockets
of the process (keys.api, keys.services.fetch_prekey_bundles): they answer exactly as over HTTP,
errors included; each one-time key goes out once however many fetches arrive together; rate
limits and blocks hold for each fetch of a batch. And the other start-up reads served as hot
routes (whoami, remote configuration, delivery certificate, key counts).

HTTP goes through the real ASGI application (httpx's ASGI transport), the tunnel through the real
WebSocket route; both in this process, against the same database."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid

import httpx
import pytest
from asgiref.sync import sync_to_async

from accounts.blocks.services import block
from groups.send_tokens import group_send_credentials
from keys.models import KemPreKey, OneTimePreKey
from signalserver import ratelimit
from signalserver.asgi import application
from signalserver.websocket import MAX_REQUESTS_IN_FLIGHT
from signalserver.wire import ServiceId
from tests.factories import DeviceFactory, device_auth, override_limit
from tests.groups.test_send_tokens import client_token
from tests.keys.test_prekeys import Owner
from tests.messaging.helpers import parse_frame, request_frame
from tests.messaging.test_sealed_sender import command as sealed_sender_command
from tests.signalserver.test_tunnel import Tunnel

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def http():
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def make_owner(devices=1, *, ec=0, kem=0, pni=False) -> Owner:
    """An account with keys on every device (only signed and last-resort keys by default, so that
    every fetch gets the same bundle)."""
    owner = Owner(devices=devices)
    for device in owner.devices:
        assert owner.full_upload(device, ec=ec, kem=kem).status_code == 204
        if pni:
            assert owner.full_upload(device, ec=ec, kem=kem, identity="pni").status_code == 204
    return owner


def key_header(owner: Owner) -> str:
    return base64.b64encode(bytes(owner.account.unidentified_access_key)).decode()


def answer(status: int, body: bytes, headers) -> tuple:
    """What a client sees: status, parsed body, and whether Retry-After came with it."""
    retry_after = [value for name, value in headers if name.lower() == "retry-after"]
    return status, json.loads(body) if body else None, bool(retry_after) and int(retry_after[0]) > 0


async def over_http(http, path, headers: dict) -> tuple:
    response = await http.get(path, headers=headers)
    return answer(response.status_code, response.content, response.headers.items())


async def tunnelled(tunnel: Tunnel, path, headers: dict) -> tuple:
    response = await tunnel.request("GET", path, headers=[f"{name}:{value}" for name, value in headers.items()])
    return answer(response.status, response.body, [line.split(":", 1) for line in response.headers])


# --- The same answers both ways -------------------------------------------------------------------


async def test_bundles_and_their_errors_answer_the_same_over_http_and_tunnelled(http):
    owner = await sync_to_async(make_owner)(devices=2, pni=True)
    fetcher = await sync_to_async(DeviceFactory.create)()
    credentials = await sync_to_async(group_send_credentials)([str(owner.account.aci), str(fetcher.account_id)], str(fetcher.account_id))
    token = client_token(credentials, [str(owner.account.aci)])
    other_token = client_token(credentials, [str(fetcher.account_id)])
    aci, pni, nobody = owner.account.aci, owner.account.pni, uuid.uuid4()
    key, wrong_key = key_header(owner), base64.b64encode(os.urandom(16)).decode()
    cases = {
        # (path, headers) → expected status; `True`: an authenticated fetcher, else anonymous.
        True: [
            (f"/v2/keys/{aci}/1", {}, 200),
            (f"/v2/keys/{aci}/*", {}, 200),
            (f"/v2/keys/PNI:{pni}/2", {}, 200),
            (f"/v2/keys/{aci}/0002", {}, 200),
            (f"/v2/keys/{nobody}/1", {}, 404),
            (f"/v2/keys/{aci}/5", {}, 404),
            (f"/v2/keys/{aci}/{'1' * 5000}", {}, 404),
            (f"/v2/keys/{aci}/x", {}, 422),
            (f"/v2/keys/{aci}/-1", {}, 422),
            ("/v2/keys/not-a-uuid/1", {}, 422),
            (f"/v2/keys/{aci}/1", {"Unidentified-Access-Key": key}, 400),
            (f"/v2/keys/{aci}/1", {"Group-Send-Token": token}, 400),
        ],
        False: [
            (f"/v2/keys/{aci}/1", {"Unidentified-Access-Key": key}, 200),
            (f"/v2/keys/{aci}/*", {"Unidentified-Access-Key": key}, 200),
            (f"/v2/keys/{aci}/1", {"Group-Send-Token": token}, 200),
            (f"/v2/keys/{aci}/1", {}, 401),
            (f"/v2/keys/{aci}/1", {"Unidentified-Access-Key": wrong_key}, 401),
            (f"/v2/keys/{aci}/1", {"Unidentified-Access-Key": "bad!"}, 401),
            (f"/v2/keys/PNI:{pni}/1", {"Unidentified-Access-Key": key}, 401),
            (f"/v2/keys/{nobody}/1", {"Unidentified-Access-Key": key}, 401),
            (f"/v2/keys/{aci}/5", {"Unidentified-Access-Key": key}, 401),
            (f"/v2/keys/{aci}/1", {"Group-Send-Token": other_token}, 401),
            (f"/v2/keys/{aci}/1", {"Group-Send-Token": "AAAA"}, 401),
            (f"/v2/keys/{aci}/5", {"Group-Send-Token": token}, 404),
            (f"/v2/keys/{aci}/1", {"Unidentified-Access-Key": key, "Group-Send-Token": token}, 400),
            (f"/v2/keys/{aci}/x", {"Unidentified-Access-Key": key}, 422),
        ],
    }
    for authenticated, requests in cases.items():
        auth = {"authorization": device_auth(fetcher)} if authenticated else {}
        async with Tunnel(fetcher if authenticated else None) as tunnel:
            for path, headers, status in requests:
                by_http = await over_http(http, path, {**auth, **headers})
                by_socket = await tunnelled(tunnel, path, headers)
                assert by_http == by_socket, (authenticated, path, headers)
                assert by_http[0] == status, (authenticated, path, headers, by_http)
    everything = await over_http(http, f"/v2/keys/{aci}/*", {"authorization": device_auth(fetcher)})
    assert [device["deviceId"] for device in everything[1]["devices"]] == [1, 2]


async def test_the_prekeys_limit_answers_429_with_retry_after_both_ways(http):
    owner = await sync_to_async(make_owner)()
    fetcher = await sync_to_async(DeviceFactory.create)()
    await sync_to_async(override_limit)("prekeys", 1, 600)
    path, auth = f"/v2/keys/{owner.account.aci}/1", {"authorization": device_auth(fetcher)}
    answers = []
    async with Tunnel(fetcher) as tunnel:
        for fetch in (lambda: over_http(http, path, auth), lambda: tunnelled(tunnel, path, {})):
            ratelimit.buckets().delete([ratelimit.bucket_key("*", "*")])
            answers.append([await fetch(), await fetch()])
    by_http, by_socket = answers
    assert by_http == by_socket
    assert [status for status, _, _ in by_http] == [200, 429]
    assert by_http[1] == (429, {"code": 429, "message": "Rate limit exceeded"}, True)


async def test_start_up_reads_answer_the_same_over_http_and_tunnelled(http):
    owner = await sync_to_async(make_owner)()
    device = owner.primary
    await sync_to_async(sealed_sender_command)("development")  # a server certificate to sign with
    auth = {"authorization": device_auth(device)}
    async with Tunnel(device) as tunnel, Tunnel() as anonymous:
        for path in ("/v1/accounts/whoami", "/v2/config", "/v2/keys?identity=aci", "/v2/keys?identity=pni", "/v2/keys?identity=x"):
            assert await over_http(http, path, auth) == await tunnelled(tunnel, path, {}), path
            assert await over_http(http, path, {}) == await tunnelled(anonymous, path, {}) == (401, {"code": 401, "message": "Unauthorized"}, False)
        whoami = await tunnelled(tunnel, "/v1/accounts/whoami", {})
        assert whoami[1]["uuid"] == str(device.account_id)

        config = await tunnel.request("GET", "/v2/config")
        etag = next(line.split(":", 1)[1] for line in config.headers if line.lower().startswith("etag:"))
        unchanged = await tunnel.request("GET", "/v2/config", headers=[f"If-None-Match:{etag}"])
        assert (unchanged.status, unchanged.body) == (304, b"")
        assert f"ETag:{etag}" in unchanged.headers
        by_http = await http.get("/v2/config", headers={**auth, "If-None-Match": etag})
        assert (by_http.status_code, by_http.content, by_http.headers["ETag"]) == (304, b"", etag)

        # A certificate carries its expiration to the millisecond: the same fields both ways.
        certificates = [await over_http(http, "/v1/certificate/delivery", auth), await tunnelled(tunnel, "/v1/certificate/delivery", {})]
        assert [(status, list(body)) for status, body, _ in certificates] == [(200, ["certificate"])] * 2
        assert await over_http(http, "/v1/certificate/delivery", {}) == await tunnelled(anonymous, "/v1/certificate/delivery", {})
        counts = await tunnelled(tunnel, "/v2/keys?identity=aci", {})
        assert counts == (200, {"count": 0, "pqCount": 0}, False)


# --- One-time keys under concurrent fetches -------------------------------------------------------


async def fetch_at_once(tunnel: Tunnel, paths: list[str], headers=()) -> list:
    """Send every fetch before reading any answer (at most the socket's requests in flight)."""
    assert len(paths) <= MAX_REQUESTS_IN_FLIGHT
    first = tunnel.next_id + 1
    for offset, path in enumerate(paths):
        await tunnel.ws.send_to(bytes_data=request_frame("GET", path, request_id=first + offset, headers=headers))
    tunnel.next_id += len(paths)
    answers = {}
    for _ in paths:
        response = parse_frame(await tunnel.ws.receive_from(timeout=20)).response
        answers[response.id] = response
    return [answers[first + offset] for offset in range(len(paths))]


async def test_one_time_keys_go_out_lowest_first_over_the_socket():
    owner = await sync_to_async(make_owner)(ec=3, kem=2)
    fetcher = await sync_to_async(DeviceFactory.create)()
    async with Tunnel(fetcher) as tunnel:
        answers = await fetch_at_once(tunnel, [f"/v2/keys/{owner.account.aci}/1"] * 5)
    devices = [json.loads(response.body)["devices"][0] for response in answers]
    assert [d["preKey"]["keyId"] if d["preKey"] else None for d in devices] == [100, 101, 102, None, None]
    assert [d["pqPreKey"]["keyId"] for d in devices] == [200, 201, 999, 999, 999]


async def test_many_sockets_fetching_at_once_get_each_one_time_key_exactly_once(http):
    # Two targets of two devices, 40 EC and 30 Kyber one-time keys per device, and 12 fetchers
    # with credentials, 4 anonymous sockets with access keys and HTTP fetchers all at once: 560
    # fetches for 320 one-time keys. Every key goes out once, none twice, the rest get the
    # last-resort key.
    owners = [await sync_to_async(make_owner)(devices=2, ec=40, kem=30) for _ in range(2)]
    fetchers = [await sync_to_async(DeviceFactory.create)() for _ in range(13)]
    await sync_to_async(override_limit)("prekeys", 1_000_000, 0.001)
    paths = [f"/v2/keys/{owner.account.aci}/{device}" for owner in owners for device in ("1", "2", "*")]

    async def one_socket(index: int) -> list:
        fetcher = fetchers[index] if index < 12 else None
        owner = owners[index % 2]
        headers = [] if fetcher is not None else [f"Unidentified-Access-Key:{key_header(owner)}"]
        mine = paths if fetcher is not None else [path for path in paths if str(owner.account.aci) in path]
        answers = []
        async with Tunnel(fetcher) as tunnel:
            for round_ in range(2):
                batch = [mine[(index + round_ + i) % len(mine)] for i in range(MAX_REQUESTS_IN_FLIGHT)]
                answers += [(path, response.status, response.body) for path, response in zip(batch, await fetch_at_once(tunnel, batch, headers))]
        return answers

    async def one_http(index: int) -> list:
        # Four at a time: each takes a connection of the database pool for its thread.
        answers = []
        for n in range(12):
            path = paths[(index + n) % len(paths)]
            response = await http.get(path, headers={"authorization": device_auth(fetchers[12])})
            answers.append((path, response.status_code, response.content))
        return answers

    results = await asyncio.gather(*(one_socket(i) for i in range(16)), *(one_http(i) for i in range(4)))
    answers = [entry for result in results for entry in result]
    assert len(answers) == 16 * 2 * MAX_REQUESTS_IN_FLIGHT + 48
    assert [status for _, status, _ in answers if status != 200] == []
    handed: dict[tuple, list[int]] = {}  # (target, device, kind) → key ids handed out
    for path, _, body in answers:
        target = path.split("/")[3]
        for device in json.loads(body)["devices"]:
            if device["preKey"] is not None:
                handed.setdefault((target, device["deviceId"], "ec"), []).append(device["preKey"]["keyId"])
            handed.setdefault((target, device["deviceId"], "kem"), []).append(device["pqPreKey"]["keyId"])
    for owner in owners:
        for device_id in (1, 2):
            ec = handed[(str(owner.account.aci), device_id, "ec")]
            kem = [key_id for key_id in handed[(str(owner.account.aci), device_id, "kem")] if key_id != 999]
            assert sorted(ec) == list(range(100, 140))  # every EC key once
            assert sorted(kem) == list(range(200, 230))  # every Kyber key once
    assert not await sync_to_async(OneTimePreKey.objects.exists)()
    assert not await sync_to_async(KemPreKey.objects.exists)()


async def test_rate_limits_and_blocks_hold_for_each_fetch_of_a_batch():
    owner = await sync_to_async(make_owner)(ec=20, kem=20)
    limited, other, blocked = [await sync_to_async(DeviceFactory.create)() for _ in range(3)]
    await sync_to_async(block)(account=owner.account, target=ServiceId(blocked.account_id))
    await sync_to_async(override_limit)("prekeys", 3, 600)
    path = f"/v2/keys/{owner.account.aci}/1"
    async with Tunnel(limited) as first, Tunnel(other) as second, Tunnel(blocked) as third:
        answers = await asyncio.gather(fetch_at_once(first, [path] * 8), fetch_at_once(second, [path] * 2), fetch_at_once(third, [path] * 2))
    statuses = [[response.status for response in socket_answers] for socket_answers in answers]
    assert sorted(statuses[0]) == [200] * 3 + [429] * 5  # the caller's pair bucket: 3 fetches
    assert all(any(line.lower().startswith("retry-after:") for line in r.headers) for r in answers[0] if r.status == 429)
    assert statuses[1] == [200, 200]  # another caller's own bucket
    assert statuses[2] == [404, 404]  # blocked: as if the target did not exist
    handed = [json.loads(r.body)["devices"][0]["preKey"]["keyId"] for socket_answers in answers for r in socket_answers if r.status == 200]
    assert sorted(handed) == list(range(100, 105))
    assert await sync_to_async(OneTimePreKey.objects.count)() == 15
