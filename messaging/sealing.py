"""Queued envelopes sealed at rest (docs/privacy.md, "Queued messages").

A queue row holds its envelope sealed with AES-256-GCM-SIV under a queue key that is not in the
database: a dump, a backup or a page of PostgreSQL read after the row was deleted shows no field
of it. GCM-SIV because its nonces are random: repeating one (about 2^48 messages a key) leaks only
that two sealed plaintexts are equal, where plain GCM would lose the key's integrity after 2^32.

Keys come from `QUEUE_KEYS` (environment) or `QUEUE_KEYS_FILE`: entries `id:base64` of 32 random
bytes, newest first. The first seals; every one listed opens, so a key rotates without losing a
queued message: add a new key in front, restart, run `manage.py queue_keys rotate`, then drop the
old entry. The development run makes its own key file (`var/queue.keys`) when neither is set.

The sealed plaintext is a flags byte (bit 0: a story) and the serialized envelope; the associated
data is the queue's device row, so a row copied into another device's queue does not open. The
row's guid column is a keyed hash of the envelope's guid (for `DELETE /v1/messages/uuid/{guid}`),
under a key derived from the same queue key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from signalserver.randomness import random_bytes

logger = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
MAX_KEY_ID = 32767  # a smallint column
STORY_FLAG = 1
_DEVICE = 8  # bytes of the device row id in the associated data


class UnreadableEnvelope(Exception):
    """A sealed row whose key is not configured, or that was altered."""


@dataclass(frozen=True, slots=True)
class QueueKey:
    id: int
    aead: AESGCMSIV
    guid_key: bytes

    @classmethod
    def from_secret(cls, key_id: int, secret: bytes) -> QueueKey:
        # Two keys from one secret: the AEAD's and the guid hash's, each for one use only.
        aead = hashlib.blake2b(secret, digest_size=KEY_BYTES, person=b"queue envelope").digest()
        guid_key = hashlib.blake2b(secret, digest_size=KEY_BYTES, person=b"queue guid").digest()
        return cls(id=key_id, aead=AESGCMSIV(aead), guid_key=guid_key)


@dataclass(frozen=True, slots=True)
class QueueKeys:
    current: QueueKey
    by_id: dict[int, QueueKey]


def parse_keys(text: str, *, source: str) -> list[tuple[int, bytes]]:
    """(id, secret) pairs of `id:base64` entries separated by commas or lines; `#` starts a comment."""
    entries = []
    for line in text.splitlines():
        for entry in line.split("#", 1)[0].split(","):
            if not (entry := entry.strip()):
                continue
            key_id, _, encoded = entry.partition(":")
            try:
                number, secret = int(key_id), base64.b64decode(encoded, validate=True)
            except (ValueError, binascii.Error):
                raise ImproperlyConfigured(f"{source}: entries are id:base64") from None
            if not 1 <= number <= MAX_KEY_ID or len(secret) != KEY_BYTES:
                raise ImproperlyConfigured(f"{source}: ids are 1..{MAX_KEY_ID}, keys {KEY_BYTES} bytes")
            entries.append((number, secret))
    if len({number for number, _ in entries}) != len(entries):
        raise ImproperlyConfigured(f"{source}: a key id is listed twice")
    return entries


def new_key_entry(after: list[int]) -> str:
    """A fresh `id:base64` entry whose id follows every id in `after`."""
    number = max(after, default=0) + 1
    if number > MAX_KEY_ID:
        raise ImproperlyConfigured("no key id left; renumber the keys after a rotation")
    return f"{number}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def configured_entries() -> list[tuple[int, bytes]]:
    """The configured (id, secret) pairs, newest first; on a development run without any, a
    key file of its own."""
    if settings.QUEUE_KEYS:
        return parse_keys(settings.QUEUE_KEYS, source="QUEUE_KEYS")
    path = settings.QUEUE_KEYS_FILE
    if not path:
        raise ImproperlyConfigured("set QUEUE_KEYS or QUEUE_KEYS_FILE (docs/deployment.md, queue keys)")
    path = Path(path)
    if not path.exists() and not settings.PRODUCTION:
        _create_key_file(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ImproperlyConfigured(f"QUEUE_KEYS_FILE cannot be read: {error.strerror}") from None
    entries = parse_keys(text, source="QUEUE_KEYS_FILE")
    if not entries:
        raise ImproperlyConfigured("QUEUE_KEYS_FILE holds no key")
    return entries


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process of this run made it first
    with os.fdopen(descriptor, "w") as file:
        file.write("# Queue keys of the development run (docs/privacy.md): newest first.\n")
        file.write(new_key_entry([]) + "\n")
    logger.info("made a queue key file for the development run")


def load_keys(entries: list[tuple[int, bytes]]) -> QueueKeys:
    keys = [QueueKey.from_secret(number, secret) for number, secret in entries]
    return QueueKeys(current=keys[0], by_id={key.id: key for key in keys})


@cache
def queue_keys() -> QueueKeys:
    return load_keys(configured_entries())


def forget_keys() -> None:
    """Read the keys again on next use (tests, after the configuration changed)."""
    queue_keys.cache_clear()


def seal(envelope: bytes, *, story: bool, device_pk: int) -> tuple[int, bytes]:
    """(key id, sealed bytes) of an envelope for one device's queue."""
    key = queue_keys().current
    nonce = random_bytes(NONCE_BYTES)
    flags = b"\x01" if story else b"\x00"
    return key.id, nonce + key.aead.encrypt(nonce, flags + envelope, device_pk.to_bytes(_DEVICE, "big"))


def unseal(key_id: int, sealed: bytes, *, device_pk: int, keys: QueueKeys | None = None) -> tuple[bytes, bool]:
    """(envelope, story) of a sealed row; UnreadableEnvelope when its key is unknown or it was altered."""
    key = (keys or queue_keys()).by_id.get(key_id)
    if key is None:
        raise UnreadableEnvelope(f"queue key {key_id} is not configured")
    sealed = bytes(sealed)
    try:
        plain = key.aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], device_pk.to_bytes(_DEVICE, "big"))
    except (InvalidTag, ValueError):
        raise UnreadableEnvelope("a sealed envelope does not open") from None
    return plain[1:], bool(plain[0] & STORY_FLAG)


def guid_tag(guid: uuid.UUID, key: QueueKey | None = None) -> bytes:
    """The guid column's value for an envelope guid (under the current key unless `key`)."""
    key = key or queue_keys().current
    return hashlib.blake2b(guid.bytes, key=key.guid_key, digest_size=16).digest()


def guid_tags(guid: uuid.UUID) -> list[bytes]:
    """The guid column's possible values under every configured key (rows not yet rotated)."""
    return [guid_tag(guid, key) for key in queue_keys().by_id.values()]
