"""Shared reads of accounts and devices."""

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
