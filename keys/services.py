"""Every state change of keys, and the checks every key upload shares."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from accounts.blocks.services import blocked_pairs
from accounts.models import Account, Device
from accounts.selectors import has_unidentified_access
from groups.send_tokens import verify_group_send_token
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
from signalserver.batching import each_going_on
from signalserver.crypto import verify_xeddsa
from signalserver.db import any_of, as_uuid, bound_cursor
from signalserver.errors import BadRequest, DomainError, InvalidSignature, NotFound, Unauthorized, UnprocessableEntity
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
        # The signature covers the full serialized key, type byte included.
        if len(prekey.signature) != SIGNATURE_LENGTH or not verify_xeddsa(
            identity_key, prekey.public_key, prekey.signature
        ):
            raise InvalidSignature()


# No savepoint when called inside a caller's transaction (registration, device linking): nobody
# recovers from a failure half-way, the whole transaction rolls back, and a savepoint is two more
# statements.
@transaction.atomic(savepoint=False)
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


@transaction.atomic(savepoint=False)
def store_repeated_use_keys(*, device, keys: dict[Identity, tuple[SignedPreKeyData, SignedPreKeyData]]) -> None:
    """Store (or replace) a device's signed EC prekey and Kyber last-resort key, `(signed prekey,
    last-resort key)` for each identity in `keys`: one statement per kind for every identity.

    Signatures must have been checked with `verify_signed_prekeys` before anything is written.
    """
    for model, kind in ((SignedPreKey, 0), (LastResortKey, 1)):
        model.objects.bulk_create(
            [
                model(
                    device=device,
                    identity=identity,
                    key_id=pair[kind].key_id,
                    public_key=pair[kind].public_key,
                    signature=pair[kind].signature,
                )
                for identity, pair in keys.items()
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
    """`PUT /v2/keys`: a non-empty list replaces that pool, present repeated-use keys
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


# --- Fetching bundles -----------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class BundleRequest:
    """One bundle fetch. `caller` is the authenticated device (`request.auth`), None for an
    anonymous caller, who needs the target's `access_key` or a `group_send_token` naming it;
    `device_selector` is a device id or `*`."""

    caller: Any
    target: ServiceId
    device_selector: str
    access_key: bytes | None = None
    group_send_token: str | None = None


def fetch_prekey_bundle(
    *, caller, access_key: bytes | None, target: ServiceId, device_selector: str, group_send_token: str | None = None
) -> PreKeyBundle:
    """One fetch (`fetch_prekey_bundles`); raises the error it answers with."""
    request = BundleRequest(caller, target, device_selector, access_key, group_send_token)
    outcome = fetch_prekey_bundles([request])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@dataclass(slots=True)
class _Target:
    """An account a batch of fetches names, as `_read_targets` reads it."""

    aci: uuid.UUID
    pni: uuid.UUID | None
    unidentified_access_key: bytes | None  # the names `has_unidentified_access` reads
    unrestricted_unidentified_access: bool
    blocks_someone: bool
    identity_keys: dict[int, bytes]  # Identity → public key
    devices: list[tuple[int, int, int, int | None]]  # (pk, device id, registration id, PNI registration id)


@dataclass(slots=True)
class _Fetch:
    """A fetch on its way through `fetch_prekey_bundles`."""

    index: int
    request: BundleRequest
    not_found: type[DomainError] = NotFound
    target: _Target | None = None
    devices: list = field(default_factory=list)
    identity: int = int(Identity.ACI)
    bundles: dict[int, DeviceBundle] = field(default_factory=dict)  # device id → its entry


def fetch_prekey_bundles(requests: list[BundleRequest]) -> list[PreKeyBundle | DomainError]:
    """Every prekey fetch, one or a batch (the fetches of a process's sockets that arrived
    together, `keys.api`): one read of every target account with its devices and identity keys,
    one rate-limit call, and one statement that claims the one-time keys of every device of the
    batch. Each fetch succeeds or fails on its own: its outcome is its bundle or the error it
    answers with.

    Anonymous callers need the target's unidentified access key and get 401 wherever an
    authenticated caller would get 404; a group send token names its target, so its holder gets
    404 as a caller does. Authenticated fetches take from the `prekeys` limiter.
    """
    outcomes: list = [None] * len(requests)
    fetches = each_going_on([_Fetch(index, request) for index, request in enumerate(requests)], outcomes, _check_request)
    if not fetches:
        return outcomes
    targets = _read_targets([fetch.request.target for fetch in fetches])
    fetches = each_going_on(fetches, outcomes, lambda fetch: _check_access(fetch, targets))
    _refuse_blocked(fetches, outcomes)
    fetches = [fetch for fetch in fetches if outcomes[fetch.index] is None]
    limited = [fetch for fetch in fetches if fetch.request.caller is not None]
    for fetch, refusal in zip(limited, ratelimit.check_each([[_prekeys_take(fetch)] for fetch in limited]), strict=True):
        outcomes[fetch.index] = refusal
    fetches = each_going_on([fetch for fetch in fetches if outcomes[fetch.index] is None], outcomes, _check_identity_key)
    _claim_keys(fetches)
    for fetch in fetches:
        bundles = [fetch.bundles[device[1]] for device in fetch.devices if device[1] in fetch.bundles]
        if bundles:
            outcomes[fetch.index] = PreKeyBundle(identity_key=fetch.target.identity_keys[fetch.identity], devices=bundles)
        else:
            outcomes[fetch.index] = fetch.not_found()
    return outcomes


def _check_request(fetch: _Fetch) -> None:
    """What a fetch can be refused for before anything is read."""
    request = fetch.request
    selector = request.device_selector
    if selector != "*" and not (selector.isascii() and selector.isdigit()):
        raise UnprocessableEntity("deviceId must be a number or *")
    if request.caller is None:
        if request.group_send_token is not None:
            verify_group_send_token(request.group_send_token, [request.target])
        elif request.access_key is None or request.target.is_pni:
            raise Unauthorized()
        else:
            fetch.not_found = Unauthorized  # never tell an anonymous caller what exists
    fetch.identity = int(Identity.PNI if request.target.is_pni else Identity.ACI)


def _check_access(fetch: _Fetch, targets: dict[ServiceId, _Target]) -> None:
    """The target exists and the caller may read it (`accounts.selectors.readable_account`'s
    rules); the devices the fetch selects, in device-id order."""
    request = fetch.request
    target = targets.get(request.target)
    if target is None:
        raise fetch.not_found()
    if fetch.not_found is Unauthorized and not has_unidentified_access(target, request.access_key):
        raise Unauthorized()
    fetch.target = target
    selector = request.device_selector.lstrip("0")
    if request.device_selector == "*":
        fetch.devices = target.devices
    elif len(selector) <= 3:  # device ids are at most MAX_DEVICE_ID; a longer number names none
        fetch.devices = [device for device in target.devices if device[1] == int(selector or "0")]
    if not fetch.devices:
        raise fetch.not_found()


def _refuse_blocked(fetches: list[_Fetch], outcomes: list) -> None:
    """An account that the target blocks reads nothing with its credentials (404, as if the
    target did not exist: `accounts.blocks`). One query, none when no target blocks anyone."""
    identified = [fetch for fetch in fetches if fetch.request.caller is not None and fetch.target.blocks_someone]
    if not identified:
        return
    triples = {
        fetch.index: (fetch.target.aci, fetch.request.caller.account.aci, fetch.request.caller.account.pni)
        for fetch in identified
    }
    blocked = blocked_pairs(list(set(triples.values())))
    for fetch in identified:
        if triples[fetch.index] in blocked:
            outcomes[fetch.index] = NotFound()


def _prekeys_take(fetch: _Fetch) -> ratelimit.Take:
    """The `prekeys` bucket of an authenticated fetch, keyed by the caller's device
    and the target device."""
    caller, selector = fetch.request.caller, fetch.request.device_selector
    registration = str(fetch.devices[0][2]) if selector != "*" else "*"
    key = ratelimit.pair_key(f"{caller.account.aci}.{caller.device.device_id}", f"{fetch.request.target.uuid}.{selector}.{registration}")
    return ratelimit.Take("prekeys", key, 1, caller.account.aci)


def _check_identity_key(fetch: _Fetch) -> None:
    if fetch.identity not in fetch.target.identity_keys:
        raise fetch.not_found()


def _read_targets(service_ids: list[ServiceId]) -> dict[ServiceId, _Target]:
    """The accounts these service ids name, with their devices and identity keys, in one query."""
    acis = list({sid.uuid for sid in service_ids if not sid.is_pni})
    pnis = list({sid.uuid for sid in service_ids if sid.is_pni})
    by_aci, aci_params = any_of("a.aci", acis, "uuid")
    by_pni, pni_params = any_of("a.pni", pnis, "uuid")
    identity_keys = IdentityKey._meta.db_table
    with bound_cursor() as cursor:
        cursor.execute(
            "SELECT a.aci, a.pni, a.unidentified_access_key, a.unrestricted_unidentified_access, a.blocks_someone,"
            " ka.public_key, kp.public_key, d.id, d.device_id, d.registration_id, d.pni_registration_id"
            f" FROM {Account._meta.db_table} a JOIN {Device._meta.db_table} d ON d.account_id = a.aci"
            f" LEFT JOIN {identity_keys} ka ON ka.account_id = a.aci AND ka.identity = {int(Identity.ACI)}"
            f" LEFT JOIN {identity_keys} kp ON kp.account_id = a.aci AND kp.identity = {int(Identity.PNI)}"
            f" WHERE {by_aci} OR {by_pni} ORDER BY d.device_id",
            aci_params + pni_params,
        )
        rows = cursor.fetchall()
    found: dict[ServiceId, _Target] = {}
    wanted_pnis = set(pnis)
    for aci, pni, access_key, unrestricted, blocks_someone, aci_key, pni_key, *device in rows:
        key = ServiceId(as_uuid(aci))
        target = found.get(key)
        if target is None:
            keys = {identity: bytes(value) for identity, value in ((Identity.ACI, aci_key), (Identity.PNI, pni_key)) if value is not None}
            target = found[key] = _Target(
                aci=key.uuid,
                pni=as_uuid(pni) if pni is not None else None,
                unidentified_access_key=bytes(access_key) if access_key is not None else None,
                unrestricted_unidentified_access=bool(unrestricted),
                blocks_someone=bool(blocks_someone),
                identity_keys=keys,
                devices=[],
            )
            if target.pni in wanted_pnis:
                found[ServiceId(target.pni, is_pni=True)] = target
        target.devices.append(tuple(device))
    return found




@dataclass(slots=True)
class _SlotKeys:
    """What one claim found for one device and identity: its repeated-use keys, and the one-time
    keys taken for it, lowest id first."""

    signed: SignedPreKeyData | None = None
    last_resort: SignedPreKeyData | None = None
    kem: list[SignedPreKeyData] = field(default_factory=list)
    ec: list[PreKeyData] = field(default_factory=list)


def _claim_keys(fetches: list[_Fetch]) -> None:
    """Claim one-time keys for every (fetch, selected device) at once and fill in the fetches'
    bundles. Fetches of the same device get its keys in the order they arrived, lowest key id
    first, each key once. A device without a signed prekey, or without a Kyber key (one-time or
    last-resort), is skipped, and nothing is taken from it."""
    wanted: dict[tuple[int, int], list[_Fetch]] = {}  # (device pk, identity) → its fetches, in order
    for fetch in fetches:
        for device in fetch.devices:
            wanted.setdefault((device[0], fetch.identity), []).append(fetch)
    if not wanted:
        return
    counts = {slot: len(waiting) for slot, waiting in wanted.items()}
    claimed = _claim_sql(counts) if connection.vendor == "postgresql" else _claim_portable(counts)
    for fetch in fetches:
        for pk, device_id, registration_id, pni_registration_id in fetch.devices:
            keys = claimed.get((pk, fetch.identity))
            if keys is None or keys.signed is None:
                continue
            if keys.kem:
                pq_pre_key = keys.kem.pop(0)
            elif keys.last_resort is not None:
                pq_pre_key = keys.last_resort
            else:
                continue
            fetch.bundles[device_id] = DeviceBundle(
                device_id=device_id,
                registration_id=pni_registration_id if fetch.identity == Identity.PNI else registration_id,
                signed_prekey=keys.signed,
                pre_key=keys.ec.pop(0) if keys.ec else None,
                pq_pre_key=pq_pre_key,
            )


def _claim_sql(counts: dict[tuple[int, int], int]) -> dict[tuple[int, int], _SlotKeys]:
    """PostgreSQL: one statement reads the signed and last-resort keys of every (device,
    identity) and deletes and returns the `n` lowest one-time keys of each (fewer when there are
    fewer). Each inner SELECT skips rows another fetcher has locked, so concurrent claims never
    get the same key and never wait for each other."""
    slots = list(counts)
    with bound_cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [[pk for pk, _ in slots], [identity for _, identity in slots], [counts[slot] for slot in slots]])
        rows = cursor.fetchall()
    claimed = {slot: _SlotKeys() for slot in slots}
    for kind, device_pk, identity, key_id, public_key, signature in sorted(rows, key=lambda row: row[3]):
        keys = claimed[(device_pk, identity)]
        if kind == _EC:
            keys.ec.append(PreKeyData(key_id, bytes(public_key)))
            continue
        key = SignedPreKeyData(key_id, bytes(public_key), bytes(signature))
        if kind == _KEM:
            keys.kem.append(key)
        elif kind == _SIGNED:
            keys.signed = key
        else:
            keys.last_resort = key
    return claimed


_SIGNED, _LAST_RESORT, _KEM, _EC = range(4)


def _one_time_claim(model, limit: str) -> str:
    """The DELETE of a `_CLAIM_SQL` step: up to `limit` keys of each ready slot, lowest ids first."""
    table = model._meta.db_table
    return (
        f"DELETE FROM {table} k USING (SELECT x.id FROM ready r"
        + (" CROSS JOIN LATERAL (SELECT count(*) AS taken FROM kem WHERE kem.device_id = r.device_id AND kem.identity = r.identity) t" if model is OneTimePreKey else "")
        + f" CROSS JOIN LATERAL (SELECT id FROM {table} WHERE device_id = r.device_id AND identity = r.identity"
        f" ORDER BY key_id LIMIT {limit} FOR UPDATE SKIP LOCKED) x) p WHERE k.id = p.id"
    )


# `wanted`: (device pk, identity, how many fetches want it). `ready`: the slots with a signed
# prekey. Kyber one-time keys: up to n each. EC one-time keys: up to n where a last-resort key
# stands in for missing Kyber keys, else only as many as Kyber keys were taken (a fetch without
# any Kyber key skips the device and takes nothing from it).
_CLAIM_SQL = (
    "WITH wanted AS (SELECT * FROM unnest(%b::bigint[], %b::smallint[], %b::int[]) AS w(device_id, identity, n)),"
    f" signed AS (SELECT s.device_id, s.identity, s.key_id, s.public_key, s.signature FROM {SignedPreKey._meta.db_table} s JOIN wanted USING (device_id, identity)),"
    f" last_resort AS (SELECT l.device_id, l.identity, l.key_id, l.public_key, l.signature FROM {LastResortKey._meta.db_table} l JOIN wanted USING (device_id, identity)),"
    " ready AS (SELECT w.device_id, w.identity, w.n,"
    " EXISTS (SELECT 1 FROM last_resort l WHERE l.device_id = w.device_id AND l.identity = w.identity) AS has_last_resort"
    " FROM wanted w WHERE EXISTS (SELECT 1 FROM signed s WHERE s.device_id = w.device_id AND s.identity = w.identity)),"
    f" kem AS ({_one_time_claim(KemPreKey, 'r.n')} RETURNING k.device_id, k.identity, k.key_id, k.public_key, k.signature),"
    f" ec AS ({_one_time_claim(OneTimePreKey, 'CASE WHEN r.has_last_resort THEN r.n ELSE t.taken END')}"
    " RETURNING k.device_id, k.identity, k.key_id, k.public_key)"
    f" SELECT {_SIGNED}, device_id, identity, key_id, public_key, signature FROM signed"
    f" UNION ALL SELECT {_LAST_RESORT}, device_id, identity, key_id, public_key, signature FROM last_resort"
    f" UNION ALL SELECT {_KEM}, device_id, identity, key_id, public_key, signature FROM kem"
    f" UNION ALL SELECT {_EC}, device_id, identity, key_id, public_key, NULL FROM ec"
)


def _claim_portable(counts: dict[tuple[int, int], int]) -> dict[tuple[int, int], _SlotKeys]:
    """`_claim_sql` without PostgreSQL (SQLite serialises writers): key by key."""
    claimed = {}
    for (device_pk, identity), n in counts.items():
        keys = claimed[(device_pk, identity)] = _SlotKeys()
        signed = SignedPreKey.objects.filter(device_id=device_pk, identity=identity).first()
        if signed is None:
            continue
        keys.signed = SignedPreKeyData(signed.key_id, bytes(signed.public_key), bytes(signed.signature))
        last_resort = LastResortKey.objects.filter(device_id=device_pk, identity=identity).first()
        if last_resort is not None:
            keys.last_resort = SignedPreKeyData(last_resort.key_id, bytes(last_resort.public_key), bytes(last_resort.signature))
        for _ in range(n):
            if (kem := _take_one_time_key(KemPreKey, device_pk, identity, signed=True)) is None:
                break
            keys.kem.append(kem)
        for _ in range(n if keys.last_resort is not None else len(keys.kem)):
            if (ec := _take_one_time_key(OneTimePreKey, device_pk, identity, signed=False)) is None:
                break
            keys.ec.append(ec)
    return claimed


def _take_one_time_key(model, device_pk: int, identity: Identity, *, signed: bool):
    """Remove and return the device's one-time key with the lowest id, or None, without
    PostgreSQL: select the lowest, delete it by id, retry if someone else won."""
    columns = ["key_id", "public_key"] + (["signature"] if signed else [])
    while True:
        candidate = model.objects.filter(device_id=device_pk, identity=identity).order_by("key_id").values_list("id", *columns).first()
        if candidate is None:
            return None
        if model.objects.filter(id=candidate[0]).delete()[0] == 1:
            break
    if signed:
        return SignedPreKeyData(candidate[1], bytes(candidate[2]), bytes(candidate[3]))
    return PreKeyData(candidate[1], bytes(candidate[2]))
