"""Every change to a group (docs/architecture.md, "Groups"): create, change, delete; and the
server's signature over each change.

A change is computed outside any transaction from the current state, then written with one
conditional `UPDATE … WHERE version = current` and one INSERT of the new version: of concurrent
changes to one version exactly one updates the row, the others see 0 rows and answer 409 with the
state that won.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone

from groups import changes, selectors
from groups.changes import Caller
from groups.models import Group, GroupChange
from media.avatars import group_avatar_form
from signalserver import ratelimit
from signalserver.crypto import server_key
from signalserver.errors import Conflict, Forbidden
from signalserver.wire import b64decode


@dataclass(frozen=True, slots=True)
class ChangeResult:
    change: dict  # the signed change as the API shows it
    state: dict  # the state it made


# ---- the server's signature over changes ----------------------------------------------------------


@cache
def _signing_key(configured: str) -> Ed25519PrivateKey:
    try:
        seed = b64decode(configured) if configured else server_key("group changes")
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ImproperlyConfigured("GROUP_CHANGE_SIGNING_KEY must be base64 of 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def signing_key() -> Ed25519PrivateKey:
    """The Ed25519 key that signs group changes: GROUP_CHANGE_SIGNING_KEY (base64 of a 32-byte
    seed) or, unset, one derived from SECRET_KEY."""
    return _signing_key(settings.GROUP_CHANGE_SIGNING_KEY)


def public_key() -> bytes:
    """The 32-byte Ed25519 public key clients verify `serverSignature` with."""
    return signing_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def serialize_actions(actions: dict) -> bytes:
    """The canonical bytes of a change (sorted keys, no spaces): what is signed and served."""
    return orjson.dumps(actions, option=orjson.OPT_SORT_KEYS)


# ---- create, change, delete -----------------------------------------------------------------------


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _counts(state: dict) -> dict:
    return {
        "member_count": len(state["members"]),
        "pending_count": len(state["membersPendingProfileKey"]),
        "requesting_count": len(state["membersPendingAdminApproval"]),
        "banned_count": len(state["membersBanned"]),
    }


def _log_row(group: Group, version: int, actions: dict, state: dict, change_epoch: int) -> GroupChange:
    serialized = serialize_actions(actions)
    return GroupChange(
        group=group,
        version=version,
        actions=serialized,
        signature=signing_key().sign(serialized),
        change_epoch=change_epoch,
        state=orjson.dumps(state).decode(),
    )


def create_group(*, account, group_id: bytes, group: dict) -> dict:
    """Create a group from its initial state (parsed by groups.wire.parse_new_group); 409 when a
    group with this id exists. Returns the stored state."""
    ratelimit.check("groupCreate", str(account.aci), aci=account.aci)
    state, actions = changes.initial_state(
        group, caller=Caller.of(account), group_id=group_id, now_ms=_now_ms(), max_size=settings.GROUP_MAX_SIZE
    )
    try:
        with transaction.atomic():
            row = Group.objects.create(group_id=group_id, version=0, **_counts(state))
            _log_row(row, 0, actions, state, 0).save()
    except IntegrityError:
        raise Conflict("a group with this id exists") from None
    return state


def change_group(*, account, group_id: bytes, actions: dict, link_password: bytes | None) -> ChangeResult:
    """Apply `actions` (parsed by groups.wire.parse_actions) as version current + 1: 404 without
    the group, 409 with the current state when the version is not the next one (or another change
    took it first), 403 / 400 by the group's rules."""
    ratelimit.check("groupChange", str(account.aci), aci=account.aci)
    caller = Caller.of(account)
    current = selectors.current(group_id)
    if actions["version"] != current.state["version"] + 1:
        raise stale(current.state, caller)
    applied = changes.apply_change(
        current.state,
        actions,
        caller=caller,
        link_password=link_password,
        group_id=group_id,
        now_ms=_now_ms(),
        max_size=settings.GROUP_MAX_SIZE,
    )
    version = applied.state["version"]
    row = _log_row(current.group, version, applied.actions, applied.state, applied.change_epoch)
    with transaction.atomic():
        taken = Group.objects.filter(pk=current.group.pk, version=version - 1).update(
            version=version, changed=timezone.now().date(), **_counts(applied.state)
        )
        if not taken:
            raise stale(selectors.current(group_id).state, caller)
        row.save()
    return ChangeResult(change=selectors.change_json(row.actions, row.signature, row.change_epoch), state=applied.state)


def stale(state: dict, caller: Caller) -> Conflict:
    """409 for a change not made on the current version: the current state as the body, for those
    who may read it (members and invitees); others learn the version from the join preview."""
    if changes.full_member(state, caller) is not None or changes.is_pending(state, caller):
        return Conflict(body=state)
    return Conflict("the group has a newer version")


def delete_group(*, group: Group) -> None:
    """An operator removes an abusive group and its whole history."""
    group.delete()


def avatar_upload_form(*, account, group_id: bytes) -> dict:
    """An upload form for a new group avatar (3 MiB at most), for members allowed to modify the
    group's attributes."""
    current = selectors.current(group_id)
    if not changes.may_modify_attributes(current.state, Caller.of(account)):
        raise Forbidden("not allowed to modify the group's attributes")
    return group_avatar_form()
