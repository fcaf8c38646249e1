"""Real keys for tests, made and signed with an independent XEdDSA implementation (`xeddsa`).

Identity keys are Curve25519 keys derived from an Ed25519 seed: the published key is the Montgomery
form (0x05 || u) and signatures carry the Edwards sign bit in their top bit, as libsignal's do.
"""

import os
from dataclasses import dataclass, field

import xeddsa

from signalserver.wire import b64encode, b64encode_unpadded


@dataclass
class IdentityKeyPair:
    seed: bytes = field(default_factory=lambda: os.urandom(32))

    @property
    def public_key(self) -> bytes:
        return b"\x05" + xeddsa.ed25519_pub_to_curve25519_pub(xeddsa.seed_to_ed25519_pub(self.seed))

    @property
    def private_key(self) -> bytes:
        """The Curve25519 private scalar (for X25519 agreement)."""
        return xeddsa.seed_to_priv(self.seed)

    def sign(self, message: bytes) -> bytes:
        signature = xeddsa.ed25519_seed_sign(self.seed, message)
        sign_bit = xeddsa.seed_to_ed25519_pub(self.seed)[31] & 0x80
        return signature[:63] + bytes([signature[63] | sign_bit])


def ec_public_key() -> bytes:
    return b"\x05" + xeddsa.priv_to_curve25519_pub(xeddsa.seed_to_priv(os.urandom(32)))


def kem_public_key() -> bytes:
    """Kyber1024 public key bytes of the right shape (the server never does KEM arithmetic)."""
    return b"\x08" + os.urandom(1568)


def signed_ec_prekey(identity: IdentityKeyPair, key_id: int = 1) -> dict:
    public = ec_public_key()
    return {"keyId": key_id, "publicKey": b64encode(public), "signature": b64encode_unpadded(identity.sign(public))}


def signed_kem_prekey(identity: IdentityKeyPair, key_id: int = 1) -> dict:
    public = kem_public_key()
    return {"keyId": key_id, "publicKey": b64encode(public), "signature": b64encode_unpadded(identity.sign(public))}
