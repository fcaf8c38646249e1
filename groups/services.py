"""Every change to a group (docs/architecture.md, "Groups"): create, change, delete; and the
server's signature over each change.

A change is computed outside any transaction from the current state, then written with one
conditional `UPDATE … WHERE version = current` and one INSERT of the new version: of concurrent
changes to one version exactly one updates the row, the others see 0 rows and answer 409 with the
state that won. The same transaction keeps the membership index (`GroupMembership`) in step,
writing rows only for the users whose list the change altered.
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
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from groups import changes, selectors
from groups.changes import Caller
from groups.models import Group, GroupChange, GroupMembership
from media.avatars import group_avatar_form
from signalserver import ratelimit
from signalserver.crypto import server_key
from signalserver.errors import Conflict, Forbidden, NotFound
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


def _index(group: Group, before: dict | None, after: dict) -> None:
    """Bring the membership index from `before` (None for a new group) to `after`: the users who
    left or changed list lose their row, those who came or changed list get one."""
    old = changes.memberships(before).items() if before is not None else {}.items()
    new = changes.memberships(after).items()
    if moved := old - new:
        GroupMembership.objects.filter(group=group, service_id__in=[user_id for user_id, _ in moved]).delete()
    if came := new - old:
        # One statement with two array parameters: bulk_create's 3,000 parameters made a new
        # 1,000-member group 40 ms slower still (docs/performance.md, "Group membership index").
        users, kinds = zip(*came)
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_MEMBERSHIPS, [group.pk, list(users), list(kinds)])


_INSERT_MEMBERSHIPS = (
    f"INSERT INTO {GroupMembership._meta.db_table} (group_id, service_id, kind) "
    "SELECT %s, * FROM unnest(%s::text[], %s::text[])"
)


def _store(current: selectors.Current, applied: changes.Applied) -> GroupChange | None:
    """Write `applied` as the group's next version (its log row, counts and index), or nothing and
    None when another change took that version first."""
    version = applied.state["version"]
    row = _log_row(current.group, version, applied.actions, applied.state, applied.change_epoch)
    with transaction.atomic():
        taken = Group.objects.filter(pk=current.group.pk, version=version - 1).update(
            version=version, changed=timezone.now().date(), **_counts(applied.state)
        )
        if not taken:
            return None
        row.save()
        _index(current.group, current.state, applied.state)
    return row


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
            _index(row, None, state)
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
    row = _store(current, applied)
    if row is None:
        raise stale(selectors.current(group_id).state, caller)
    return ChangeResult(change=selectors.change_json(row.actions, row.signature, row.change_epoch), state=applied.state)


def stale(state: dict, caller: Caller) -> Conflict:
    """409 for a change not made on the current version: the current state as the body, for those
    who may read it (members and invitees); others learn the version from the join preview."""
    if changes.full_member(state, caller) is not None or changes.is_pending(state, caller):
        return Conflict(body=state)
    return Conflict("the group has a newer version")


def remove_account(*, account) -> int:
    """Take a deleted account's ACI and PNI out of the current state of every group that names
    them, each by a change the server makes (groups.changes.remove_users): signed like any other,
    with no source. Runs in the deletion's transaction, groups in id order (two deletions never
    wait on each other crosswise); a change another caller stores first is read and the removal
    computed again. Earlier versions keep the ids: they are the signed history members verify.
    Returns how many groups changed."""
    caller = Caller.of(account)
    user_ids = {caller.aci} | ({caller.pni} if caller.pni else set())
    found = GroupMembership.objects.filter(service_id__in=user_ids).values_list("group_id", "group__group_id").distinct()
    return sum(_remove_from(bytes(group_id), user_ids) for _, group_id in sorted(found))


# Each failed attempt means another change was stored first; past this many, the deletion answers
# 409 and rolls back whole rather than hold its locks any longer.
REMOVAL_ATTEMPTS = 20


def _remove_from(group_id: bytes, user_ids: set[str]) -> int:
    for _ in range(REMOVAL_ATTEMPTS):
        try:
            current = selectors.current(group_id)
        except NotFound:  # a moderator deleted it meanwhile
            return 0
        applied = changes.remove_users(current.state, user_ids, group_id=group_id)
        if applied is None:
            return 0
        if _store(current, applied) is not None:
            return 1
    raise Conflict("a group of this account changes too often; try again")


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
