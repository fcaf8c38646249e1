"""Versioned encrypted profiles: setting a version, reading the current identity facts
and a version's ciphertext, and the batch identity check.

Reads follow Signal's "optional access" (accounts.selectors.readable_account): an authenticated
caller reads any existing account (404 otherwise, `profile` limiter), an anonymous one needs the
target's unidentified access key and gets 401 for anything else, so that nobody learns whether an
account exists without knowing its key. zkgroup credentials are not supported (no Python zkgroup):
the commitment is stored opaque, and the credential endpoint answers 404.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.blocks.services import blocked_pairs
from accounts.models import Account, Device, Profile
from accounts.profiles.serializers import VERSION_HEX_LENGTH
from accounts.selectors import has_unidentified_access
from accounts.serializers import KNOWN_CAPABILITIES
from groups.send_tokens import verify_group_send_token
from keys.models import Identity, IdentityKey
from media import avatars, store
from signalserver import ratelimit
from signalserver.batching import each_going_on
from signalserver.db import any_of, as_uuid, bound_cursor
from signalserver.errors import DomainError, NotFound, Unauthorized
from signalserver.wire import ServiceId

ZERO_BLOCK = bytes(32)
MAX_IDENTITY_CHECKS = 1000


@dataclass(frozen=True, slots=True)
class ProfileVersion:
    """What a client sets (`PUT /v1/profile`), already checked for shape and lengths."""

    version: str
    commitment: bytes
    name: bytes
    about: bytes | None
    about_emoji: bytes | None
    payment_address: bytes | None
    phone_number_sharing: bytes | None
    avatar: bool
    same_avatar: bool


def set_profile(*, account: Account, profile: ProfileVersion) -> dict | None:
    """Make `profile.version` the account's current profile. Returns the avatar upload form
    when the client is to upload a new avatar, else None. The previous current
    version is kept for PROFILE_GRACE_DAYS; versions older than it go, with avatars no version
    keeps."""
    with transaction.atomic():
        Account.objects.select_for_update().filter(pk=account.pk).first()  # one change at a time
        current = Profile.objects.filter(account=account, replaced__isnull=True).first()
        form, avatar = None, ""
        if profile.avatar and profile.same_avatar and current is not None and current.avatar:
            avatar = current.avatar
        elif profile.avatar:
            form = avatars.profile_avatar_form()
            avatar = form["key"]
        fields = {
            "commitment": profile.commitment,
            "name": profile.name,
            "about": profile.about,
            "about_emoji": profile.about_emoji,
            "payment_address": profile.payment_address,
            "phone_number_sharing": profile.phone_number_sharing,
            "avatar": avatar,
            "replaced": None,
        }
        unused_avatars = set()
        if current is not None and current.version != profile.version:
            current.replaced = timezone.now().date()
            current.save(update_fields=["replaced"])
            older = Profile.objects.filter(account=account, replaced__isnull=False).exclude(pk=current.pk)
            unused_avatars |= {name for name in older.values_list("avatar", flat=True) if name}
            older.exclude(version=profile.version).delete()
        if current is not None and current.avatar and current.avatar != avatar:
            unused_avatars.add(current.avatar)  # a changed or removed avatar is deleted
        Profile.objects.update_or_create(account=account, version=profile.version, defaults=fields)
        unused_avatars.discard(avatar)
        transaction.on_commit(lambda: _delete_avatars(unused_avatars))
    return form


def _delete_avatars(names: set[str]) -> None:
    for name in names:
        store.storage().delete(name)


def purge_replaced_profiles() -> int:
    """Delete versions replaced more than PROFILE_GRACE_DAYS ago, and their avatars when the
    current version does not use them; how many."""
    cutoff = timezone.now().date() - timedelta(days=settings.PROFILE_GRACE_DAYS)
    old = Profile.objects.filter(replaced__lt=cutoff)
    kept = set(Profile.objects.filter(replaced__isnull=True).exclude(avatar="").values_list("avatar", flat=True))
    _delete_avatars({name for name in old.values_list("avatar", flat=True) if name and name not in kept})
    deleted, _ = old.delete()
    return deleted


# --- reads -----------------------------------------------------------------------------------


def unidentified_access_checksum(access_key: bytes | None) -> bytes | None:
    """Proof that the server holds the account's access key, without revealing it."""
    if access_key is None:
        return None
    return hmac.new(bytes(access_key), ZERO_BLOCK, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class ProfileRead:
    """One profile read. `caller` is the authenticated device (`request.auth`), None for an
    anonymous caller, who needs the target's `access_key` or a `group_send_token` naming it (the
    views take a token for unversioned reads only: `signalserver.auth.optional_access_key`).
    `version` (lower-case) asks for that version's ciphertext too (`GET /v1/profile/{aci}/{version}`)."""

    caller: Any
    target: ServiceId
    access_key: bytes | None = None
    group_send_token: str | None = None
    version: str | None = None


@dataclass(slots=True)
class _Account:
    """A target account as `_read_accounts` reads it."""

    aci: uuid.UUID
    pni: uuid.UUID | None
    unidentified_access_key: bytes | None  # the names `has_unidentified_access` reads
    unrestricted_unidentified_access: bool
    blocks_someone: bool
    identity_keys: dict[int, bytes]  # Identity → public key
    capabilities: list[list[str]]  # what each device declared


@dataclass(slots=True)
class _Read:
    """A read on its way through `read_profiles`."""

    index: int
    request: ProfileRead
    needs_key: bool = False  # anonymous with an access key: 401 wherever a caller gets 404
    account: _Account | None = None


def read_profiles(reads: list[ProfileRead]) -> list[dict | DomainError]:
    """Every profile read, one or a batch (the reads of a process's sockets that arrived together,
    `accounts.profiles.api`): one query for every target account with its identity keys and its
    devices' capabilities, one for the versions asked for, one rate-limit call, and a query for
    blocks only when a target blocks someone. Each read succeeds or fails on its own: its outcome
    is the profile (Signal's field names, bytes unencoded) or the error it answers with.

    The rules of `accounts.selectors.readable_account`: an authenticated caller reads any existing
    account (404 otherwise, and 404 when the target blocks it) and takes from the `profile`
    limiter; an anonymous one needs the target's access key and gets 401 for a missing or wrong
    key, a PNI target or an account that does not exist; a group send token names its target, so
    its holder gets 404 for an account that is gone. A version the account does not have is not
    a 404: its fields are null.
    """
    outcomes: list = [None] * len(reads)
    pending = each_going_on([_Read(index, read) for index, read in enumerate(reads)], outcomes, _check_read)
    if not pending:
        return outcomes
    accounts = _read_accounts([read.request.target for read in pending])
    pending = each_going_on(pending, outcomes, lambda read: _check_access(read, accounts))
    _refuse_blocked(pending, outcomes)
    pending = [read for read in pending if outcomes[read.index] is None]
    limited = [read for read in pending if read.request.caller is not None]
    for read, refusal in zip(limited, ratelimit.check_each([[_profile_take(read.request.caller)] for read in limited]), strict=True):
        outcomes[read.index] = refusal
    pending = [read for read in pending if outcomes[read.index] is None]
    versions = _read_versions({(read.account.aci, read.request.version) for read in pending if read.request.version is not None})
    for read in pending:
        outcomes[read.index] = _profile(read, versions)
    return outcomes


def _check_read(read: _Read) -> None:
    """What an anonymous read is refused for before anything is read."""
    request = read.request
    if request.caller is not None:
        return
    if request.group_send_token is not None:
        verify_group_send_token(request.group_send_token, [request.target])
    elif request.access_key is None or request.target.is_pni:
        raise Unauthorized()
    else:
        read.needs_key = True


def _check_access(read: _Read, accounts: dict[ServiceId, _Account]) -> None:
    """The target exists and the caller may read it; the key compared in constant time
    (`accounts.selectors.has_unidentified_access`)."""
    account = accounts.get(read.request.target)
    if account is None:
        raise Unauthorized() if read.needs_key else NotFound()
    if read.needs_key and not has_unidentified_access(account, read.request.access_key):
        raise Unauthorized()
    read.account = account


def _refuse_blocked(reads: list[_Read], outcomes: list) -> None:
    """An account that the target blocks reads nothing with its credentials (404, as if the target
    did not exist: `accounts.blocks`). One query, none when no target blocks anyone."""
    identified = [read for read in reads if read.request.caller is not None and read.account.blocks_someone]
    if not identified:
        return
    triples = {read.index: (read.account.aci, read.request.caller.account.aci, read.request.caller.account.pni) for read in identified}
    blocked = blocked_pairs(list(set(triples.values())))
    for read in identified:
        if triples[read.index] in blocked:
            outcomes[read.index] = NotFound()


def _profile_take(caller) -> ratelimit.Take:
    """Authenticated reads are limited per reading account."""
    return ratelimit.Take("profile", str(caller.account.aci), 1, caller.account.aci)


def _profile(read: _Read, versions: dict[tuple[uuid.UUID, str], tuple]) -> dict:
    account, target = read.account, read.request.target
    devices = account.capabilities
    capabilities = {name: bool(devices) and all(name in declared for declared in devices) for name in KNOWN_CAPABILITIES}
    if target.is_pni:
        facts = {
            "identityKey": account.identity_keys.get(Identity.PNI),
            "unidentifiedAccess": None,
            "unrestrictedUnidentifiedAccess": False,
            "capabilities": capabilities,
            "badges": [],
            "uuid": str(target),
        }
    else:
        facts = {
            "identityKey": account.identity_keys.get(Identity.ACI),
            "unidentifiedAccess": unidentified_access_checksum(account.unidentified_access_key),
            "unrestrictedUnidentifiedAccess": account.unrestricted_unidentified_access,
            "capabilities": capabilities,
            "badges": [],
            "uuid": str(target),
        }
    if read.request.version is None:
        return facts
    version = versions.get((account.aci, read.request.version))
    if version is None:
        return {**facts, "name": None, "about": None, "aboutEmoji": None, "avatar": None, "paymentAddress": None, "phoneNumberSharing": None}
    name, about, about_emoji, avatar, payment_address, phone_number_sharing, current = version
    return {
        **facts,
        "name": name,
        "about": about,
        "aboutEmoji": about_emoji,
        "avatar": avatar or None,
        "paymentAddress": payment_address if current else None,
        "phoneNumberSharing": phone_number_sharing,
    }


def _read_accounts(service_ids: list[ServiceId]) -> dict[ServiceId, _Account]:
    """The accounts these service ids name (each under the ids it was asked by), with their
    identity keys and their devices' capabilities, in one query."""
    acis = list({sid.uuid for sid in service_ids if not sid.is_pni})
    pnis = list({sid.uuid for sid in service_ids if sid.is_pni})
    by_aci, aci_params = any_of("a.aci", acis, "uuid")
    by_pni, pni_params = any_of("a.pni", pnis, "uuid")
    identity_keys = IdentityKey._meta.db_table
    with bound_cursor() as cursor:
        cursor.execute(
            "SELECT a.aci, a.pni, a.unidentified_access_key, a.unrestricted_unidentified_access, a.blocks_someone,"
            " ka.public_key, kp.public_key, d.capabilities"
            f" FROM {Account._meta.db_table} a LEFT JOIN {Device._meta.db_table} d ON d.account_id = a.aci"
            f" LEFT JOIN {identity_keys} ka ON ka.account_id = a.aci AND ka.identity = {int(Identity.ACI)}"
            f" LEFT JOIN {identity_keys} kp ON kp.account_id = a.aci AND kp.identity = {int(Identity.PNI)}"
            f" WHERE {by_aci} OR {by_pni}",
            aci_params + pni_params,
        )
        rows = cursor.fetchall()
    found: dict[ServiceId, _Account] = {}
    wanted_pnis = set(pnis)
    for aci, pni, access_key, unrestricted, blocks_someone, aci_key, pni_key, capabilities in rows:
        aci = as_uuid(aci)
        account = found.get(ServiceId(aci))
        if account is None:
            keys = {identity: bytes(value) for identity, value in ((Identity.ACI, aci_key), (Identity.PNI, pni_key)) if value is not None}
            account = _Account(
                aci=aci,
                pni=as_uuid(pni) if pni is not None else None,
                unidentified_access_key=bytes(access_key) if access_key is not None else None,
                unrestricted_unidentified_access=bool(unrestricted),
                blocks_someone=bool(blocks_someone),
                identity_keys=keys,
                capabilities=[],
            )
            found[ServiceId(aci)] = account
            if account.pni in wanted_pnis:
                found[ServiceId(account.pni, is_pni=True)] = account
        if capabilities is not None:  # a device (an account without any has no row of its own)
            account.capabilities.append(orjson.loads(capabilities) if isinstance(capabilities, (str, bytes)) else capabilities)
    return found


# What `PUT /v1/profile` stores (`SetProfileSerializer`, lower-cased): no other version can match,
# so none is looked up (nor sent to PostgreSQL, which refuses a NUL in text).
_STORED_VERSION = re.compile(rf"[0-9a-f]{{{VERSION_HEX_LENGTH}}}")


def _read_versions(wanted: set[tuple[uuid.UUID, str]]) -> dict[tuple[uuid.UUID, str], tuple]:
    """(account ACI, version) → (name, about, about emoji, avatar, payment address, phone number
    sharing, whether it is the current version) of the versions that exist, in one query."""
    wanted = {(aci, version) for aci, version in wanted if _STORED_VERSION.fullmatch(version)}
    if not wanted:
        return {}
    by_account, account_params = any_of("account_id", list({aci for aci, _ in wanted}), "uuid")
    by_version, version_params = any_of("version", list({version for _, version in wanted}), "text")
    with bound_cursor() as cursor:
        cursor.execute(
            "SELECT account_id, version, name, about, about_emoji, avatar, payment_address, phone_number_sharing, replaced IS NULL"
            f" FROM {Profile._meta.db_table} WHERE {by_account} AND {by_version}",
            account_params + version_params,
        )
        rows = cursor.fetchall()
    found = {}
    for aci, version, name, about, about_emoji, avatar, payment_address, phone_number_sharing, current in rows:
        key = (as_uuid(aci), version)
        if key in wanted:  # (the query also matches another account's version asked for)
            found[key] = (_bytes(name), _bytes(about), _bytes(about_emoji), avatar, _bytes(payment_address), _bytes(phone_number_sharing), bool(current))
    return found


def _bytes(value) -> bytes | None:
    return bytes(value) if value is not None else None


def identity_check(elements: list[tuple[ServiceId, bytes]]) -> list[tuple[ServiceId, bytes]]:
    """`POST /v1/profile/identity_check/batch`: the (service id, identity key) of every element
    whose 4-byte fingerprint (the first bytes of SHA-256 of the identity key) does not match the
    key the server has; unknown accounts are left out."""
    from keys.models import IdentityKey

    wanted = {(element.uuid, element.is_pni) for element, _ in elements}
    acis = [uuid for uuid, is_pni in wanted if not is_pni]
    pnis = [uuid for uuid, is_pni in wanted if is_pni]
    keys = {}
    for account_field, identity, uuids in (("account__aci", Identity.ACI, acis), ("account__pni", Identity.PNI, pnis)):
        if uuids:
            rows = IdentityKey.objects.filter(identity=identity, **{f"{account_field}__in": uuids}).values_list(account_field, "public_key")
            keys.update({(uuid, identity == Identity.PNI): bytes(key) for uuid, key in rows})
    mismatches = []
    for service_id, fingerprint in elements:
        key = keys.get((service_id.uuid, service_id.is_pni))
        if key is not None and not hmac.compare_digest(hashlib.sha256(key).digest()[:4], fingerprint):
            mismatches.append((service_id, key))
    return mismatches
