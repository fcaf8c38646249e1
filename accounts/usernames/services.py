"""Usernames: the server keeps 32-byte hashes that clients compute from usernames it never
sees, and username links (the username encrypted by the client, behind a random handle).

A hash is claimed by at most one account at a time, in one of three states (UsernameClaim):
reserved for RESERVATION_SECONDS on the way to being confirmed, confirmed, or held for HOLD_DAYS
after its account gave it up (at most MAX_HOLDS per account, the oldest dropped first), so that
nobody else takes it at once. An expired reservation or hold no longer counts and is replaced by
whoever claims the hash next; the purge deletes the rest.

The confirmation carries a libsignal zero-knowledge proof that the hash was made from a username
the client knows. Checking it needs libsignal's username crate, which has no Python binding: the
proof is stored opaque and not verified.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, UsernameClaim, UsernameLink
from signalserver import ratelimit
from signalserver.errors import Conflict, DomainError, NotFound
from signalserver.timestamps import end_of_day

RESERVATION_SECONDS = 5 * 60
HOLD_DAYS = 7
MAX_HOLDS = 3
MAX_CANDIDATES = 20


class UsernameGone(DomainError):
    status = 410


def _live(now) -> Q:
    """Claims that count: confirmed ones, and reservations and holds not yet expired."""
    return Q(kind=UsernameClaim.CONFIRMED) | Q(expires__gt=now)


def reserve(*, account: Account, hashes: list[bytes]) -> bytes:
    """Reserve the first of `hashes` no other account claims (the account's own confirmed hash is
    a no-op success); 409 when every one is taken."""
    ratelimit.check("usernameReserve", str(account.aci), aci=account.aci)
    now = timezone.now()
    for candidate in hashes:
        with transaction.atomic():
            claim = UsernameClaim.objects.select_for_update().filter(hash=candidate).first()
            if claim is not None and claim.account_id == account.aci:
                if claim.kind != UsernameClaim.CONFIRMED:
                    _reserve_own(account, claim, now)
                return candidate
            if claim is not None and (claim.kind == UsernameClaim.CONFIRMED or claim.expires > now):
                continue  # someone else's
            if claim is not None:
                claim.delete()  # an expired reservation or hold
            try:
                with transaction.atomic():
                    UsernameClaim.objects.create(
                        hash=candidate, account=account, kind=UsernameClaim.RESERVED, expires=now + timedelta(seconds=RESERVATION_SECONDS)
                    )
            except IntegrityError:
                continue  # another account claimed it this instant
            _drop_other_reservations(account, candidate)
            return candidate
    raise Conflict("Every username hash is taken")


def _reserve_own(account: Account, claim: UsernameClaim, now) -> None:
    """The account reserves again a hash it reserved or holds."""
    claim.kind, claim.expires = UsernameClaim.RESERVED, now + timedelta(seconds=RESERVATION_SECONDS)
    claim.save(update_fields=["kind", "expires"])
    _drop_other_reservations(account, bytes(claim.hash))


def _drop_other_reservations(account: Account, keep: bytes) -> None:
    UsernameClaim.objects.filter(account=account, kind=UsernameClaim.RESERVED).exclude(hash=keep).delete()


def confirm(*, account: Account, username_hash: bytes, zk_proof: bytes, encrypted_username: bytes | None) -> dict:
    """Make a reserved hash the account's username (the previous one is held); with
    `encrypted_username` the username link is set to it under a new handle, without it the link
    goes. 409 without a live reservation, 410 when another account claims the hash now."""
    ratelimit.check("usernameSet", str(account.aci), aci=account.aci)
    now = timezone.now()
    with transaction.atomic():
        Account.objects.select_for_update().filter(pk=account.pk).first()  # one change at a time
        claim = UsernameClaim.objects.select_for_update().filter(hash=username_hash).first()
        if claim is not None and claim.account_id != account.aci and (claim.kind == UsernameClaim.CONFIRMED or claim.expires > now):
            raise UsernameGone("The username hash is no longer available")
        if claim is None or claim.account_id != account.aci or not (claim.kind == UsernameClaim.CONFIRMED or claim.expires > now):
            raise Conflict("No reservation of this username hash")
        if claim.kind != UsernameClaim.CONFIRMED:
            _hold_confirmed(account, now)
            claim.kind, claim.expires = UsernameClaim.CONFIRMED, None
        claim.zk_proof = zk_proof
        claim.save(update_fields=["kind", "expires", "zk_proof"])
        handle = None
        if encrypted_username is not None:
            link, _ = UsernameLink.objects.update_or_create(
                account=account, defaults={"handle": uuid.uuid4(), "encrypted_value": encrypted_username}
            )
            handle = link.handle
        else:
            UsernameLink.objects.filter(account=account).delete()
    return {"usernameHash": username_hash, "usernameLinkHandle": handle}


def _hold_confirmed(account: Account, now) -> None:
    """The account's confirmed hash, if any, becomes a hold for HOLD_DAYS; beyond MAX_HOLDS the
    oldest holds go."""
    updated = UsernameClaim.objects.filter(account=account, kind=UsernameClaim.CONFIRMED).update(
        kind=UsernameClaim.HELD, expires=end_of_day(now + timedelta(days=HOLD_DAYS))  # not the time it was given up
    )
    if updated:
        # Newest first: holds end on whole days, so among one day's the later claimed (higher pk).
        holds = UsernameClaim.objects.filter(account=account, kind=UsernameClaim.HELD, expires__gt=now).order_by("-expires", "-pk")
        stale = list(holds.values_list("pk", flat=True)[MAX_HOLDS:])
        UsernameClaim.objects.filter(Q(pk__in=stale) | Q(account=account, kind=UsernameClaim.HELD, expires__lte=now)).delete()


def delete(*, account: Account) -> None:
    """The account gives up its username (held for HOLD_DAYS) and its link."""
    with transaction.atomic():
        Account.objects.select_for_update().filter(pk=account.pk).first()
        _hold_confirmed(account, timezone.now())
        UsernameLink.objects.filter(account=account).delete()


def lookup(*, username_hash: bytes, client_ip: str | None):
    """The ACI of the account whose confirmed username has this hash; 404 if none."""
    ratelimit.check("usernameLookup", ratelimit.hashed(client_ip) if client_ip else None)
    claim = UsernameClaim.objects.filter(hash=username_hash, kind=UsernameClaim.CONFIRMED).values_list("account_id", flat=True).first()
    if claim is None:
        raise NotFound()
    return claim


def confirmed_hash(account: Account) -> bytes | None:
    value = UsernameClaim.objects.filter(account=account, kind=UsernameClaim.CONFIRMED).values_list("hash", flat=True).first()
    return bytes(value) if value is not None else None


def link_handle(account: Account):
    return UsernameLink.objects.filter(account=account).values_list("handle", flat=True).first()


def set_link(*, account: Account, encrypted_value: bytes, keep_handle: bool):
    """Set the username link; a new random handle unless `keep_handle` and one exists. 409 when
    the account has no username."""
    ratelimit.check("usernameLinkOperation", str(account.aci), aci=account.aci)
    if confirmed_hash(account) is None:
        raise Conflict("No username is set")
    with transaction.atomic():
        link = UsernameLink.objects.select_for_update().filter(account=account).first()
        if link is None:
            link = UsernameLink(account=account)
        if not (keep_handle and link.pk is not None):
            link.handle = uuid.uuid4()
        link.encrypted_value = encrypted_value
        link.save()
    return link.handle


def delete_link(*, account: Account) -> None:
    ratelimit.check("usernameLinkOperation", str(account.aci), aci=account.aci)
    UsernameLink.objects.filter(account=account).delete()


def read_link(*, handle: uuid.UUID, client_ip: str | None) -> bytes:
    ratelimit.check("usernameLinkLookupPerIp", ratelimit.hashed(client_ip) if client_ip else None)
    value = UsernameLink.objects.filter(handle=handle).values_list("encrypted_value", flat=True).first()
    if value is None:
        raise NotFound()
    return bytes(value)


def purge_expired_claims() -> int:
    """Delete reservations and holds that have expired; how many."""
    deleted, _ = UsernameClaim.objects.filter(expires__lte=timezone.now()).delete()
    return deleted
