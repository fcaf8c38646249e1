"""Blocking, enforced by the server (our extension): an account blocks a service id, and from then
on identified messages from that account are accepted and dropped (the sender learns nothing),
and it cannot read the blocking account's prekeys or profile with its credentials. Unblocking
restores both at once.

Sealed-sender messages name no sender, so the server cannot tell who sent them: clients block
those by rotating their unidentified access key (`PUT /v1/accounts/attributes`), which the
blocked account then no longer has (401).
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from accounts.models import Account, Block
from signalserver.errors import DomainError
from signalserver.wire import ServiceId

MAX_BLOCKS = 10_000


class TooManyBlocks(DomainError):
    status = 413


def block(*, account: Account, target: ServiceId) -> None:
    if Block.objects.filter(account=account).count() >= MAX_BLOCKS:
        raise TooManyBlocks(f"at most {MAX_BLOCKS} blocks")
    try:
        with transaction.atomic():
            Block.objects.create(account=account, blocked=target.uuid, blocked_is_pni=target.is_pni)
            Account.objects.filter(pk=account.pk).update(blocks_someone=True)
    except IntegrityError:
        pass  # blocked already


def unblock(*, account: Account, target: ServiceId) -> None:
    with transaction.atomic():
        Block.objects.filter(account=account, blocked=target.uuid).delete()
        if not Block.objects.filter(account=account).exists():
            Account.objects.filter(pk=account.pk).update(blocks_someone=False)


def blocked_service_ids(account: Account) -> list[str]:
    rows = Block.objects.filter(account=account).order_by("pk").values_list("blocked", "blocked_is_pni")
    return [str(ServiceId(uuid, is_pni=is_pni)) for uuid, is_pni in rows]


def blocks(blocker_aci, sender: Account) -> bool:
    """Whether the account `blocker_aci` blocks `sender` (by its ACI or its PNI)."""
    named = [sender.aci] + ([sender.pni] if sender.pni else [])
    return Block.objects.filter(account_id=blocker_aci, blocked__in=named).exists()


def blocked_pairs(pairs: list[tuple]) -> set[tuple]:
    """Of (blocker ACI, sender ACI, sender PNI) triples, those where the blocker blocks the
    sender: one query for a batch of sends."""
    if not pairs:
        return set()
    blockers = {blocker for blocker, _, _ in pairs}
    named = {uuid for _, aci, pni in pairs for uuid in (aci, pni) if uuid is not None}
    found = set(Block.objects.filter(account_id__in=blockers, blocked__in=named).values_list("account_id", "blocked"))
    return {(blocker, aci, pni) for blocker, aci, pni in pairs if (blocker, aci) in found or (blocker, pni) in found}
