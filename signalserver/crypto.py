"""XEdDSA signature verification over libsignal-serialized Curve25519 keys (spec §0.3)."""

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

P = 2**255 - 19
EC_KEY_TYPE = 0x05


def montgomery_to_edwards(u_bytes: bytes, sign_bit: int) -> bytes | None:
    """The Ed25519 public key for Montgomery u with the given sign, or None when u = −1."""
    u = int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)
    if (u + 1) % P == 0:
        return None
    y = (u - 1) * pow(u + 1, P - 2, P) % P
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
