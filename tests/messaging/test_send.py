"""PUT /v1/messages/{destination} and the REST retrieval, through the real routes."""

import base64
import uuid

import pytest

from messaging.envelopes import parse_envelope
from messaging.models import QueuedMessage
from messaging.services import MAX_CONTENT_BYTES, purge_expired_messages
from tests.factories import AccountFactory, DeviceFactory, override_limit
from tests.messaging.helpers import all_devices, message_list

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return DeviceFactory()


@pytest.fixture
def bob():
    """An account with a primary and a linked device."""
    primary = DeviceFactory()
    DeviceFactory(account=primary.account, device_id=2)
    return primary.account


def send(client, destination, body, **query):
    path = f"/v1/messages/{destination}"
    if query:
        path += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return client.put(path, body, format="json")


def queued(account):
    return {
        row.device.device_id: parse_envelope(row.open()[0])
        for row in QueuedMessage.objects.filter(device__account=account).select_related("device")
    }


def test_a_send_queues_one_envelope_per_destination_device(client_for, alice, bob):
    response = send(client_for(alice), bob.aci, message_list(all_devices(bob), timestamp=1234))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"needsSync": False}
    envelopes = queued(bob)
    assert set(envelopes) == {1, 2}
    envelope = envelopes[2]
    assert envelope.type == 1
    assert envelope.content == b"ciphertext"
    assert envelope.client_timestamp == 1234
    assert envelope.source_service_id == alice.account_id.bytes
    assert envelope.source_service_id_text == str(alice.account_id)
    assert envelope.source_device == 1
    assert envelope.destination_service_id == bob.aci.bytes
    assert envelope.destination_service_id_text == str(bob.aci)
    assert uuid.UUID(bytes=envelope.server_guid) == uuid.UUID(envelope.server_guid_text)
    assert envelope.urgent is True and not envelope.HasField("ephemeral") and not envelope.HasField("story")
    assert envelopes[1].server_guid != envelopes[2].server_guid


def test_a_send_to_a_pni_is_addressed_to_the_pni_and_checks_pni_registration_ids(client_for, alice, bob):
    devices = [(d.device_id, d.pni_registration_id) for d in bob.devices.order_by("device_id")]

    response = send(client_for(alice), f"PNI:{bob.pni}", message_list(devices))

    assert response.status_code == 200
    envelope = queued(bob)[1]
    assert envelope.destination_service_id == b"\x01" + bob.pni.bytes
    assert envelope.destination_service_id_text == f"PNI:{bob.pni}"
    stale = send(client_for(alice), f"PNI:{bob.pni}", message_list(all_devices(bob)))
    assert stale.status_code == 410


def test_server_time_is_used_when_the_timestamp_is_zero(client_for, alice, bob):
    send(client_for(alice), bob.aci, message_list(all_devices(bob), timestamp=0))

    envelope = queued(bob)[1]
    assert envelope.client_timestamp == envelope.server_timestamp > 0


def test_needs_sync_when_the_sender_has_other_devices(client_for, alice, bob):
    DeviceFactory(account=alice.account, device_id=3)

    response = send(client_for(alice), bob.aci, message_list(all_devices(bob)))

    assert response.json() == {"needsSync": True}


def test_missing_and_extra_devices_are_409_and_nothing_is_queued(client_for, alice, bob):
    response = send(client_for(alice), bob.aci, message_list([(1, bob.devices.get(device_id=1).registration_id), (5, 1)]))

    assert response.status_code == 409
    assert response.json() == {"missingDevices": [2], "extraDevices": [5]}
    assert not QueuedMessage.objects.exists()


def test_a_registration_id_mismatch_is_410_and_wins_over_409(client_for, alice, bob):
    response = send(client_for(alice), bob.aci, message_list([(1, 9999)]))

    assert response.status_code == 410
    assert response.json() == {"staleDevices": [1]}


def test_a_registration_id_of_zero_is_not_checked(client_for, alice, bob):
    response = send(client_for(alice), bob.aci, message_list([(1, 0), (2, 0)]))

    assert response.status_code == 200


def test_a_sync_message_goes_to_the_senders_other_devices_only(client_for, bob):
    primary = bob.devices.get(device_id=1)
    linked = bob.devices.get(device_id=2)

    response = send(client_for(primary), bob.aci, message_list([(2, linked.registration_id)]))

    assert response.status_code == 200
    assert response.json() == {"needsSync": False}
    assert set(queued(bob)) == {2}
    including_self = send(client_for(primary), bob.aci, message_list(all_devices(bob)))
    assert including_self.status_code == 409
    assert including_self.json() == {"missingDevices": [], "extraDevices": [1]}


def test_a_sync_message_to_the_own_pni_is_403(client_for, bob):
    primary = bob.devices.get(device_id=1)

    response = send(client_for(primary), f"PNI:{bob.pni}", message_list([(2, 0)]))

    assert response.status_code == 403


def test_an_unknown_destination_is_404(client_for, alice):
    assert send(client_for(alice), uuid.uuid4(), message_list([(1, 1)])).status_code == 404


def test_a_send_without_credentials_is_401_and_with_wrong_ones_too(client, client_for, alice, bob):
    assert send(client, bob.aci, message_list(all_devices(bob))).status_code == 401
    assert send(client_for(alice, "wrong-password-000000"), bob.aci, message_list(all_devices(bob))).status_code == 401


def test_content_over_96_kib_is_413(client_for, alice, bob):
    body = message_list(all_devices(bob), content=b"x" * (MAX_CONTENT_BYTES + 1))

    assert send(client_for(alice), bob.aci, body).status_code == 413
    assert not QueuedMessage.objects.exists()


def test_content_of_exactly_96_kib_is_accepted(client_for, alice, bob):
    body = message_list(all_devices(bob), content=b"x" * MAX_CONTENT_BYTES)

    assert send(client_for(alice), bob.aci, body).status_code == 200


@pytest.mark.parametrize(
    "mutate",
    [
        lambda body: body.update(messages=[]),
        lambda body: body.update(messages="nope"),
        lambda body: body["messages"][0].update(type=5),
        lambda body: body["messages"][0].update(type=2),
        lambda body: body["messages"][0].update(destinationDeviceId=0),
        lambda body: body["messages"][0].update(destinationDeviceId=128),
        lambda body: body["messages"][0].update(destinationRegistrationId=0x4000),
        lambda body: body["messages"][0].update(content="***"),
        lambda body: body["messages"][0].update(content=""),
        lambda body: body["messages"][0].pop("type"),
        lambda body: body["messages"].append(dict(body["messages"][0])),
        lambda body: body.update(online="yes"),
        lambda body: body.update(timestamp=-1),
        lambda body: body.update(timestamp=True),
    ],
)
def test_invalid_bodies_are_422(client_for, alice, bob, mutate):
    body = message_list(all_devices(bob))
    mutate(body)

    response = send(client_for(alice), bob.aci, body)

    assert response.status_code == 422
    assert not QueuedMessage.objects.exists()


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"a": NaN}', b"\xff\xfe"],
    ids=["syntax", "NaN", "not UTF-8"],
)
def test_malformed_json_is_400(client_for, alice, bob, body):
    response = client_for(alice).put(f"/v1/messages/{bob.aci}", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": "Malformed JSON"}


@pytest.mark.parametrize("destination", ["not-a-uuid", f"ACI:{uuid.uuid4()}"])
def test_an_invalid_destination_is_422(client_for, alice, destination):
    assert send(client_for(alice), destination, message_list([(1, 1)])).status_code == 422


def test_urgent_false_is_carried_in_the_envelope(client_for, alice, bob):
    send(client_for(alice), bob.aci, message_list(all_devices(bob), urgent=False))

    assert queued(bob)[1].urgent is False


def test_an_online_message_to_devices_without_a_socket_is_dropped_not_stored(client_for, alice, bob):
    response = send(client_for(alice), bob.aci, message_list(all_devices(bob), online=True))

    assert response.status_code == 200
    assert not QueuedMessage.objects.exists()


def test_a_story_needs_no_credentials_and_carries_no_source(client, bob):
    response = send(client, bob.aci, message_list(all_devices(bob), type=6), story="true")

    assert response.status_code == 200
    envelope = queued(bob)[1]
    assert envelope.story is True
    assert not envelope.HasField("source_service_id")


def test_a_story_to_an_unknown_account_answers_200_without_revealing_it(client):
    response = send(client, uuid.uuid4(), message_list([(1, 1)], type=6), story="true")

    assert response.status_code == 200
    assert response.json() == {"needsSync": False}


# --- REST retrieval -------------------------------------------------------------------------------


def test_get_messages_lists_the_queue_oldest_first(client_for, alice, bob):
    for text in (b"one", b"two"):
        send(client_for(alice), bob.aci, message_list(all_devices(bob), content=text, timestamp=7))

    response = client_for(bob.devices.get(device_id=2)).get("/v1/messages")

    assert response.status_code == 200
    body = response.json()
    assert body["more"] is False
    assert [base64.b64decode(m["content"]) for m in body["messages"]] == [b"one", b"two"]
    first = body["messages"][0]
    assert first["sourceUuid"] == str(alice.account_id)
    assert first["sourceDevice"] == 1
    assert first["destinationUuid"] == str(bob.aci)
    assert first["timestamp"] == 7
    assert first["type"] == 1 and first["urgent"] is True and first["story"] is False
    assert first["updatedPni"] is None
    assert len(base64.b64decode(first["reportSpamToken"])) == 16


def test_stories_are_listed_only_with_the_receive_stories_header(client, client_for, bob):
    send(client, bob.aci, message_list(all_devices(bob), type=6), story="true")
    reader = client_for(bob.devices.get(device_id=1))

    assert reader.get("/v1/messages").json()["messages"] == []
    assert len(reader.get("/v1/messages", HTTP_X_SIGNAL_RECEIVE_STORIES="true").json()["messages"]) == 1


def test_get_messages_pages_by_100(client_for, alice):
    target = DeviceFactory()
    override_limit("messages", 200, 1, account=alice.account)  # 101 sends at once
    for _ in range(101):
        send(client_for(alice), target.account_id, message_list([(1, target.registration_id)]))

    body = client_for(target).get("/v1/messages").json()

    assert len(body["messages"]) == 100 and body["more"] is True


def test_delete_by_guid_removes_the_message_and_queues_a_receipt_to_every_sender_device(client_for, alice, bob):
    DeviceFactory(account=alice.account, device_id=2)
    send(client_for(alice), bob.aci, message_list(all_devices(bob), timestamp=42))
    reader = client_for(bob.devices.get(device_id=2))
    guid = reader.get("/v1/messages").json()["messages"][0]["guid"]

    response = reader.delete(f"/v1/messages/uuid/{guid}")

    assert response.status_code == 204
    assert not QueuedMessage.objects.with_guid(guid).exists()
    receipts = queued(alice.account)
    assert set(receipts) == {1, 2}
    receipt = receipts[1]
    assert receipt.type == 5
    assert receipt.source_service_id == bob.aci.bytes
    assert receipt.source_device == 2
    assert receipt.destination_service_id == alice.account_id.bytes
    assert receipt.client_timestamp == 42
    assert receipt.urgent is False
    assert not receipt.HasField("content")


def test_deleting_another_devices_message_has_no_effect(client_for, alice, bob):
    send(client_for(alice), bob.aci, message_list(all_devices(bob)))
    guid = parse_envelope(QueuedMessage.objects.get(device__device_id=2, device__account=bob).open()[0]).server_guid_text

    response = client_for(bob.devices.get(device_id=1)).delete(f"/v1/messages/uuid/{guid}")

    assert response.status_code == 404
    assert QueuedMessage.objects.with_guid(guid).exists()
    assert not queued(alice.account)


def test_acknowledging_a_sync_message_or_a_receipt_generates_no_receipt(client_for, bob):
    primary, linked = bob.devices.get(device_id=1), bob.devices.get(device_id=2)
    send(client_for(primary), bob.aci, message_list([(2, linked.registration_id)]))
    guid = client_for(linked).get("/v1/messages").json()["messages"][0]["guid"]

    client_for(linked).delete(f"/v1/messages/uuid/{guid}")

    assert not QueuedMessage.objects.exists()


def test_get_and_delete_need_credentials(client):
    assert client.get("/v1/messages").status_code == 401
    assert client.delete(f"/v1/messages/uuid/{uuid.uuid4()}").status_code == 401


# --- Lifecycle ------------------------------------------------------------------------------------


def test_removing_a_device_or_deleting_the_account_removes_its_queue(client_for, alice, bob):
    send(client_for(alice), bob.aci, message_list(all_devices(bob)))
    bob.devices.get(device_id=2).delete()
    assert QueuedMessage.objects.count() == 1

    client_for(bob.devices.get(device_id=1)).delete("/v1/accounts/me")

    assert not QueuedMessage.objects.exists()


def test_expired_messages_are_neither_delivered_nor_kept(client_for, alice, bob, settings):
    send(client_for(alice), bob.aci, message_list(all_devices(bob)))
    QueuedMessage.objects.update(queued_hour=0)
    other = AccountFactory()
    DeviceFactory(account=other)
    send(client_for(alice), other.aci, message_list(all_devices(other)))

    assert client_for(bob.devices.get(device_id=1)).get("/v1/messages").json()["messages"] == []
    assert purge_expired_messages() == 2
    assert QueuedMessage.objects.count() == 1


def test_the_purge_is_scheduled_and_uses_the_configured_retention(settings):
    from messaging.tasks import purge_expired_messages_task

    assert any(e["task"] == purge_expired_messages_task.name for e in settings.CELERY_BEAT_SCHEDULE.values())
    assert settings.MESSAGE_RETENTION_DAYS == 30


def test_acks_of_several_devices_are_deleted_together_each_only_from_its_own_queue(client_for, alice, bob):
    """The WebSocket batches the acks of all its sockets into one `acknowledge_rows`: each device's
    row ids delete only that device's rows, and every deleted identified message gets its receipt
    (naming the device that acknowledged it)."""
    from messaging.envelopes import SERVER_DELIVERY_RECEIPT
    from messaging.services import acknowledge_rows, acknowledgement

    send(client_for(alice), bob.aci, message_list(all_devices(bob)))
    carol = DeviceFactory()
    send(client_for(alice), carol.account.aci, message_list([(1, carol.registration_id)]))
    phone, laptop = bob.devices.get(device_id=1), bob.devices.get(device_id=2)
    row = {d.pk: QueuedMessage.objects.get(device=d) for d in (phone, laptop, carol)}
    delivered = {pk: acknowledgement(queued.pk, queued.open()[0]) for pk, queued in row.items()}

    deleted = acknowledge_rows(
        {
            (laptop.pk, laptop.device_id): [delivered[laptop.pk], delivered[phone.pk]],  # the phone's row is not the laptop's
            (carol.pk, carol.device_id): [delivered[carol.pk]],
        }
    )

    assert deleted == 2
    assert set(QueuedMessage.objects.exclude(device__account=alice.account).values_list("pk", flat=True)) == {row[phone.pk].pk}
    receipts = sorted(
        (envelope.source_device, uuid.UUID(bytes=envelope.source_service_id))
        for envelope in queued_envelopes(alice.account)
        if envelope.type == SERVER_DELIVERY_RECEIPT
    )
    assert receipts == sorted([(2, bob.aci), (1, carol.account.aci)])


def queued_envelopes(account):
    return [parse_envelope(row.open()[0]) for row in QueuedMessage.objects.filter(device__account=account)]
