"""Sealed sender: certificates, unidentified 1:1 sends, multi-recipient sends."""

import base64
import io
import json
import os
import struct
import uuid

import pytest
import xeddsa
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from keys.models import Identity, IdentityKey
from messaging.envelopes import parse_envelope
from messaging.models import QueuedMessage
from messaging.multi_recipient import MalformedPayload, parse_multi_recipient
from signalserver.proto.sealed_sender_pb2 import SenderCertificate, ServerCertificate
from tests.crypto import IdentityKeyPair
from tests.factories import AccountFactory, DeviceFactory, device_auth
from tests.messaging.helpers import message_list, next_message, parse_frame, request_frame, socket_for

MRM = "application/vnd.signal-messenger.mrm"


def xeddsa_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """XEdDSA verification by the independent `xeddsa` package."""
    edwards = xeddsa.curve25519_pub_to_ed25519_pub(public_key[1:], bool(signature[63] >> 7))
    return xeddsa.ed25519_verify(signature[:63] + bytes([signature[63] & 0x7F]), edwards, message)


def command(*args) -> str:
    out = io.StringIO()
    call_command("sealed_sender", *args, stdout=out)
    return out.getvalue().strip()


def access_header(key: bytes) -> str:
    return base64.b64encode(key).decode()


# --- Certificates ---------------------------------------------------------------------------------


@pytest.fixture
def sender():
    device = DeviceFactory()
    IdentityKey.objects.create(account=device.account, identity=Identity.ACI, public_key=IdentityKeyPair().public_key)
    return device


@pytest.mark.django_db
def test_a_delivery_certificate_verifies_against_the_printed_trust_root_only(client_for, sender):
    command("development")
    trust_root = base64.b64decode(command("trust-root"))

    response = client_for(sender).get("/v1/certificate/delivery")

    assert response.status_code == 200
    certificate = SenderCertificate.FromString(base64.b64decode(response.json()["certificate"]))
    inner = SenderCertificate.Certificate.FromString(certificate.certificate)
    server = inner.signer_certificate
    server_inner = ServerCertificate.Certificate.FromString(server.certificate)
    assert len(trust_root) == 33 and trust_root[0] == 0x05
    assert xeddsa_verify(trust_root, server.certificate, server.signature)
    assert xeddsa_verify(server_inner.key, certificate.certificate, certificate.signature)
    other = IdentityKeyPair().public_key
    assert not xeddsa_verify(other, server.certificate, server.signature)
    assert not xeddsa_verify(other, certificate.certificate, certificate.signature)

    assert inner.sender_uuid_string == str(sender.account_id)
    assert inner.sender_device == 1
    assert inner.identity_key == bytes(IdentityKey.objects.get(account=sender.account).public_key)
    assert inner.sender_e164 == sender.account.number
    from messaging.services import now_ms

    assert 23.9 * 3600_000 < inner.expires - now_ms() <= 24 * 3600_000


@pytest.mark.django_db
def test_include_e164_false_leaves_the_number_out(client_for, sender):
    command("development")

    response = client_for(sender).get("/v1/certificate/delivery?includeE164=false")

    inner = SenderCertificate.Certificate.FromString(
        SenderCertificate.FromString(base64.b64decode(response.json()["certificate"])).certificate
    )
    assert not inner.HasField("sender_e164")
    assert sender.account.number.encode() not in base64.b64decode(response.json()["certificate"])


@pytest.mark.django_db
def test_a_number_is_refused_for_an_account_without_one(client_for, sender):
    command("development")
    sender.account.number = None
    sender.account.save(update_fields=["number"])

    assert client_for(sender).get("/v1/certificate/delivery").status_code == 400
    assert client_for(sender).get("/v1/certificate/delivery?includeE164=false").status_code == 200


@pytest.mark.django_db
def test_without_a_server_certificate_the_endpoint_is_503_and_needs_credentials(client, client_for, sender):
    assert client_for(sender).get("/v1/certificate/delivery").status_code == 503
    assert client.get("/v1/certificate/delivery").status_code == 401


@pytest.mark.django_db
def test_an_offline_trust_root_certifies_and_rotates_server_keys(tmp_path, client_for, sender):
    key_file = tmp_path / "trust-root.key"
    command("create-trust-root", "--private-key-out", str(key_file))
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    trust_root = base64.b64decode(command("trust-root"))
    with pytest.raises(CommandError):
        command("development")  # the private half is offline: development cannot certify

    command("certify", "--trust-root-private-key", str(key_file))
    command("certify", "--trust-root-private-key", str(key_file))

    certificate = SenderCertificate.FromString(
        base64.b64decode(client_for(sender).get("/v1/certificate/delivery").json()["certificate"])
    )
    server = SenderCertificate.Certificate.FromString(certificate.certificate).signer_certificate
    assert ServerCertificate.Certificate.FromString(server.certificate).id == 2  # the newest signs
    assert xeddsa_verify(trust_root, server.certificate, server.signature)


@pytest.mark.django_db
def test_certify_refuses_a_key_that_is_not_the_trust_roots(tmp_path):
    command("create-trust-root", "--private-key-out", str(tmp_path / "a.key"))
    (tmp_path / "b.key").write_text(base64.b64encode(os.urandom(32)).decode())

    with pytest.raises(CommandError):
        command("certify", "--trust-root-private-key", str(tmp_path / "b.key"))
    with pytest.raises(CommandError):
        command("create-trust-root", "--private-key-out", str(tmp_path / "c.key"))


@pytest.mark.django_db
def test_development_keys_are_refused_in_production(settings):
    settings.SIGNALSERVER_ENV = "production"
    with pytest.raises(CommandError):
        command("development")


# --- Unidentified 1:1 sends ----------------------------------------------------------------------


@pytest.fixture
def recipient():
    device = DeviceFactory()
    DeviceFactory(account=device.account, device_id=2)
    return device.account


def sealed(recipient, **extra):
    devices = [(d.device_id, d.registration_id) for d in recipient.devices.order_by("device_id")]
    return message_list(devices, type=6, content=b"sealed", **extra)


def send_sealed(client, recipient, key, destination=None, **headers):
    return client.put(
        f"/v1/messages/{destination or recipient.aci}",
        sealed(recipient),
        format="json",
        HTTP_UNIDENTIFIED_ACCESS_KEY=access_header(key),
        **headers,
    )


@pytest.mark.django_db
def test_a_sealed_send_with_the_right_key_is_delivered_without_any_sender(client, recipient):
    response = send_sealed(client, recipient, bytes(recipient.unidentified_access_key))

    assert response.status_code == 200
    assert response.json() == {"needsSync": False}
    rows = QueuedMessage.objects.filter(device__account=recipient)
    assert rows.count() == 2
    for row in rows:
        envelope = parse_envelope(row.open()[0])
        assert envelope.type == 6
        assert envelope.content == b"sealed"
        for field in ("source_service_id", "source_service_id_text", "source_device"):
            assert not envelope.HasField(field)
        assert envelope.destination_service_id == recipient.aci.bytes


@pytest.mark.django_db
def test_acknowledging_a_sealed_message_produces_no_receipt(client, client_for, recipient):
    send_sealed(client, recipient, bytes(recipient.unidentified_access_key))
    reader = client_for(recipient.devices.get(device_id=1))
    guid = reader.get("/v1/messages").json()["messages"][0]["guid"]

    assert reader.delete(f"/v1/messages/uuid/{guid}").status_code == 204
    assert QueuedMessage.objects.count() == 1  # the other device's copy; no receipt anywhere


@pytest.mark.django_db
def test_a_wrong_or_malformed_key_is_401(client, recipient):
    assert send_sealed(client, recipient, os.urandom(16)).status_code == 401
    response = client.put(
        f"/v1/messages/{recipient.aci}", sealed(recipient), format="json", HTTP_UNIDENTIFIED_ACCESS_KEY="not base64!"
    )
    assert response.status_code == 401
    assert send_sealed(client, recipient, os.urandom(15)).status_code == 401
    assert not QueuedMessage.objects.exists()


@pytest.mark.django_db
def test_an_unknown_or_pni_destination_is_401_not_404(client, recipient):
    key = bytes(recipient.unidentified_access_key)
    assert send_sealed(client, recipient, key, destination=uuid.uuid4()).status_code == 401
    assert send_sealed(client, recipient, key, destination=f"PNI:{recipient.pni}").status_code == 401


@pytest.mark.django_db
def test_unrestricted_access_accepts_any_key(client, recipient):
    recipient.unrestricted_unidentified_access = True
    recipient.save(update_fields=["unrestricted_unidentified_access"])

    assert send_sealed(client, recipient, os.urandom(16)).status_code == 200


@pytest.mark.django_db
def test_mixing_credentials_keys_and_group_tokens_is_400_and_a_malformed_token_alone_401(client, client_for, recipient):
    sender = DeviceFactory()
    key = bytes(recipient.unidentified_access_key)

    assert send_sealed(client_for(sender), recipient, key).status_code == 400
    assert send_sealed(client, recipient, key, HTTP_GROUP_SEND_TOKEN="AAAA").status_code == 400
    token_only = client.put(f"/v1/messages/{recipient.aci}", sealed(recipient), format="json", HTTP_GROUP_SEND_TOKEN="AAAA")
    assert token_only.status_code == 401


@pytest.mark.django_db
def test_a_sealed_send_must_be_of_type_unidentified_sender(client, recipient):
    devices = [(d.device_id, d.registration_id) for d in recipient.devices.order_by("device_id")]
    response = client.put(
        f"/v1/messages/{recipient.aci}",
        message_list(devices, type=1),
        format="json",
        HTTP_UNIDENTIFIED_ACCESS_KEY=access_header(bytes(recipient.unidentified_access_key)),
    )

    assert response.status_code == 400


@pytest.mark.django_db
def test_a_sealed_send_still_checks_the_device_list(client, recipient):
    response = client.put(
        f"/v1/messages/{recipient.aci}",
        message_list([(1, 0)], type=6),
        format="json",
        HTTP_UNIDENTIFIED_ACCESS_KEY=access_header(bytes(recipient.unidentified_access_key)),
    )

    assert response.status_code == 409
    assert response.json() == {"missingDevices": [2], "extraDevices": []}


@pytest.mark.django_db(transaction=True)
async def test_the_anonymous_socket_carries_sealed_sends(recipient_async):
    recipient, bob = recipient_async
    anonymous = socket_for()
    assert (await anonymous.connect())[0]
    bob_ws = socket_for(bob)
    assert (await bob_ws.connect())[0]
    await bob_ws.receive_from(timeout=2)  # queue empty

    body = json.dumps(message_list([(1, bob.registration_id)], type=6, content=b"over the socket")).encode()
    key = access_header(bytes(recipient.unidentified_access_key))
    await anonymous.send_to(
        bytes_data=request_frame("PUT", f"/v1/messages/{recipient.aci}", body=body, headers=[f"Unidentified-Access-Key:{key}"])
    )
    response = parse_frame(await anonymous.receive_from(timeout=3)).response
    assert response.status == 200

    _, envelope = await next_message(bob_ws)
    assert envelope.content == b"over the socket" and not envelope.HasField("source_service_id")
    await anonymous.disconnect()
    await bob_ws.disconnect()


@pytest.fixture
def recipient_async(db):
    device = DeviceFactory()
    return device.account, device


# --- Multi-recipient sends -----------------------------------------------------------------------


def mrm_payload(recipients, *, version=0x23, shared=None, excluded=()):
    """A Sealed Sender v2 SentMessage: recipients is [(service_id_bytes17, [(device, reg)], key48)]."""
    out = bytearray([version])
    out += _varint(len(recipients) + len(excluded))
    for service_id, devices, key_material in recipients:
        out += service_id if version == 0x23 else service_id[1:]
        for index, (device_id, registration_id) in enumerate(devices):
            more = 0x8000 if index < len(devices) - 1 else 0
            out += bytes([device_id]) + struct.pack(">H", more | registration_id)
        out += key_material
    for service_id in excluded:
        out += (service_id if version == 0x23 else service_id[1:]) + b"\x00"
    out += shared if shared is not None else os.urandom(32) + b"shared ciphertext" + os.urandom(16)
    return bytes(out)


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return out


def aci_bytes(account):
    return b"\x00" + account.aci.bytes


def xor_keys(accounts):
    combined = bytes(16)
    for account in accounts:
        combined = bytes(a ^ b for a, b in zip(combined, bytes(account.unidentified_access_key)))
    return combined


@pytest.fixture
def three_recipients():
    accounts = []
    for _ in range(3):
        primary = DeviceFactory()
        DeviceFactory(account=primary.account, device_id=2)
        accounts.append(primary.account)
    return accounts


def devices_of(account):
    return [(d.device_id, d.registration_id) for d in account.devices.order_by("device_id")]


def put_mrm(client, payload, key=None, query=""):
    headers = {"HTTP_UNIDENTIFIED_ACCESS_KEY": access_header(key)} if key is not None else {}
    return client.generic("PUT", f"/v1/messages/multi_recipient{query}", payload, content_type=MRM, **headers)


@pytest.mark.django_db
def test_a_multi_recipient_send_lands_the_right_body_in_each_of_six_queues(client, three_recipients):
    shared = os.urandom(32) + b"the shared ciphertext" + os.urandom(16)
    materials = {account.aci: os.urandom(48) for account in three_recipients}
    payload = mrm_payload(
        [(aci_bytes(a), devices_of(a), materials[a.aci]) for a in three_recipients], shared=shared
    )

    response = put_mrm(client, payload, xor_keys(three_recipients), "?ts=1700000000000")

    assert response.status_code == 200
    assert response.json() == {"uuids404": []}
    rows = QueuedMessage.objects.select_related("device")
    assert rows.count() == 6
    for row in rows:
        envelope = parse_envelope(row.open()[0])
        account_aci = row.device.account_id
        assert envelope.type == 6
        assert envelope.content == b"\x22" + materials[account_aci] + shared
        assert envelope.destination_service_id == account_aci.bytes
        assert envelope.client_timestamp == 1700000000000
        assert not envelope.HasField("source_service_id")


@pytest.mark.django_db
def test_the_aci_only_version_and_excluded_recipients_work(client, three_recipients):
    a, b, c = three_recipients
    payload = mrm_payload(
        [(aci_bytes(a), devices_of(a), os.urandom(48)), (aci_bytes(b), devices_of(b), os.urandom(48))],
        version=0x22,
        excluded=[aci_bytes(c)],
    )

    response = put_mrm(client, payload, xor_keys([a, b]))

    assert response.status_code == 200
    assert QueuedMessage.objects.count() == 4
    assert not QueuedMessage.objects.filter(device__account=c).exists()


@pytest.mark.django_db
def test_mismatched_devices_are_409_with_every_recipients_entry_and_nothing_is_queued(client, three_recipients):
    a, b, c = three_recipients
    payload = mrm_payload(
        [
            (aci_bytes(a), devices_of(a)[:1], os.urandom(48)),
            (aci_bytes(b), devices_of(b) + [(9, 1)], os.urandom(48)),
            (aci_bytes(c), [(1, 0x3FFF), devices_of(c)[1]], os.urandom(48)),
        ]
    )

    response = put_mrm(client, payload, xor_keys(three_recipients))

    assert response.status_code == 409
    assert response.json() == [
        {"uuid": str(a.aci), "devices": {"missingDevices": [2], "extraDevices": []}},
        {"uuid": str(b.aci), "devices": {"missingDevices": [], "extraDevices": [9]}},
    ]
    assert not QueuedMessage.objects.exists()


@pytest.mark.django_db
def test_stale_devices_are_410_with_the_list_body(client, three_recipients):
    a = three_recipients[0]
    payload = mrm_payload([(aci_bytes(a), [(1, 0x3FFF), devices_of(a)[1]], os.urandom(48))])

    response = put_mrm(client, payload, xor_keys([a]))

    assert response.status_code == 410
    assert response.json() == [{"uuid": str(a.aci), "devices": {"staleDevices": [1]}}]


@pytest.mark.django_db
def test_a_wrong_combined_key_is_401_and_unrestricted_recipients_contribute_nothing(client, three_recipients):
    a, b, _ = three_recipients
    payload = mrm_payload([(aci_bytes(a), devices_of(a), os.urandom(48)), (aci_bytes(b), devices_of(b), os.urandom(48))])

    assert put_mrm(client, payload, bytes(a.unidentified_access_key)).status_code == 401
    assert put_mrm(client, payload).status_code == 401
    b.unrestricted_unidentified_access = True
    b.save(update_fields=["unrestricted_unidentified_access"])
    assert put_mrm(client, payload, bytes(a.unidentified_access_key)).status_code == 200


@pytest.mark.django_db
def test_an_unknown_recipient_is_404_and_a_pni_recipient_401(client, three_recipients):
    a = three_recipients[0]
    unknown = mrm_payload([(b"\x00" + uuid.uuid4().bytes, [(1, 1)], os.urandom(48))])
    pni = mrm_payload([(b"\x01" + a.pni.bytes, devices_of(a), os.urandom(48))])

    assert put_mrm(client, unknown, os.urandom(16)).status_code == 404
    assert put_mrm(client, pni, xor_keys([a])).status_code == 401


@pytest.mark.django_db
def test_a_story_skips_unknown_recipients_and_needs_no_key(client, three_recipients):
    a = three_recipients[0]
    payload = mrm_payload(
        [(aci_bytes(a), devices_of(a), os.urandom(48)), (b"\x00" + uuid.uuid4().bytes, [(1, 1)], os.urandom(48))]
    )

    response = put_mrm(client, payload, query="?story=true")

    assert response.status_code == 200
    rows = list(QueuedMessage.objects.all())
    assert len(rows) == 2 and all(r.open()[1] and parse_envelope(r.open()[0]).story for r in rows)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x21\x01",
        b"\x23\x00" + os.urandom(48),  # no recipients
        b"\x23\x01" + b"\x02" + os.urandom(16),  # unknown service id type
        b"\x23\x01" + b"\x00" + os.urandom(16) + b"\x80\x00\x01",  # device id 128
        b"\x23\x05",  # truncated
    ],
)
def test_malformed_payloads_are_400(client, payload):
    assert put_mrm(client, payload, os.urandom(16)).status_code == 400


@pytest.mark.django_db
def test_a_device_listed_twice_is_400(client, three_recipients):
    a = three_recipients[0]
    payload = mrm_payload([(aci_bytes(a), [(1, 1), (1, 1)], os.urandom(48))])

    assert put_mrm(client, payload, xor_keys([a])).status_code == 400


@pytest.mark.django_db
def test_oversized_payloads_are_413(client, three_recipients):
    a = three_recipients[0]
    too_big_for_a_device = mrm_payload([(aci_bytes(a), devices_of(a), os.urandom(48))], shared=os.urandom(96 * 1024))
    too_big_a_body = b"\x23" + os.urandom(32 + 256 * 1024 + 5000 * 100)

    assert put_mrm(client, too_big_for_a_device, xor_keys([a])).status_code == 413
    assert put_mrm(client, too_big_a_body, os.urandom(16)).status_code == 413


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["?ts=-1", "?ts=abc", "?online=maybe"])
def test_bad_query_parameters_are_400(client, three_recipients, query):
    a = three_recipients[0]
    payload = mrm_payload([(aci_bytes(a), devices_of(a), os.urandom(48))])

    assert put_mrm(client, payload, xor_keys([a]), query).status_code == 400


@pytest.mark.django_db
def test_device_credentials_are_ignored_by_multi_recipient_sends(client_for, three_recipients):
    a = three_recipients[0]
    payload = mrm_payload([(aci_bytes(a), devices_of(a), os.urandom(48))])
    authenticated = client_for(DeviceFactory())

    assert put_mrm(authenticated, payload).status_code == 401
    assert put_mrm(authenticated, payload, xor_keys([a])).status_code == 200


@hsettings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_the_parser_accepts_or_refuses_any_bytes_without_crashing(data):
    try:
        message = parse_multi_recipient(data)
    except MalformedPayload:
        return
    for recipient in message.recipients:
        assert recipient.devices and len(recipient.key_material) == 48


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"\x00", b"\x01", b"\x02"]),
            st.lists(st.tuples(st.integers(0, 130), st.integers(0, 0xFFFF)), max_size=4),
            st.binary(min_size=0, max_size=50),
        ),
        max_size=4,
    ),
    st.sampled_from([0x22, 0x23, 0x24]),
    st.integers(0, 10),
)
@pytest.mark.django_db
def test_structured_garbage_through_the_route_is_never_a_server_error(client, records, version, extra_count):
    out = bytearray([version]) + _varint(len(records) + extra_count % 3)
    for kind, devices, tail in records:
        out += kind + os.urandom(16)
        for device_id, field in devices:
            out += bytes([device_id]) + struct.pack(">H", field)
        out += tail
    response = put_mrm(client, bytes(out), os.urandom(16))
    assert response.status_code in (400, 401, 404, 409, 410, 413)


@pytest.mark.django_db(transaction=True)
async def test_the_anonymous_socket_carries_multi_recipient_sends(recipient_async):
    recipient, device = recipient_async
    payload = mrm_payload([(aci_bytes(recipient), [(1, device.registration_id)], os.urandom(48))])
    anonymous = socket_for()
    assert (await anonymous.connect())[0]
    key = access_header(bytes(recipient.unidentified_access_key))

    await anonymous.send_to(
        bytes_data=request_frame(
            "PUT", "/v1/messages/multi_recipient?ts=5", body=payload, headers=[f"Unidentified-Access-Key:{key}", f"Content-Type:{MRM}"]
        )
    )

    response = parse_frame(await anonymous.receive_from(timeout=3)).response
    assert response.status == 200 and json.loads(response.body) == {"uuids404": []}
    rows = await sync_to_async(list)(QueuedMessage.objects.filter(device=device))
    assert len(rows) == 1 and parse_envelope(rows[0].open()[0]).client_timestamp == 5
    await anonymous.disconnect()
