"""Group send endorsements and tokens: sealed sends to group members without telling the server
who sends.

Signal does this with zkgroup credentials; we use a MAC with the same shape of use. When a full
member reads its group it gets one *endorsement* per full member: HMAC-SHA256 under a server key
of the member's service id and an expiration. To send to some of the members, a client XORs their
endorsements into a *token* (version ‖ expiration ‖ XOR) and sends it in `Group-Send-Token`. XOR
does not depend on order, so a token is a MAC over a recipient *set* and the expiration: the server
checks it against the exact recipients of the request and the clock: it learns who receives, as
for any send, but not who sends, and is not told the group (a set of recipients may still point
to one). A client can make tokens for any subset of the members it was endorsed for, and for
nothing else. A removed member's endorsements keep working until they expire (at most 49 hours),
as Signal's do; the remaining members get new ones on their next read.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from collections.abc import Iterable
from functools import cache

from signalserver.crypto import server_key
from signalserver.errors import Unauthorized
from signalserver.wire import ServiceId, b64decode, b64encode

TOKEN_VERSION = 0
ENDORSEMENT_BYTES = 32
TOKEN_BYTES = 1 + 8 + ENDORSEMENT_BYTES
SECONDS_PER_DAY = 86_400
# An expiration is the end of the next day, or of the day after when that leaves less than 25
# hours: always day-aligned (a finer expiration could tell members apart), 25 to 49 hours ahead.
MIN_LIFETIME_SECONDS = 25 * 3600
MAX_LIFETIME_SECONDS = 2 * SECONDS_PER_DAY + MIN_LIFETIME_SECONDS  # a token claiming more was not ours
PNI_PREFIX = b"\x01"  # Signal's binary service id: 16 bytes for an ACI, 0x01 ‖ 16 bytes for a PNI


class InvalidGroupSendToken(Unauthorized):
    """Malformed, forged, expired, or made for other recipients: all look the same (401)."""


def default_expiration(now: float) -> int:
    """The expiration of endorsements issued at `now` (epoch seconds)."""
    start_of_day = int(now) - int(now) % SECONDS_PER_DAY
    expiration = start_of_day + 2 * SECONDS_PER_DAY
    if expiration - now < MIN_LIFETIME_SECONDS:
        expiration += SECONDS_PER_DAY
    return expiration


def group_send_credentials(member_ids: list[str], caller: str, now: float | None = None) -> dict:
    """The endorsements of a group's full members (service-id strings) for a member reading the
    group, and a ready-made token for all of them but the caller, JSON-ready:
    `{"expiration": <epoch seconds>, "endorsements": [{"serviceId", "endorsement"}], "token"}`."""
    expiration = default_expiration(time.time() if now is None else now)
    suffix = expiration.to_bytes(8, "big")
    mac = _mac(_key())
    caller_id = _parse(caller)
    endorsements, others = [], 0
    for member in dict.fromkeys(_parse(text) for text in member_ids):
        value = mac(member[1] + suffix)
        endorsements.append({"serviceId": member[0], "endorsement": b64encode(value)})
        if member != caller_id:
            others ^= int.from_bytes(value, "big")
    token = token_bytes(expiration, others.to_bytes(ENDORSEMENT_BYTES, "big"))
    return {"expiration": expiration, "endorsements": endorsements, "token": b64encode(token)}


def endorsement(service_id: ServiceId, expiration: int) -> bytes:
    """One member's endorsement until `expiration`."""
    return _mac(_key())(_binary(service_id) + expiration.to_bytes(8, "big"))


def combine(endorsements: Iterable[bytes]) -> bytes:
    """The endorsement of a set of members: the XOR of theirs (what clients compute too)."""
    combined = 0
    for value in endorsements:
        combined ^= int.from_bytes(value, "big")
    return combined.to_bytes(ENDORSEMENT_BYTES, "big")


def token_bytes(expiration: int, combined: bytes) -> bytes:
    """A token: version ‖ expiration (8 bytes, big-endian seconds) ‖ combined endorsement."""
    return struct.pack(">BQ", TOKEN_VERSION, expiration) + combined


def verify_group_send_token(header: str, recipients: Iterable[ServiceId], now: float | None = None) -> None:
    """Raise InvalidGroupSendToken (401) unless the `Group-Send-Token` header is ours, unexpired,
    and made for exactly this set of recipients. A malformed value is a 401 too, like a malformed
    access key."""
    try:
        raw = b64decode(header)
    except ValueError:
        raise InvalidGroupSendToken() from None
    if len(raw) != TOKEN_BYTES or raw[0] != TOKEN_VERSION:
        raise InvalidGroupSendToken()
    (expiration,) = struct.unpack_from(">Q", raw, 1)
    now = time.time() if now is None else now
    if not now < expiration <= now + MAX_LIFETIME_SECONDS or expiration % SECONDS_PER_DAY:
        raise InvalidGroupSendToken()
    members = set(recipients)
    if not members:
        raise InvalidGroupSendToken()  # the empty set's MAC is all zeros
    mac, suffix = _mac(_key()), expiration.to_bytes(8, "big")
    expected = combine(mac(_binary(member) + suffix) for member in members)
    if not hmac.compare_digest(expected, raw[9:]):
        raise InvalidGroupSendToken()


def _key() -> bytes:
    return server_key("group send token")


def _parse(text: str) -> tuple[str, bytes]:
    """(canonical text, binary form) of a service id; the canonical form is parsed without
    `uuid.UUID`, which would be most of the cost of endorsing a large group."""
    is_pni = text.startswith("PNI:")
    digits = text[4:] if is_pni else text
    if len(digits) == 36 and digits[8] == digits[13] == digits[18] == digits[23] == "-":
        try:
            raw = bytes.fromhex(digits.replace("-", ""))
        except ValueError:
            raw = b""
        if len(raw) == 16:  # fromhex skips spaces: a 16-byte result means 32 hex digits
            return ("PNI:" if is_pni else "") + digits.lower(), (PNI_PREFIX if is_pni else b"") + raw
    service_id = ServiceId.parse(text)
    return str(service_id), _binary(service_id)


def _binary(service_id: ServiceId) -> bytes:
    return PNI_PREFIX + service_id.uuid.bytes if service_id.is_pni else service_id.uuid.bytes


@cache
def _mac(key: bytes):
    """HMAC-SHA256 under `key` as a function of the message, from a copy of an HMAC that has
    absorbed the key once: a group read endorses up to a thousand members."""
    keyed = hmac.new(key, digestmod=hashlib.sha256)

    def mac(message: bytes) -> bytes:
        h = keyed.copy()
        h.update(message)
        return h.digest()

    return mac
