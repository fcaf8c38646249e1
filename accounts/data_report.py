"""`GET /v2/accounts/data_report` (Signal's path): everything the server holds about an account, for
the account itself (GDPR portability), groups included (the account's place in each, never their
content or other members). Signal answers `{"reportId", "reportTimestamp", "data",
"text"}`; `data` here names every kind of record this server keeps for an account, by count where
the records are keys or ciphertext the server cannot read. After `DELETE /v1/accounts/me` the same
report of the account's ACI is empty: nothing of it is left."""

from __future__ import annotations

import json
import uuid

from django.utils import timezone

from accounts.models import Account, Block, Device, Profile, UsernameClaim, UsernameLink
from groups.selectors import groups_of
from keys.models import IdentityKey, KemPreKey, LastResortKey, OneTimePreKey, SignedPreKey
from messaging.models import QueuedMessage


def account_data(aci) -> dict:
    """What the server holds about the account `aci` ({} when it holds nothing)."""
    account = Account.objects.filter(aci=aci).first()
    devices = list(Device.objects.filter(account_id=aci).order_by("device_id"))
    data: dict = {}
    if account is not None:
        data["account"] = {
            "aci": str(account.aci),
            "pni": str(account.pni) if account.pni else None,
            "phoneNumber": account.number,
            "created": account.created.isoformat(),
            "findAccountByPhoneNumber": account.discoverable_by_phone_number,
            "allowSealedSenderFromAnyone": account.unrestricted_unidentified_access,
            "registrationLock": bool(account.registration_lock_hash),
            "identityKeys": IdentityKey.objects.filter(account=account).count(),
        }
    if devices:
        data["devices"] = [_device(device) for device in devices]
    usernames = list(UsernameClaim.objects.filter(account_id=aci).values_list("kind", flat=True))
    if usernames:
        data["usernameHashes"] = {kind: usernames.count(kind) for kind in sorted(set(usernames))}
    if UsernameLink.objects.filter(account_id=aci).exists():
        data["usernameLink"] = True
    profiles = Profile.objects.filter(account_id=aci).count()
    if profiles:
        data["profileVersions"] = profiles
    blocks = Block.objects.filter(account_id=aci).count()
    if blocks:
        data["blocks"] = blocks
    # By the ACI alone once the account is gone (its PNI went with it): deletion leaves no group
    # naming either (groups.services.remove_account).
    groups = groups_of(aci, account.pni if account is not None else None)
    if groups:
        data["groups"] = groups
    queued = QueuedMessage.objects.filter(device__account_id=aci).count()
    if queued:
        data["queuedMessages"] = queued
    return data


def _device(device: Device) -> dict:
    keys = {
        "signedPreKeys": SignedPreKey.objects.filter(device=device).count(),
        "lastResortKeys": LastResortKey.objects.filter(device=device).count(),
        "oneTimePreKeys": OneTimePreKey.objects.filter(device=device).count(),
        "kyberPreKeys": KemPreKey.objects.filter(device=device).count(),
    }
    return {
        "id": device.device_id,
        "created": device.created.isoformat(),
        "lastSeen": device.last_seen.isoformat() if device.last_seen else None,
        "userAgent": device.user_agent or None,
        "push": "apn" if device.apn_id else "fcm" if device.gcm_id else None,
        "keys": keys,
    }


def data_report(account: Account) -> dict:
    data = account_data(account.aci)
    return {
        "reportId": str(uuid.uuid4()),
        "reportTimestamp": timezone.now().replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "data": data,
        "text": json.dumps(data, indent=2),
    }
