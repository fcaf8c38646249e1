"""The Sealed Sender v2 multi-recipient payload: plain byte parsing, no crypto.

Layout: version (0x22: 16-byte ACI recipients; 0x23: 17-byte service ids), a varint recipient
count, the recipient records, the sender's 32-byte ephemeral key and the shared ciphertext. A record
is a recipient, then either 3 bytes per device (device id; a 16-bit field whose bit 15 says another
device follows and whose low 14 bits are the registration id) and 48 bytes of key material, or a
single 0x00 byte marking a recipient deliberately excluded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from signalserver.errors import BadRequest
from signalserver.wire import ServiceId

VERSION_ACI = 0x22
VERSION_SERVICE_ID = 0x23
DELIVERED_VERSION = 0x22
MAX_RECIPIENTS = 5000
KEY_MATERIAL_BYTES = 48  # C (32) and AT (16)
EPHEMERAL_KEY_BYTES = 32
TAG_BYTES = 16
# Signal's reader bound: 32 B + 256 KiB + 100 B per recipient.
MAX_BODY_BYTES = 32 + 256 * 1024 + MAX_RECIPIENTS * 100


class MalformedPayload(BadRequest):
    message = "Malformed multi-recipient payload"


@dataclass(slots=True)
class Recipient:
    service_id: ServiceId
    devices: list[tuple[int, int]]  # (device id, registration id)
    key_material: bytes


@dataclass(frozen=True, slots=True)
class MultiRecipientMessage:
    recipients: list[Recipient]  # in order of first appearance, excluded ones left out
    excluded: list[ServiceId]
    shared: bytes  # ephemeral key ‖ shared ciphertext, identical for every recipient

    def payload_for(self, recipient: Recipient) -> bytes:
        """What each device of `recipient` receives (libsignal's ReceivedMessage)."""
        return bytes([DELIVERED_VERSION]) + recipient.key_material + self.shared


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.offset = 0

    def take(self, count: int) -> bytes:
        end = self.offset + count
        if end > len(self.data):
            raise MalformedPayload("truncated")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        value = 0
        for shift in range(0, 35, 7):  # counts up to 2^35 − 1: far more than MAX_RECIPIENTS
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise MalformedPayload("varint too long")


def parse_multi_recipient(data: bytes) -> MultiRecipientMessage:
    """Parse and check a multi-recipient payload; MalformedPayload (400) on anything wrong."""
    reader = _Reader(data)
    version = reader.byte()
    if version not in (VERSION_ACI, VERSION_SERVICE_ID):
        raise MalformedPayload("unsupported version")
    count = reader.varint()
    if count > MAX_RECIPIENTS:
        raise MalformedPayload("too many recipients")
    recipients: dict[ServiceId, Recipient] = {}
    excluded: dict[ServiceId, None] = {}
    for _ in range(count):
        service_id = _service_id(reader, version)
        devices = _devices(reader)
        if devices is None:
            if service_id in recipients:
                raise MalformedPayload("a recipient is both excluded and addressed")
            excluded[service_id] = None
            continue
        if service_id in excluded:
            raise MalformedPayload("a recipient is both excluded and addressed")
        key_material = reader.take(KEY_MATERIAL_BYTES)
        if service_id in recipients:
            # Repeated records of one recipient merge their devices (the first key material stands).
            recipients[service_id].devices.extend(devices)
        else:
            recipients[service_id] = Recipient(service_id, devices, key_material)
    for recipient in recipients.values():
        ids = [device_id for device_id, _ in recipient.devices]
        if len(ids) != len(set(ids)):
            raise MalformedPayload("a device is listed twice")
    shared = data[reader.offset :]
    if len(shared) < EPHEMERAL_KEY_BYTES + TAG_BYTES:
        raise MalformedPayload("missing ephemeral key or ciphertext")
    return MultiRecipientMessage(list(recipients.values()), list(excluded), shared)


def _service_id(reader: _Reader, version: int) -> ServiceId:
    if version == VERSION_ACI:
        return ServiceId(uuid.UUID(bytes=reader.take(16)))
    kind = reader.byte()
    if kind not in (0, 1):
        raise MalformedPayload("unknown service id type")
    return ServiceId(uuid.UUID(bytes=reader.take(16)), is_pni=kind == 1)


def _devices(reader: _Reader) -> list[tuple[int, int]] | None:
    devices = []
    while True:
        device_id = reader.byte()
        if device_id == 0 and not devices:
            return None  # excluded recipient
        if not 1 <= device_id <= 127:
            raise MalformedPayload("invalid device id")
        field = int.from_bytes(reader.take(2), "big")
        devices.append((device_id, field & 0x3FFF))
        if not field & 0x8000:
            return devices
