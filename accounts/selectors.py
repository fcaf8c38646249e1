"""Shared reads of accounts and devices."""

import hmac

from accounts.models import Account
from signalserver.wire import ServiceId


def get_account(service_id: ServiceId) -> Account | None:
    """The account an ACI or PNI names, or None."""
    field = "pni" if service_id.is_pni else "aci"
    return Account.objects.filter(**{field: service_id.uuid}).first()


def account_exists(service_id: ServiceId) -> bool:
    field = "pni" if service_id.is_pni else "aci"
    return Account.objects.filter(**{field: service_id.uuid}).exists()


def any_device_has(account: Account, capability: str) -> bool:
    return any(capability in device.capabilities for device in account.devices.all())


def has_unidentified_access(account: Account, access_key: bytes) -> bool:
    """Signal's "optional access" for anonymous callers (spec §2.7, §4.8): the 16-byte access key
    matches the account's, compared in constant time, or the account accepts anyone."""
    if account.unrestricted_unidentified_access:
        return True
    stored = account.unidentified_access_key
    return stored is not None and hmac.compare_digest(bytes(stored), access_key)
