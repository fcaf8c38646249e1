"""Every state change of keys, and the checks every key upload shares (spec §0.3, §3)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, transaction

from accounts.models import MAX_DEVICE_ID, Account, Device
from accounts.selectors import readable_account
from keys.models import (
    EC_KEY_LENGTH,
    EC_KEY_TYPE,
    KEM_KEY_LENGTH,
    KEM_KEY_TYPE,
    SIGNATURE_LENGTH,
    Identity,
    IdentityKey,
    KemPreKey,
    LastResortKey,
    OneTimePreKey,
    SignedPreKey,
)
from signalserver import ratelimit
from signalserver.crypto import verify_xeddsa
from signalserver.errors import BadRequest, InvalidSignature, NotFound, Unauthorized, UnprocessableEntity
from signalserver.wire import ServiceId


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


# --- Uploads --------------------------------------------------------------------------------------

MAX_KEYS_PER_UPLOAD = 100


@dataclass(frozen=True, slots=True)
class PreKeyData:
    """An EC one-time prekey as uploaded."""

    key_id: int
    public_key: bytes


def identity_key_of(account, identity: Identity) -> bytes | None:
    key = IdentityKey.objects.filter(account=account, identity=identity).values_list("public_key", flat=True).first()
    return bytes(key) if key is not None else None


def upload_keys(
    *,
    account,
    device,
    identity: Identity,
    pre_keys: list[PreKeyData] | None = None,
    signed_prekey: SignedPreKeyData | None = None,
    pq_pre_keys: list[SignedPreKeyData] | None = None,
    pq_last_resort_prekey: SignedPreKeyData | None = None,
) -> None:
    """`PUT /v2/keys` (spec §3.2): a non-empty list replaces that pool, present repeated-use keys
    replace theirs; every signature is checked first, so a bad one stores nothing (422)."""
    _require_identity(account, identity)
    for keys in (pre_keys, pq_pre_keys):
        if keys and len(keys) > MAX_KEYS_PER_UPLOAD:
            raise UnprocessableEntity(f"at most {MAX_KEYS_PER_UPLOAD} keys per list")
    signed = [key for key in (signed_prekey, pq_last_resort_prekey) if key is not None] + list(pq_pre_keys or [])
    if signed:
        verify_signed_prekeys(identity_key_of(account, identity) or b"", signed)
    with transaction.atomic():
        if pre_keys:
            _replace_pool(OneTimePreKey, device, identity, [OneTimePreKey(key_id=k.key_id, public_key=k.public_key) for k in pre_keys])
        if pq_pre_keys:
            _replace_pool(
                KemPreKey,
                device,
                identity,
                [KemPreKey(key_id=k.key_id, public_key=k.public_key, signature=k.signature) for k in pq_pre_keys],
            )
        for model, key in ((SignedPreKey, signed_prekey), (LastResortKey, pq_last_resort_prekey)):
            if key is not None:
                _store_repeated_use_key(model, device, identity, key)


def _require_identity(account, identity: Identity) -> None:
    if identity == Identity.PNI and account.pni is None:
        raise BadRequest("the account has no phone number identity")


def _replace_pool(model, device, identity: Identity, rows: list) -> None:
    if len({row.key_id for row in rows}) != len(rows):
        raise UnprocessableEntity("duplicate key ids")
    model.objects.filter(device=device, identity=identity).delete()
    for row in rows:
        row.device, row.identity = device, identity
    model.objects.bulk_create(rows)


def _store_repeated_use_key(model, device, identity: Identity, key: SignedPreKeyData) -> None:
    model.objects.bulk_create(
        [model(device=device, identity=identity, key_id=key.key_id, public_key=key.public_key, signature=key.signature)],
        update_conflicts=True,
        unique_fields=["device", "identity"],
        update_fields=["key_id", "public_key", "signature"],
    )


def set_signed_prekey(*, account, device, identity: Identity, signed_prekey: SignedPreKeyData) -> None:
    """`PUT /v2/keys/signed` (retired by Signal, still called by old clients)."""
    upload_keys(account=account, device=device, identity=identity, signed_prekey=signed_prekey)


def count_one_time_keys(*, account, device, identity: Identity) -> tuple[int, int]:
    """(EC one-time keys left, Kyber one-time keys left) for the device and identity."""
    _require_identity(account, identity)
    return (
        OneTimePreKey.objects.filter(device=device, identity=identity).count(),
        KemPreKey.objects.filter(device=device, identity=identity).count(),
    )


def repeated_use_keys_match(*, account, device, identity: Identity, digest: bytes) -> bool:
    """`POST /v2/keys/check`: does the client's digest match the stored identity key, signed
    prekey and last-resort key? False when any of them is missing."""
    _require_identity(account, identity)
    identity_key = identity_key_of(account, identity)
    signed = SignedPreKey.objects.filter(device=device, identity=identity).first()
    last_resort = LastResortKey.objects.filter(device=device, identity=identity).first()
    if identity_key is None or signed is None or last_resort is None:
        return False
    expected = hashlib.sha256(
        identity_key
        + signed.key_id.to_bytes(8, "big")
        + bytes(signed.public_key)
        + last_resort.key_id.to_bytes(8, "big")
        + bytes(last_resort.public_key)
    ).digest()
    return hmac.compare_digest(expected, digest)


# --- Fetching bundles (spec §3.3) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceBundle:
    device_id: int
    registration_id: int
    signed_prekey: SignedPreKeyData
    pre_key: PreKeyData | None
    pq_pre_key: SignedPreKeyData


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    identity_key: bytes
    devices: list[DeviceBundle]


def fetch_prekey_bundle(
    *, caller, access_key: bytes | None, target: ServiceId, device_selector: str, group_send_token: str | None = None
) -> PreKeyBundle:
    """The one call site of every prekey fetch: authorise, rate limit, then claim one-time keys.

    `caller` is the authenticated device (or None); anonymous callers need the target's
    unidentified access key, and get 401 wherever an authenticated caller would get 404, or a
    group send token for the target, which names it (404 as for a caller).
    """
    if device_selector != "*" and not (device_selector.isascii() and device_selector.isdigit()):
        raise UnprocessableEntity("deviceId must be a number or *")
    not_found = NotFound if caller is not None or group_send_token is not None else Unauthorized
    account = readable_account(caller=caller, access_key=access_key, target=target, group_send_token=group_send_token)
    devices = Device.objects.filter(account=account).order_by("device_id")
    if device_selector != "*":
        wanted = int(device_selector)
        devices = devices.filter(device_id=wanted) if wanted <= MAX_DEVICE_ID else devices.none()
    devices = list(devices)
    if not devices:
        raise not_found()
    if caller is not None:
        _check_prekey_fetch_rate(caller, target, device_selector, devices)
    identity = Identity.PNI if target.is_pni else Identity.ACI
    identity_key = identity_key_of(account, identity)
    bundles = [bundle for device in devices if (bundle := _claim_device_keys(device, identity)) is not None]
    if identity_key is None or not bundles:
        raise not_found()
    return PreKeyBundle(identity_key=identity_key, devices=bundles)


def _check_prekey_fetch_rate(caller, target: ServiceId, device_selector: str, devices) -> None:
    """The `prekeys` limiter (spec §3.3), keyed by the caller's device and the target device."""
    registration = str(devices[0].registration_id) if device_selector != "*" else "*"
    key = ratelimit.pair_key(f"{caller.account.aci}.{caller.device.device_id}", f"{target.uuid}.{device_selector}.{registration}")
    ratelimit.check("prekeys", key, aci=caller.account.aci)


def _claim_device_keys(device, identity: Identity) -> DeviceBundle | None:
    signed = SignedPreKey.objects.filter(device=device, identity=identity).first()
    if signed is None:
        return None
    pq = _take_one_time_key(KemPreKey, device.pk, identity, signed=True)
    if pq is None:
        last_resort = LastResortKey.objects.filter(device=device, identity=identity).first()
        if last_resort is None:
            return None
        pq = SignedPreKeyData(last_resort.key_id, bytes(last_resort.public_key), bytes(last_resort.signature))
    ec = _take_one_time_key(OneTimePreKey, device.pk, identity, signed=False)
    return DeviceBundle(
        device_id=device.device_id,
        registration_id=device.pni_registration_id if identity == Identity.PNI else device.registration_id,
        signed_prekey=SignedPreKeyData(signed.key_id, bytes(signed.public_key), bytes(signed.signature)),
        pre_key=ec,
        pq_pre_key=pq,
    )


def _take_one_time_key(model, device_pk: int, identity: Identity, *, signed: bool):
    """Atomically remove and return the device's one-time key with the lowest id, or None.

    PostgreSQL: one DELETE … RETURNING whose inner SELECT skips rows another fetcher has locked,
    so concurrent fetchers never get the same key and never wait for each other. Elsewhere
    (SQLite serialises writers): select the lowest, delete it by id, retry if someone else won.
    """
    table = connection.ops.quote_name(model._meta.db_table)
    columns = "key_id, public_key" + (", signature" if signed else "")
    if connection.vendor == "postgresql":
        sql = (
            f"DELETE FROM {table} WHERE id = (SELECT id FROM {table} WHERE device_id = %s AND identity = %s "
            f"ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING {columns}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [device_pk, identity])
            row = cursor.fetchone()
    else:
        row = None
        while True:
            candidate = (
                model.objects.filter(device_id=device_pk, identity=identity).order_by("key_id").values_list("id", *columns.split(", ")).first()
            )
            if candidate is None:
                break
            if model.objects.filter(id=candidate[0]).delete()[0] == 1:
                row = candidate[1:]
                break
    if row is None:
        return None
    if signed:
        return SignedPreKeyData(row[0], bytes(row[1]), bytes(row[2]))
    return PreKeyData(row[0], bytes(row[1]))
