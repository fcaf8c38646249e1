"""Building and reading Envelopes: both the binary and the legacy text service-id fields."""

from __future__ import annotations

import uuid

from signalserver.proto.envelope_pb2 import Envelope
from signalserver.wire import ServiceId

CIPHERTEXT = Envelope.CIPHERTEXT
PREKEY_BUNDLE = Envelope.PREKEY_BUNDLE
SERVER_DELIVERY_RECEIPT = Envelope.SERVER_DELIVERY_RECEIPT
UNIDENTIFIED_SENDER = Envelope.UNIDENTIFIED_SENDER
PLAINTEXT_CONTENT = Envelope.PLAINTEXT_CONTENT
# What a client may send (5 is the server's own receipt; 0, 2, 4, 7 are not message types).
CLIENT_TYPES = frozenset({CIPHERTEXT, PREKEY_BUNDLE, UNIDENTIFIED_SENDER, PLAINTEXT_CONTENT})


def service_id_bytes(service_id: ServiceId) -> bytes:
    """The compact binary form: 16 bytes for an ACI, type byte 0x01 + 16 bytes for a PNI."""
    return b"\x01" + service_id.uuid.bytes if service_id.is_pni else service_id.uuid.bytes


def parse_service_id_bytes(data: bytes) -> ServiceId | None:
    if len(data) == 16:
        return ServiceId(uuid.UUID(bytes=data))
    if len(data) == 17 and data[0] in (0, 1):
        return ServiceId(uuid.UUID(bytes=data[1:]), is_pni=data[0] == 1)
    return None


def build_envelope(
    *,
    type: int,
    guid: uuid.UUID,
    destination: ServiceId,
    content: bytes,
    client_timestamp: int,
    server_timestamp: int,
    urgent: bool,
    story: bool = False,
    source: ServiceId | None = None,
    source_device: int | None = None,
    report_spam_token: bytes | None = None,
) -> bytes:
    """A serialized Envelope as a client receives it (never with the internal `ephemeral` field)."""
    envelope = Envelope(
        type=type,
        client_timestamp=client_timestamp,
        server_timestamp=server_timestamp,
        urgent=urgent,
        server_guid=guid.bytes,
        server_guid_text=str(guid),
        destination_service_id=service_id_bytes(destination),
        destination_service_id_text=str(destination),
    )
    if content:  # server receipts carry none
        envelope.content = content
    if story:
        envelope.story = True
    if source is not None:
        envelope.source_service_id = service_id_bytes(source)
        envelope.source_service_id_text = str(source)
        envelope.source_device = source_device
    if report_spam_token:
        envelope.report_spam_token = report_spam_token
    return envelope.SerializeToString()


def parse_envelope(data: bytes) -> Envelope:
    envelope = Envelope()
    envelope.ParseFromString(data)
    return envelope


def envelope_source(envelope: Envelope) -> ServiceId | None:
    if envelope.HasField("source_service_id"):
        return parse_service_id_bytes(envelope.source_service_id)
    return None


def envelope_destination(envelope: Envelope) -> ServiceId | None:
    if envelope.HasField("destination_service_id"):
        return parse_service_id_bytes(envelope.destination_service_id)
    return None
