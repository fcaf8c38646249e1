"""One-time keys are handed out once at the rate bundle fetches now reach (docs/performance.md,
"Prekey bundles over sockets": thousands a second): the Procfile's web process (uvicorn, one
worker), sockets fetching with credentials and with access keys, `--window` fetches in flight
each as `bench prekeys` does, and plain HTTP fetches beside them, until every pool is empty."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async

from keys.models import KemPreKey, OneTimePreKey
from signalserver.websocket import MAX_REQUESTS_IN_FLIGHT
from tests.factories import DeviceFactory, device_auth, override_limit
from tests.keys.test_prekeys import Owner
from tests.messaging.helpers import parse_frame, request_frame
from tests.servers import server_processes  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

TARGETS, DEVICES, KEYS = 6, 3, 100  # 1,800 EC and 1,800 Kyber one-time keys
SOCKETS, ANONYMOUS = 16, 4


def owners_with_keys() -> list[Owner]:
    owners = [Owner(devices=DEVICES) for _ in range(TARGETS)]
    for owner in owners:
        for device in owner.devices:
            assert owner.full_upload(device, ec=KEYS, kem=KEYS).status_code == 204
    return owners


async def test_every_one_time_key_goes_out_once_at_thousands_of_fetches_a_second(server_processes):  # noqa: F811
    owners = await sync_to_async(owners_with_keys)()
    fetchers = [await sync_to_async(DeviceFactory.create)() for _ in range(SOCKETS - ANONYMOUS + 1)]
    await sync_to_async(override_limit)("prekeys", 1_000_000, 0.001)
    [server] = await sync_to_async(server_processes)(1, procfile=True)
    paths = [f"/v2/keys/{owner.account.aci}/{device}" for owner in owners for device in ("1", "2", "3", "*")]
    answers: list[tuple[str, int, bytes]] = []
    # Enough fetches to take every key at least twice over (a `*` fetch takes from three devices).
    wanted = 4 * TARGETS * DEVICES * KEYS
    started = time.monotonic()

    async def one_socket(index: int) -> None:
        # A lean client (as `bench prekeys`): frames written and read directly, so that the
        # test's one process can offer the server thousands of fetches a second.
        anonymous = index >= SOCKETS - ANONYMOUS
        owner = owners[index % TARGETS]
        key = base64.b64encode(bytes(owner.account.unidentified_access_key)).decode()
        frame_headers = [f"Unidentified-Access-Key:{key}"] if anonymous else []
        mine = [path for path in paths if str(owner.account.aci) in path] if anonymous else paths
        upgrade_headers = {"X-Signal-Disable-Messages": "true"}
        if not anonymous:
            upgrade_headers["Authorization"] = device_auth(fetchers[index])
        sent: dict[int, str] = {}
        window = asyncio.Semaphore(MAX_REQUESTS_IN_FLIGHT)
        async with websockets.connect(f"{server.ws_url}/v1/websocket/", additional_headers=upgrade_headers, max_size=2**22) as ws:

            async def receive() -> None:
                async for data in ws:
                    response = parse_frame(data).response
                    answers.append((sent.pop(response.id), response.status, response.body))
                    window.release()

            receiving = asyncio.ensure_future(receive())
            request_id = 0
            while len(answers) < wanted:
                await window.acquire()
                request_id += 1
                sent[request_id] = mine[(index + request_id) % len(mine)]
                await ws.send(request_frame("GET", sent[request_id], request_id=request_id, headers=frame_headers))
            for _ in range(MAX_REQUESTS_IN_FLIGHT):  # the last answers
                await asyncio.wait_for(window.acquire(), 30)
            receiving.cancel()

    async def one_http(index: int) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            n = index
            while len(answers) < wanted:
                n += 1
                path = paths[n % len(paths)]
                response = await http.get(path, headers={"Authorization": device_auth(fetchers[-1])})
                answers.append((path, response.status_code, response.content))

    await asyncio.gather(*(one_socket(i) for i in range(SOCKETS)), *(one_http(i) for i in range(2)))
    elapsed = time.monotonic() - started
    print(f"\n{len(answers)} bundle fetches in {elapsed:.1f} s: {len(answers) / elapsed:.0f} a second")

    assert [(path, status) for path, status, _ in answers if status != 200] == []
    handed: dict[tuple, list[int]] = {}
    for path, _, body in answers:
        target = path.split("/")[3]
        for device in json.loads(body)["devices"]:
            if device["preKey"] is not None:
                handed.setdefault((target, device["deviceId"], "ec"), []).append(device["preKey"]["keyId"])
            handed.setdefault((target, device["deviceId"], "kem"), []).append(device["pqPreKey"]["keyId"])
    for owner in owners:
        for device_id in range(1, DEVICES + 1):
            ec = handed[(str(owner.account.aci), device_id, "ec")]
            kem = [key_id for key_id in handed[(str(owner.account.aci), device_id, "kem")] if key_id != 999]
            assert sorted(ec) == list(range(100, 100 + KEYS))  # each EC key once
            assert sorted(kem) == list(range(200, 200 + KEYS))  # each Kyber key once
    assert not await sync_to_async(OneTimePreKey.objects.exists)()
    assert not await sync_to_async(KemPreKey.objects.exists)()
