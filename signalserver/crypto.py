"""XEdDSA signature verification over libsignal-serialized Curve25519 keys."""

from functools import cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

P = 2**255 - 19
EC_KEY_TYPE = 0x05


def montgomery_to_edwards(u_bytes: bytes, sign_bit: int) -> bytes | None:
    """The Ed25519 public key for Montgomery u with the given sign, or None when u = −1."""
    u = int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)
    if (u + 1) % P == 0:
        return None
    # The inverse by the extended Euclidean algorithm (pow with exponent -1): a tenth of the time of
    # Fermat's u^(P-2), and every registration and key upload checks its signatures with it.
    y = (u - 1) * pow(u + 1, -1, P) % P
    encoded = bytearray(y.to_bytes(32, "little"))
    encoded[31] = (encoded[31] & 0x7F) | (sign_bit << 7)
    return bytes(encoded)


def verify_xeddsa(identity_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is an XEdDSA signature of `message` by the 33-byte identity key."""
    if len(identity_key) != 33 or identity_key[0] != EC_KEY_TYPE or len(signature) != 64:
        return False
    sign_bit = signature[63] >> 7
    edwards = montgomery_to_edwards(identity_key[1:], sign_bit)
    if edwards is None:
        return False
    cleared = signature[:63] + bytes([signature[63] & 0x7F])
    try:
        Ed25519PublicKey.from_public_bytes(edwards).verify(cleared, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def edwards_to_montgomery(edwards: bytes) -> bytes:
    """The Montgomery u (32 bytes) of an Ed25519 public key: u = (1 + y) / (1 − y)."""
    y = int.from_bytes(edwards, "little") & ((1 << 255) - 1)
    denominator = (1 - y) % P
    u = (1 + y) * (pow(denominator, -1, P) if denominator else 0) % P  # y = 1 (no inverse) maps to 0, as before
    return u.to_bytes(32, "little")


class SigningKey:
    """A server-held Curve25519 identity (a 32-byte Ed25519 seed) that makes XEdDSA-compatible
    signatures: its public key is published in Montgomery form and each Ed25519 signature carries
    the Edwards sign bit in its top bit, so clients verify it as XEdDSA."""

    def __init__(self, seed: bytes):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.seed = seed
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        edwards = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._sign_bit = edwards[31] & 0x80
        self.public_key = bytes([EC_KEY_TYPE]) + edwards_to_montgomery(edwards)

    @classmethod
    def generate(cls) -> "SigningKey":
        import os

        return cls(os.urandom(32))

    def sign(self, message: bytes) -> bytes:
        signature = self._key.sign(message)
        # An Ed25519 scalar is below 2^253, so the top bit is free to carry the sign.
        return signature[:63] + bytes([signature[63] | self._sign_bit])


def server_key(purpose: str, length: int = 32) -> bytes:
    """The server's key for one purpose (link tokens, bearer tokens, report tokens, TOTP secrets,
    rate-limit keys), derived from SECRET_KEY with HKDF-SHA256 and info `signalserver <purpose>`:
    one secret to keep, a separate key per use. Rotating SECRET_KEY changes every one of them."""
    from django.conf import settings

    return _derive(settings.SECRET_KEY, purpose, length)


@cache
def _derive(secret: str, purpose: str, length: int) -> bytes:
    info = f"signalserver {purpose}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret.encode())
