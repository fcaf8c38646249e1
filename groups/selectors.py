"""Reads of groups (docs/architecture.md, "Groups"): the current state, the log, the join preview,
an account's groups."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from django.conf import settings
from django.db.models import F

from groups import changes
from groups.changes import Banned, Caller
from groups.models import Group, GroupChange, GroupMembership
from groups.send_tokens import group_send_credentials
from groups.wire import ADMINISTRATOR, ANY
from signalserver.errors import Forbidden, NotFound
from signalserver.wire import b64encode

LOG_PAGE_MAX = 64


@dataclass(frozen=True, slots=True)
class Current:
    group: Group
    state: dict


def current(group_id: bytes) -> Current:
    """The group and its current state (one query), or 404."""
    row = (
        GroupChange.objects.select_related("group")
        .filter(group__group_id=group_id, version=F("group__version"))
        .only("state", "version", "group__id", "group__version")
        .first()
    )
    if row is None:
        raise NotFound("no such group")
    return Current(row.group, orjson.loads(row.state))


def change_json(actions: bytes, signature: bytes, change_epoch: int) -> dict:
    """A signed change as the API shows it (Signal's `GroupChange`): the serialized actions, as
    signed, in base64."""
    return {"actions": b64encode(bytes(actions)), "serverSignature": b64encode(bytes(signature)), "changeEpoch": change_epoch}


def send_credentials(state: dict, caller: Caller) -> dict | None:
    """Group send endorsements for a full member (groups.send_tokens); None for anyone else."""
    if changes.full_member(state, caller) is None:
        return None
    return group_send_credentials(changes.member_ids(state), caller.aci)


def endorsements_for(state: dict, account) -> dict | None:
    return send_credentials(state, Caller.of(account))


def read_group(*, account, group_id: bytes) -> dict:
    """`{"group", "groupSendEndorsements"}` for a member or an invitee; 403 for anyone else."""
    caller = Caller.of(account)
    state = current(group_id).state
    if changes.full_member(state, caller) is None and not changes.is_pending(state, caller):
        raise Forbidden("not a member of this group")
    return {"group": state, "groupSendEndorsements": send_credentials(state, caller)}


@dataclass(frozen=True, slots=True)
class LogPage:
    body: dict
    content_range: str | None  # set when more versions follow (a 206)


def read_log(
    *,
    account,
    group_id: bytes,
    from_version: int,
    limit: int,
    max_supported_change_epoch: int | None,
    include_first_state: bool,
    include_last_state: bool,
) -> LogPage:
    """The changes from `from_version` on, at most `limit` (1..64): only for full members and only
    from the version they joined at (403 otherwise). A state is included where the client cannot
    apply the change itself (its epoch is above `max_supported_change_epoch`, or that is not
    given), and at the first and last version of the page when asked for."""
    caller = Caller.of(account)
    found = current(group_id)
    member = changes.full_member(found.state, caller)
    if member is None or member["joinedAtVersion"] > from_version:
        raise Forbidden("only members read the log, from the version they joined at")
    latest = found.state["version"]
    credentials = send_credentials(found.state, caller)
    if from_version > latest:
        return LogPage({"groupChanges": [], "groupSendEndorsements": credentials}, None)
    limit = max(1, min(limit, LOG_PAGE_MAX))
    last = min(latest, from_version + limit - 1)
    rows = list(
        GroupChange.objects.filter(group=found.group, version__gte=from_version, version__lte=last)
        .order_by("version")
        .values_list("version", "actions", "signature", "change_epoch")
    )

    def wants_state(version: int, epoch: int) -> bool:
        return (
            max_supported_change_epoch is None
            or epoch > max_supported_change_epoch
            or (include_first_state and version == from_version)
            or (include_last_state and version == last)
        )

    wanted = [version for version, _, _, epoch in rows if wants_state(version, epoch)]
    states = dict(GroupChange.objects.filter(group=found.group, version__in=wanted).values_list("version", "state")) if wanted else {}
    entries = [
        {
            "groupChange": change_json(actions, signature, epoch),
            "groupState": orjson.loads(states[version]) if version in states else None,
        }
        for version, actions, signature, epoch in rows
    ]
    content_range = f"versions {from_version}-{last}/{latest}" if last < latest else None
    return LogPage({"groupChanges": entries, "groupSendEndorsements": credentials}, content_range)


def joined_at_version(*, account, group_id: bytes) -> int:
    member = changes.full_member(current(group_id).state, Caller.of(account))
    if member is None:
        raise Forbidden("not a member of this group")
    return member["joinedAtVersion"]


def join_info(*, account, group_id: bytes, link_password: bytes | None) -> dict:
    """What a link holder sees before joining (Signal's `GroupJoinInfo`): 403 without the group's
    current password or with its link off (unless already asking to join), 403 with the banned
    reason for a banned user."""
    caller = Caller.of(account)
    state = current(group_id).state
    requesting = changes.is_requesting(state, caller)
    link_access = state["accessControl"]["addFromInviteLink"]
    if not requesting and not (changes.link_password_matches(state, link_password) and link_access in (ANY, ADMINISTRATOR)):
        raise Forbidden("no such invite link")
    if changes.is_banned(state, caller):
        raise Banned()
    return {
        "publicKey": state["publicKey"],
        "title": state["title"],
        "description": state["description"],
        "avatar": state["avatar"],
        "memberCount": len(state["members"]),
        "addFromInviteLink": link_access,
        "version": state["version"],
        "pendingAdminApproval": requesting,
        "pendingAdminApprovalFull": len(state["membersPendingAdminApproval"]) >= settings.GROUP_MAX_SIZE,
    }


def groups_of(aci, pni=None) -> list[dict]:
    """An account's place in every group whose current state names its ACI or PNI, for its data
    report: the group id (base64, as in `X-Group-Id`), which of its ids, the list it is on, and a
    member's role and joinedAtVersion (an invitee's: the version it was invited at). Nothing of
    the group's content or other members."""
    user_ids = [str(aci)] + ([f"PNI:{pni}"] if pni else [])
    group_pks = GroupMembership.objects.filter(service_id__in=user_ids).values_list("group_id", flat=True)
    rows = (
        GroupChange.objects.filter(group_id__in=group_pks, version=F("group__version"))
        .order_by("group_id")
        .values_list("group__group_id", "state")
    )
    found = []
    for group_id, text in rows:
        state = orjson.loads(text)
        kinds = changes.memberships(state)
        for user_id in user_ids:
            kind = kinds.get(user_id)
            if kind is None:
                continue
            entry = {"groupId": b64encode(bytes(group_id)), "serviceId": user_id, "status": kind}
            if kind == GroupMembership.MEMBER:
                member = next(m for m in state["members"] if m["userId"] == user_id)
                entry |= {"role": member["role"], "joinedAtVersion": member["joinedAtVersion"]}
            elif kind == GroupMembership.PENDING:
                invited = next(p["member"] for p in state["membersPendingProfileKey"] if p["member"]["userId"] == user_id)
                entry["joinedAtVersion"] = invited["joinedAtVersion"]
            found.append(entry)
    return found
