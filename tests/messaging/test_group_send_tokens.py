"""Sealed sends authorised by a group send token (`Group-Send-Token`) instead of access keys:
PUT /v1/messages/{destination} and PUT /v1/messages/multi_recipient, over HTTP and the socket."""

import base64
import json
import os
import time
import uuid

import pytest
from asgiref.sync import sync_to_async

from groups.send_tokens import group_send_credentials
from messaging.envelopes import parse_envelope
from messaging.models import QueuedMessage
from tests.factories import DeviceFactory
from tests.groups.test_send_tokens import client_token
from tests.messaging.helpers import message_list, next_message, parse_frame, request_frame, socket_for
from tests.messaging.test_sealed_sender import MRM, access_header, aci_bytes, devices_of, mrm_payload

THREE_DAYS = 3 * 86_400


@pytest.fixture
def group():
    """Four accounts of two devices each, the first of which sends; its credentials."""
    accounts = []
    for _ in range(4):
        primary = DeviceFactory()
        DeviceFactory(account=primary.account, device_id=2)
        accounts.append(primary.account)
    credentials = group_send_credentials([str(a.aci) for a in accounts], str(accounts[0].aci))
    return accounts, credentials


def token_for(credentials, accounts) -> str:
    return client_token(credentials, [str(a.aci) for a in accounts])


def send_one(client, recipient, token, **extra):
    body = message_list(devices_of(recipient), type=6, content=b"sealed for the group")
    headers = {"HTTP_GROUP_SEND_TOKEN": token} if token is not None else {}
    return client.put(f"/v1/messages/{recipient.aci}", body, format="json", **headers, **extra)


def put_with_token(client, payload, token, query=""):
    return client.generic("PUT", f"/v1/messages/multi_recipient{query}", payload, content_type=MRM, HTTP_GROUP_SEND_TOKEN=token)


def payload_for(accounts, excluded=()):
    return mrm_payload([(aci_bytes(a), devices_of(a), os.urandom(48)) for a in accounts], excluded=[aci_bytes(a) for a in excluded])


def queued_for(account) -> int:
    return QueuedMessage.objects.filter(device__account=account).count()


# --- PUT /v1/messages/{destination} --------------------------------------------------------------


@pytest.mark.django_db
def test_a_token_for_the_destination_sends_a_sealed_message_without_a_key(client, group):
    accounts, credentials = group
    bob = accounts[1]

    response = send_one(client, bob, token_for(credentials, [bob]))

    assert response.status_code == 200 and response.json() == {"needsSync": False}
    rows = QueuedMessage.objects.filter(device__account=bob)
    assert rows.count() == 2
    for row in rows:
        envelope = parse_envelope(row.open()[0])
        assert envelope.type == 6 and envelope.content == b"sealed for the group"
        assert not envelope.HasField("source_service_id")


@pytest.mark.django_db
def test_a_single_send_with_the_whole_groups_token_is_401(client, group):
    accounts, credentials = group

    response = send_one(client, accounts[1], credentials["token"])

    assert response.status_code == 401 and queued_for(accounts[1]) == 0


@pytest.mark.django_db
def test_an_expired_forged_or_other_members_token_is_401(client, group):
    accounts, credentials = group
    bob, carol = accounts[1], accounts[2]
    stale = group_send_credentials([str(a.aci) for a in accounts], str(accounts[0].aci), now=time.time() - THREE_DAYS)
    forged = base64.b64encode(b"\x00" + credentials["expiration"].to_bytes(8, "big") + os.urandom(32)).decode()

    for token in (token_for(stale, [bob]), forged, token_for(credentials, [carol]), "AAAA", "not base64!"):
        assert send_one(client, bob, token).status_code == 401, token
    assert queued_for(bob) == 0


@pytest.mark.django_db
def test_a_token_does_not_mix_with_credentials_a_key_or_a_story(client, client_for, group):
    accounts, credentials = group
    bob = accounts[1]
    token = token_for(credentials, [bob])
    key = access_header(bytes(bob.unidentified_access_key))

    assert send_one(client_for(accounts[0].devices.get(device_id=1)), bob, token).status_code == 400
    assert send_one(client, bob, token, HTTP_UNIDENTIFIED_ACCESS_KEY=key).status_code == 400
    assert send_one(client, bob, token, QUERY_STRING="story=true").status_code == 400
    assert queued_for(bob) == 0


@pytest.mark.django_db
def test_with_a_token_an_unknown_destination_is_404_and_the_devices_are_still_checked(client, group):
    accounts, credentials = group
    bob = accounts[1]
    gone = str(uuid.uuid4())
    credentials = group_send_credentials([str(bob.aci), gone], str(accounts[0].aci))
    token = client_token(credentials, [gone])

    response = client.put(f"/v1/messages/{gone}", message_list([(1, 1)], type=6), format="json", HTTP_GROUP_SEND_TOKEN=token)
    assert response.status_code == 404

    one_device = message_list(devices_of(bob)[:1], type=6)
    response = client.put(f"/v1/messages/{bob.aci}", one_device, format="json", HTTP_GROUP_SEND_TOKEN=token_for(credentials, [bob]))
    assert response.status_code == 409 and response.json() == {"missingDevices": [2], "extraDevices": []}


@pytest.mark.django_db
def test_a_token_send_must_be_sealed(client, group):
    accounts, credentials = group
    bob = accounts[1]
    body = message_list(devices_of(bob), type=1)

    response = client.put(f"/v1/messages/{bob.aci}", body, format="json", HTTP_GROUP_SEND_TOKEN=token_for(credentials, [bob]))

    assert response.status_code == 400


# --- PUT /v1/messages/multi_recipient ------------------------------------------------------------


@pytest.mark.django_db
def test_the_ready_made_token_sends_to_all_other_members(client, group):
    accounts, credentials = group

    response = put_with_token(client, payload_for(accounts[1:]), credentials["token"])

    assert response.status_code == 200 and response.json() == {"uuids404": []}
    assert [queued_for(a) for a in accounts] == [0, 2, 2, 2]


@pytest.mark.django_db
def test_a_token_made_from_endorsements_sends_to_that_subset(client, group):
    accounts, credentials = group
    subset = [accounts[3], accounts[1]]

    response = put_with_token(client, payload_for(subset), token_for(credentials, subset))

    assert response.status_code == 200
    assert [queued_for(a) for a in accounts] == [0, 2, 0, 2]


@pytest.mark.django_db
def test_the_whole_groups_token_covers_a_send_that_excludes_members(client, group):
    accounts, credentials = group

    response = put_with_token(client, payload_for(accounts[1:3], excluded=accounts[3:]), credentials["token"])

    assert response.status_code == 200
    assert [queued_for(a) for a in accounts] == [0, 2, 2, 0]


@pytest.mark.django_db
def test_a_token_for_another_set_expired_or_forged_is_401_and_queues_nothing(client, group):
    accounts, credentials = group
    stale = group_send_credentials([str(a.aci) for a in accounts], str(accounts[0].aci), now=time.time() - THREE_DAYS)
    forged = base64.b64encode(b"\x00" + credentials["expiration"].to_bytes(8, "big") + os.urandom(32)).decode()
    stranger = DeviceFactory().account

    cases = [
        (payload_for(accounts[1:3]), credentials["token"]),  # a subset, without saying the rest are excluded
        (payload_for(accounts[1:] + [stranger]), credentials["token"]),  # one more than the token names
        (payload_for(accounts[1:]), stale["token"]),
        (payload_for(accounts[1:]), forged),
        (payload_for(accounts[1:]), "AAAA"),
    ]
    for payload, token in cases:
        assert put_with_token(client, payload, token).status_code == 401
    assert QueuedMessage.objects.count() == 0


@pytest.mark.django_db
def test_a_token_does_not_mix_with_a_key_or_a_story_but_ignores_credentials(client, client_for, group):
    accounts, credentials = group
    payload = payload_for(accounts[1:])
    key = access_header(bytes(16))

    with_key = client.generic(
        "PUT", "/v1/messages/multi_recipient", payload, content_type=MRM,
        HTTP_GROUP_SEND_TOKEN=credentials["token"], HTTP_UNIDENTIFIED_ACCESS_KEY=key,
    )
    assert with_key.status_code == 400
    assert put_with_token(client, payload, credentials["token"], "?story=true").status_code == 400
    assert QueuedMessage.objects.count() == 0

    signed_in = client_for(accounts[0].devices.get(device_id=1))
    assert put_with_token(signed_in, payload, credentials["token"]).status_code == 200


@pytest.mark.django_db
def test_unknown_recipients_are_skipped_and_reported_in_uuids404(client, group):
    accounts, _ = group
    gone = uuid.uuid4()
    credentials = group_send_credentials([str(a.aci) for a in accounts] + [str(gone)], str(accounts[0].aci))
    payload = mrm_payload(
        [(aci_bytes(a), devices_of(a), os.urandom(48)) for a in accounts[1:]] + [(b"\x00" + gone.bytes, [(1, 7)], os.urandom(48))]
    )

    response = put_with_token(client, payload, credentials["token"])

    assert response.status_code == 200 and response.json() == {"uuids404": [str(gone)]}
    assert [queued_for(a) for a in accounts] == [0, 2, 2, 2]


@pytest.mark.django_db
def test_with_a_token_a_pni_recipient_is_reached_and_mismatched_devices_are_still_409(client, group):
    accounts, _ = group
    bob = accounts[1]
    pni = f"PNI:{bob.pni}"
    credentials = group_send_credentials([str(accounts[0].aci), pni], str(accounts[0].aci))
    devices = [(d.device_id, d.pni_registration_id) for d in bob.devices.order_by("device_id")]

    response = put_with_token(client, mrm_payload([(b"\x01" + bob.pni.bytes, devices, os.urandom(48))]), credentials["token"])
    assert response.status_code == 200 and queued_for(bob) == 2

    short = mrm_payload([(b"\x01" + bob.pni.bytes, devices[:1], os.urandom(48))])
    response = put_with_token(client, short, credentials["token"])
    assert response.status_code == 409
    assert response.json() == [{"uuid": pni, "devices": {"missingDevices": [2], "extraDevices": []}}]


# --- Over the socket -----------------------------------------------------------------------------


@pytest.fixture
def pair(db):
    """(sender's credentials, bob's account, bob's device): two members, bob with one device."""
    bob = DeviceFactory()
    sender = DeviceFactory()
    credentials = group_send_credentials([str(sender.account.aci), str(bob.account.aci)], str(sender.account.aci))
    return credentials, bob.account, bob


@pytest.mark.django_db(transaction=True)
async def test_the_anonymous_socket_carries_token_sends_of_both_kinds(pair):
    credentials, bob, bob_device = pair
    anonymous = socket_for()
    assert (await anonymous.connect())[0]
    bob_ws = socket_for(bob_device)
    assert (await bob_ws.connect())[0]
    await bob_ws.receive_from(timeout=2)  # queue empty
    token = f"Group-Send-Token:{credentials['token']}"

    single = json.dumps(message_list([(1, bob_device.registration_id)], type=6, content=b"one")).encode()
    await anonymous.send_to(bytes_data=request_frame("PUT", f"/v1/messages/{bob.aci}", body=single, headers=[token]))
    assert parse_frame(await anonymous.receive_from(timeout=3)).response.status == 200
    _, envelope = await next_message(bob_ws)
    assert envelope.content == b"one" and not envelope.HasField("source_service_id")

    shared = os.urandom(32) + b"many" + os.urandom(16)
    payload = mrm_payload([(aci_bytes(bob), [(1, bob_device.registration_id)], bytes(48))], shared=shared)
    await anonymous.send_to(
        bytes_data=request_frame("PUT", "/v1/messages/multi_recipient", body=payload, request_id=2, headers=[token, f"Content-Type:{MRM}"])
    )
    response = parse_frame(await anonymous.receive_from(timeout=3)).response
    assert response.status == 200 and json.loads(response.body) == {"uuids404": []}
    _, envelope = await next_message(bob_ws)
    assert envelope.content == b"\x22" + bytes(48) + shared

    both = f"Group-Send-Token:{client_token(credentials, [e['serviceId'] for e in credentials['endorsements']])}"
    await anonymous.send_to(bytes_data=request_frame("PUT", f"/v1/messages/{bob.aci}", body=single, request_id=3, headers=[both]))
    assert parse_frame(await anonymous.receive_from(timeout=3)).response.status == 401
    assert await sync_to_async(QueuedMessage.objects.filter(device=bob_device).count)() == 2  # the two above, unacknowledged
    await anonymous.disconnect()
    await bob_ws.disconnect()
