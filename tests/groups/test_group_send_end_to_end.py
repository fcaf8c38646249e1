"""End to end with real sockets: a member reads its group from a live server, gets the group send
token, and sends one sealed multi-recipient message with it on an anonymous socket; every other
member's socket receives it. Expired, forged and other-set tokens are refused (401) and deliver
nothing. (The 1,000-member version is the `group` bench scenario.)"""

import asyncio
import base64
import json
import os
import time

import httpx
import pytest
from channels.db import database_sync_to_async

from groups.send_tokens import group_send_credentials
from messaging.envelopes import UNIDENTIFIED_SENDER, parse_envelope
from tests.factories import device_auth
from tests.groups.helpers import Person, new_group_body
from tests.groups.test_send_tokens import client_token
from tests.live_clients import ChatSocket
from tests.messaging.test_sealed_sender import MRM, mrm_payload
from tests.servers import live_server_process

pytestmark = pytest.mark.django_db(transaction=True)

MEMBERS = 50
DELIVERY_DEADLINE = 5.0  # seconds until the last member has it (the requirement is 10)


@database_sync_to_async
def group_of(count: int):
    """`count` people (one device each) and the body creating a group of all of them."""
    people = [Person() for _ in range(count)]
    return people, new_group_body(people[0], members=people[1:])


def recipient(person, key_material: bytes):
    return (b"\x00" + person.account.aci.bytes, [(1, person.device.registration_id)], key_material)


async def test_a_member_reaches_every_other_members_socket_with_its_group_send_token():
    people, body = await group_of(MEMBERS)
    creator, sender, others = people[0], people[1], [p for p in people if p is not people[1]]
    group_id = os.urandom(32)
    group_header = base64.b64encode(group_id).decode()

    with live_server_process() as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            created = await http.put(
                "/v2/groups",
                content=json.dumps(body),
                headers={"Authorization": device_auth(creator.device), "X-Group-Id": group_header, "Content-Type": "application/json"},
            )
        assert created.status_code == 200, created.text

        sockets = await asyncio.gather(*(ChatSocket.connect(server.ws_url, device_auth(p.device)) for p in people))
        anonymous = await ChatSocket.connect(server.ws_url)
        try:
            assert all(backlog == [] for backlog in await asyncio.gather(*(ws.backlog() for ws in sockets)))
            by_person = dict(zip((p.aci for p in people), sockets, strict=True))

            # The sender reads its group over its own socket, as a client does.
            read = await by_person[sender.aci].request("GET", "/v2/groups", headers=[f"X-Group-Id:{group_header}"])
            assert read.status == 200, read.body
            credentials = json.loads(read.body)["groupSendEndorsements"]
            assert len(credentials["endorsements"]) == MEMBERS

            # One sealed payload for the 49 others, on a socket that says nothing about its owner.
            materials = {p.aci: os.urandom(48) for p in others}
            shared = os.urandom(32) + b"to the whole group" + os.urandom(16)
            payload = mrm_payload([recipient(p, materials[p.aci]) for p in others], shared=shared)
            headers = [f"Group-Send-Token:{credentials['token']}", f"Content-Type:{MRM}"]
            started = time.monotonic()
            response = await anonymous.request("PUT", "/v1/messages/multi_recipient", payload, headers)
            assert response.status == 200 and json.loads(response.body) == {"uuids404": []}

            deliveries = await asyncio.gather(*(by_person[p.aci].next_message(timeout=DELIVERY_DEADLINE) for p in others))
            last = max(by_person[p.aci].arrived_at[d.id] for p, d in zip(others, deliveries, strict=True)) - started
            print(f"{MEMBERS}-member group send: last member had it after {last * 1000:.0f} ms")
            assert last < DELIVERY_DEADLINE
            for person, delivery in zip(others, deliveries, strict=True):
                envelope = parse_envelope(delivery.body)
                assert envelope.type == UNIDENTIFIED_SENDER and not envelope.HasField("source_service_id")
                assert envelope.content == b"\x22" + materials[person.aci] + shared
                await by_person[person.aci].ack(delivery)
            await by_person[sender.aci].expect_no_request(0.3)

            # Expired, forged, or for another set of members: 401, and nobody gets anything.
            member_ids = [p.aci for p in people]
            expired = group_send_credentials(member_ids, sender.aci, now=time.time() - 3 * 86_400)["token"]
            forged = base64.b64encode(b"\x00" + credentials["expiration"].to_bytes(8, "big") + os.urandom(32)).decode()
            fewer = mrm_payload([recipient(p, os.urandom(48)) for p in others[:-1]], shared=shared)
            for token, body_bytes in [(expired, payload), (forged, payload), (credentials["token"], fewer)]:
                refused = await anonymous.request(
                    "PUT", "/v1/messages/multi_recipient", body_bytes, [f"Group-Send-Token:{token}", f"Content-Type:{MRM}"]
                )
                assert refused.status == 401, (token, refused.body)
            # The same over plain HTTP, and a token made from endorsements for those 48 is accepted.
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:

                def put(token, content):
                    headers = {"Group-Send-Token": token, "Content-Type": MRM}
                    return http.put("/v1/messages/multi_recipient", content=content, headers=headers)

                assert (await put(forged, payload)).status_code == 401
                assert (await put(credentials["token"], fewer)).status_code == 401
                await asyncio.gather(*(by_person[p.aci].expect_no_request(0.3) for p in others))
                subset = client_token(credentials, [p.aci for p in others[:-1]])
                accepted = await put(subset, fewer)
                assert accepted.status_code == 200, accepted.text
            for person in others[:-1]:
                await by_person[person.aci].ack(await by_person[person.aci].next_message(timeout=DELIVERY_DEADLINE))
            await by_person[others[-1].aci].expect_no_request(0.3)
        finally:
            await asyncio.gather(*(ws.close() for ws in [*sockets, anonymous]), return_exceptions=True)
