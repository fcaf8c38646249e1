"""Every state change of keys, and the checks every key upload shares (spec §0.3, §3)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from keys.models import (
    EC_KEY_LENGTH,
    EC_KEY_TYPE,
    KEM_KEY_LENGTH,
    KEM_KEY_TYPE,
    SIGNATURE_LENGTH,
    Identity,
    IdentityKey,
    LastResortKey,
    SignedPreKey,
)
from signalserver.crypto import verify_xeddsa
from signalserver.errors import InvalidSignature


@dataclass(frozen=True, slots=True)
class SignedPreKeyData:
    """A signed prekey as uploaded (EC signed prekey or KEM prekey): not yet stored."""

    key_id: int
    public_key: bytes
    signature: bytes


def is_ec_public_key(data: bytes) -> bool:
    """A libsignal Curve25519 public key: exactly 33 bytes, type 0x05 (no trailing bytes tolerated)."""
    return len(data) == EC_KEY_LENGTH and data[0] == EC_KEY_TYPE


def is_kem_public_key(data: bytes) -> bool:
    """A libsignal Kyber1024 public key: exactly 1569 bytes, type 0x08."""
    return len(data) == KEM_KEY_LENGTH and data[0] == KEM_KEY_TYPE


def verify_signed_prekeys(identity_key: bytes, prekeys: Iterable[SignedPreKeyData]) -> None:
    """Raise InvalidSignature (422) unless the identity key signed every prekey's serialized key."""
    for prekey in prekeys:
        # The signature covers the full serialized key, type byte included (spec §0.3).
        if len(prekey.signature) != SIGNATURE_LENGTH or not verify_xeddsa(
            identity_key, prekey.public_key, prekey.signature
        ):
            raise InvalidSignature()


@transaction.atomic
def set_identity_keys(*, account, aci_identity_key: bytes, pni_identity_key: bytes | None) -> None:
    """Replace the account's identity keys; no PNI key removes the stored one."""
    IdentityKey.objects.bulk_create(
        [
            IdentityKey(account=account, identity=identity, public_key=key)
            for identity, key in ((Identity.ACI, aci_identity_key), (Identity.PNI, pni_identity_key))
            if key is not None
        ],
        update_conflicts=True,
        unique_fields=["account", "identity"],
        update_fields=["public_key"],
    )
    if pni_identity_key is None:
        IdentityKey.objects.filter(account=account, identity=Identity.PNI).delete()


@transaction.atomic
def store_repeated_use_keys(
    *, device, identity: Identity, signed_prekey: SignedPreKeyData, last_resort_key: SignedPreKeyData
) -> None:
    """Store (or replace) a device's signed EC prekey and Kyber last-resort key for one identity.

    Signatures must have been checked with `verify_signed_prekeys` before anything is written.
    """
    for model, key in ((SignedPreKey, signed_prekey), (LastResortKey, last_resort_key)):
        model.objects.bulk_create(
            [
                model(
                    device=device,
                    identity=identity,
                    key_id=key.key_id,
                    public_key=key.public_key,
                    signature=key.signature,
                )
            ],
            update_conflicts=True,
            unique_fields=["device", "identity"],
            update_fields=["key_id", "public_key", "signature"],
        )
