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
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Account, Device, Profile
from accounts.selectors import readable_account
from accounts.serializers import KNOWN_CAPABILITIES
from keys.models import Identity
from keys.services import identity_key_of
from media import avatars, store
from signalserver import ratelimit
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


def _check_rate(caller) -> None:
    if caller is not None:
        ratelimit.check("profile", str(caller.account.aci), aci=caller.account.aci)


def account_capabilities(account: Account) -> dict[str, bool]:
    """Every capability, true when each of the account's devices declared it."""
    devices = list(Device.objects.filter(account=account).values_list("capabilities", flat=True))
    return {name: bool(devices) and all(name in declared for declared in devices) for name in KNOWN_CAPABILITIES}


def unidentified_access_checksum(access_key: bytes | None) -> bytes | None:
    """Proof that the server holds the account's access key, without revealing it."""
    if access_key is None:
        return None
    return hmac.new(bytes(access_key), ZERO_BLOCK, hashlib.sha256).digest()


def read_profile(*, caller, access_key: bytes | None, target: ServiceId, group_send_token: str | None = None) -> dict:
    """`GET /v1/profile/{serviceId}`: the target's identity key and access facts."""
    account = readable_account(caller=caller, access_key=access_key, target=target, group_send_token=group_send_token)
    _check_rate(caller)
    return _identity_facts(account, target)


def _identity_facts(account: Account, target: ServiceId) -> dict:
    if target.is_pni:
        return {
            "identityKey": identity_key_of(account, Identity.PNI),
            "unidentifiedAccess": None,
            "unrestrictedUnidentifiedAccess": False,
            "capabilities": account_capabilities(account),
            "badges": [],
            "uuid": str(target),
        }
    return {
        "identityKey": identity_key_of(account, Identity.ACI),
        "unidentifiedAccess": unidentified_access_checksum(account.unidentified_access_key),
        "unrestrictedUnidentifiedAccess": account.unrestricted_unidentified_access,
        "capabilities": account_capabilities(account),
        "badges": [],
        "uuid": str(target),
    }


def read_profile_version(*, caller, access_key: bytes | None, target: ServiceId, version: str) -> dict:
    """`GET /v1/profile/{aci}/{version}`: the identity facts and that version's ciphertext (all
    null for a version the account does not have: not a 404)."""
    account = readable_account(caller=caller, access_key=access_key, target=target)
    _check_rate(caller)
    facts = _identity_facts(account, target)
    profile = Profile.objects.filter(account=account, version=version).first()
    current = profile is not None and profile.replaced is None
    return {
        **facts,
        "name": _bytes(profile.name) if profile else None,
        "about": _bytes(profile.about) if profile else None,
        "aboutEmoji": _bytes(profile.about_emoji) if profile else None,
        "avatar": (profile.avatar or None) if profile else None,
        "paymentAddress": _bytes(profile.payment_address) if current else None,
        "phoneNumberSharing": _bytes(profile.phone_number_sharing) if profile else None,
    }


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
