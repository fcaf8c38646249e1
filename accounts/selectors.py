"""Shared reads of accounts and devices."""

import hmac

from accounts.blocks.services import blocks
from accounts.models import Account
from groups.send_tokens import verify_group_send_token
from signalserver.errors import NotFound, Unauthorized
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
    """Signal's "optional access" for anonymous callers: the 16-byte access key
    matches the account's, compared in constant time, or the account accepts anyone."""
    if account.unrestricted_unidentified_access:
        return True
    stored = account.unidentified_access_key
    return stored is not None and hmac.compare_digest(bytes(stored), access_key)


def readable_account(*, caller, access_key: bytes | None, target: ServiceId, group_send_token: str | None = None) -> Account:
    """The account `target` names, for a read under Signal's "optional access":
    an authenticated `caller` reads any existing account (404 otherwise); an anonymous one needs
    the account's access key, and gets 401 for a missing or wrong key, a PNI target or an account
    that does not exist, so that the answer never tells whether it exists. An account that the
    target blocks reads nothing with its credentials (404). Instead of a key, an anonymous caller
    may hold a group send token for exactly the target (`groups.send_tokens`; then 404 when the
    account is gone: the token names it)."""
    if caller is None and group_send_token is not None:
        verify_group_send_token(group_send_token, [target])
        account = get_account(target)
        if account is None:
            raise NotFound()
        return account
    if caller is None and (access_key is None or target.is_pni):
        raise Unauthorized()
    account = get_account(target)
    if account is None:
        raise NotFound() if caller is not None else Unauthorized()
    if caller is None and not has_unidentified_access(account, access_key):
        raise Unauthorized()
    if caller is not None and account.blocks_someone and blocks(account.aci, caller.account):
        raise NotFound()  # as if it did not exist (accounts.blocks)
    return account
