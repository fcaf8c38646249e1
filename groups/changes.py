"""Signal's group rules (docs/architecture.md, "Groups"): who may do what, what a change does, and
what must hold afterwards. Pure functions over the state document; `groups.services` reads and
writes it.

A state is the JSON of Signal's `Group` (field names as on the wire, bytes as base64 text, users
as service ids). Permissions are checked against the state *before* the change, the actions apply
in Signal's order, the "some administrator" fix-up runs last, and the invariants are checked
against the state *after* it.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from groups.models import GroupMembership
from groups.wire import (
    ADMINISTRATOR,
    ANY,
    DEFAULT,
    DESCRIPTION_MAX_BYTES,
    INVITE_LINK_PASSWORD_BYTES,
    MEMBER,
    TITLE_MAX_BYTES,
    UNKNOWN,
    UNSATISFIABLE,
    InvalidGroupRequest,
)
from signalserver.errors import Forbidden
from signalserver.wire import b64decode, b64encode_url

# Change epochs (Signal): the lowest client feature level that understands a change.
INVITE_LINKS_EPOCH, DESCRIPTION_EPOCH, ANNOUNCEMENTS_ONLY_EPOCH, BANNED_EPOCH, JOIN_BY_PNI_EPOCH = 1, 2, 3, 4, 5
BANNED_REASON = {"X-Signal-Forbidden-Reason": "banned"}
# An avatar is an object our form made (`groups/<16 random bytes>`), or Signal's form of a path
# under this group (`groups/<group id>/<16 random bytes>`); both base64url without padding.
_RANDOM_PART = r"[A-Za-z0-9_-]{22}"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks, as the state names users: the account's ACI, and its PNI (`PNI:<uuid>`) if any."""

    aci: str
    pni: str | None

    @classmethod
    def of(cls, account) -> Caller:
        return cls(str(account.aci), f"PNI:{account.pni}" if account.pni else None)

    def is_(self, user_id: str) -> bool:
        return user_id == self.aci or (self.pni is not None and user_id == self.pni)


class Banned(Forbidden):
    """The caller is banned from the group (Signal's `X-Signal-Forbidden-Reason: banned`)."""

    message = "Banned from this group"

    def __init__(self):
        super().__init__(headers=dict(BANNED_REASON))


def bad(message: str):
    raise InvalidGroupRequest(message)


# ---- reading a state ------------------------------------------------------------------------------


def full_member(state: dict, caller: Caller) -> dict | None:
    return next((m for m in state["members"] if m["userId"] == caller.aci), None)


def is_admin(state: dict, caller: Caller) -> bool:
    member = full_member(state, caller)
    return member is not None and member["role"] == ADMINISTRATOR


def is_pending(state: dict, caller: Caller) -> bool:
    return any(caller.is_(p["member"]["userId"]) for p in state["membersPendingProfileKey"])


def is_requesting(state: dict, caller: Caller) -> bool:
    return any(caller.is_(r["userId"]) for r in state["membersPendingAdminApproval"])


def is_banned(state: dict, caller: Caller) -> bool:
    return any(caller.is_(b["userId"]) for b in state["membersBanned"])


def may_modify_attributes(state: dict, caller: Caller) -> bool:
    member = full_member(state, caller)
    if member is None:
        return False
    return state["accessControl"]["attributes"] != ADMINISTRATOR or member["role"] == ADMINISTRATOR


def link_password_matches(state: dict, password: bytes | None) -> bool:
    """Constant-time: does `password` open the group's current invite link? (No link: never.)"""
    current = b64decode(state["inviteLinkPassword"])
    return bool(current) and password is not None and hmac.compare_digest(current, password)


def member_ids(state: dict) -> list[str]:
    return [m["userId"] for m in state["members"]]


def memberships(state: dict) -> dict[str, str]:
    """Every user the state names, and in which list (a GroupMembership kind)."""
    kinds = {m["userId"]: GroupMembership.MEMBER for m in state["members"]}
    kinds.update((p["member"]["userId"], GroupMembership.PENDING) for p in state["membersPendingProfileKey"])
    kinds.update((r["userId"], GroupMembership.REQUESTING) for r in state["membersPendingAdminApproval"])
    kinds.update((b["userId"], GroupMembership.BANNED) for b in state["membersBanned"])
    return kinds


def _members_may_add(state: dict) -> bool:
    return state["accessControl"]["members"] in (MEMBER, ANY)


# ---- applying a change ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Applied:
    state: dict  # after the change, version included
    actions: dict  # as stored and signed: what the server filled in, the fix-up's roles, source and group id
    change_epoch: int


def apply_change(
    before: dict, actions: dict, *, caller: Caller, link_password: bytes | None, group_id: bytes, now_ms: int, max_size: int
) -> Applied:
    """The state after `actions` (parsed by groups.wire, version already checked), or Forbidden
    (403) / InvalidGroupRequest (400)."""
    version = actions["version"]
    after = {**before, "version": version}
    for name in ("members", "membersPendingProfileKey", "membersPendingAdminApproval", "membersBanned"):
        after[name] = list(before[name])
    after["accessControl"] = dict(before["accessControl"])
    out = {"version": version}
    epoch = 0
    admin = is_admin(before, caller)
    member = full_member(before, caller)

    def record(name: str, value) -> None:
        out[name] = value

    def ids(entries) -> set[str]:
        return {e["userId"] for e in entries}

    def pending_ids() -> set[str]:
        return {p["member"]["userId"] for p in after["membersPendingProfileKey"]}

    def no_duplicates(values: list[str]) -> None:
        if len(set(values)) != len(values):
            bad("the same user twice in one action")

    # Bans first, so that one change can lift a ban and add the user.
    if deleted := actions.get("deleteMembersBanned"):
        if not (admin or (member is not None and _members_may_add(before))):
            raise Forbidden("only administrators (or members, when members may add members) lift bans")
        gone = [d["deletedUserId"] for d in deleted]
        no_duplicates(gone)
        if not set(gone) <= ids(after["membersBanned"]):
            bad("some users are not banned")
        after["membersBanned"] = [b for b in after["membersBanned"] if b["userId"] not in set(gone)]
        record("deleteMembersBanned", deleted)
        epoch = max(epoch, BANNED_EPOCH)

    if added := actions.get("addMembersBanned"):
        if not admin:
            raise Forbidden("only administrators ban")
        new = [a["added"]["userId"] for a in added]
        no_duplicates(new)
        if set(new) & ids(after["membersBanned"]):
            bad("some users are already banned")
        entries = [{"userId": user_id, "timestamp": now_ms} for user_id in new]
        after["membersBanned"] += entries
        record("addMembersBanned", [{"added": entry} for entry in entries])
        epoch = max(epoch, BANNED_EPOCH)

    if added := actions.get("addMembers"):
        new = [a["added"]["userId"] for a in added]
        via_link = False
        if member is None:
            # A non-member adds only themself: when anyone may add members, or with the link.
            if is_banned(before, caller):
                raise Banned()
            link_open = before["accessControl"]["addFromInviteLink"] == ANY and link_password_matches(before, link_password)
            if not (before["accessControl"]["members"] == ANY or link_open) or new != [caller.aci]:
                raise Forbidden("not allowed to add members")
            via_link = before["accessControl"]["members"] != ANY
        elif not (admin or _members_may_add(before)):
            raise Forbidden("only administrators add members")
        if any(a["added"]["role"] == ADMINISTRATOR for a in added) and not admin:
            raise Forbidden("only administrators add administrators")
        no_duplicates(new)
        if set(new) & ids(before["members"]):
            bad("some users are already members")
        entries = [{**a["added"], "joinedAtVersion": version} for a in added]
        after["members"] += entries
        joined = set(new)
        after["membersPendingProfileKey"] = [p for p in after["membersPendingProfileKey"] if p["member"]["userId"] not in joined]
        after["membersPendingAdminApproval"] = [r for r in after["membersPendingAdminApproval"] if r["userId"] not in joined]
        record("addMembers", [{"added": entry, "joinFromInviteLink": via_link} for entry in entries])

    if deleted := actions.get("deleteMembers"):
        gone = [d["deletedUserId"] for d in deleted]
        no_duplicates(gone)
        if not (admin or gone == [caller.aci]):
            raise Forbidden("members may remove only themselves")
        if not set(gone) <= ids(after["members"]):
            bad("some users are not members")
        after["members"] = [m for m in after["members"] if m["userId"] not in set(gone)]
        record("deleteMembers", deleted)

    if modified := actions.get("modifyMemberRoles"):
        users = [m["userId"] for m in modified]
        no_duplicates(users)
        if not admin:
            raise Forbidden("only administrators change roles")
        if not set(users) <= ids(after["members"]):
            bad("some users are not members")
        roles = {m["userId"]: m["role"] for m in modified}
        after["members"] = [{**m, "role": roles[m["userId"]]} if m["userId"] in roles else m for m in after["members"]]
        record("modifyMemberRoles", modified)

    if modified := actions.get("modifyMemberProfileKeys"):
        if len(modified) > 1:
            bad("the same user twice in one action")
        index = next((i for i, m in enumerate(after["members"]) if m["userId"] == caller.aci), None)
        if index is None:
            raise Forbidden("only members update their profile key")
        after["members"][index] = {**after["members"][index], "profileKey": modified[0]["profileKey"]}
        record("modifyMemberProfileKeys", [{"userId": caller.aci, "profileKey": modified[0]["profileKey"]}])

    if added := actions.get("addMembersPendingProfileKey"):
        if member is None or not (admin or _members_may_add(before)):
            raise Forbidden("not allowed to invite")
        if any(a["added"]["member"]["role"] == ADMINISTRATOR for a in added) and not admin:
            raise Forbidden("only administrators invite administrators")
        new = [a["added"]["member"]["userId"] for a in added]
        no_duplicates(new)
        if set(new) & (ids(before["members"]) | {p["member"]["userId"] for p in before["membersPendingProfileKey"]}):
            bad("some users are already members or invited")
        entries = [
            {"member": {**a["added"]["member"], "joinedAtVersion": version}, "addedByUserId": caller.aci, "timestamp": now_ms}
            for a in added
        ]
        after["membersPendingProfileKey"] += entries
        record("addMembersPendingProfileKey", [{"added": entry} for entry in entries])

    if deleted := actions.get("deleteMembersPendingProfileKey"):
        gone = [d["deletedUserId"] for d in deleted]
        no_duplicates(gone)
        if not (admin or (len(gone) == 1 and caller.is_(gone[0]))):
            raise Forbidden("only administrators, or the invitee, revoke an invitation")
        if not set(gone) <= pending_ids():
            bad("some users are not invited")
        after["membersPendingProfileKey"] = [p for p in after["membersPendingProfileKey"] if p["member"]["userId"] not in set(gone)]
        record("deleteMembersPendingProfileKey", deleted)

    if promoted := actions.get("promoteMembersPendingProfileKey"):
        if len(promoted) > 1:
            bad("the same user twice in one action")
        invited = next((p for p in after["membersPendingProfileKey"] if p["member"]["userId"] == caller.aci), None)
        if invited is None:
            raise Forbidden("only the invitee accepts an invitation")
        after["membersPendingProfileKey"] = [p for p in after["membersPendingProfileKey"] if p is not invited]
        profile_key = promoted[0]["profileKey"]
        after["members"].append({**invited["member"], "profileKey": profile_key, "joinedAtVersion": version})
        record("promoteMembersPendingProfileKey", [{"userId": caller.aci, "profileKey": profile_key}])

    for name, field in (("modifyTitle", "title"), ("modifyAvatar", "avatar"), ("modifyDisappearingMessageTimer", "timer")):
        if name in actions:
            if not may_modify_attributes(before, caller):
                raise Forbidden("not allowed to modify the group's attributes")
            value = actions[name].get(field, "")
            after["disappearingMessagesTimer" if field == "timer" else field] = value
            record(name, {field: value})

    for name, field, access in (
        ("modifyAttributesAccess", "attributesAccess", "attributes"),
        ("modifyMemberAccess", "membersAccess", "members"),
        ("modifyAddFromInviteLinkAccess", "addFromInviteLinkAccess", "addFromInviteLink"),
    ):
        if name in actions:
            if not admin:
                raise Forbidden("only administrators change access control")
            after["accessControl"][access] = actions[name][field]
            record(name, actions[name])
            if access == "addFromInviteLink":
                epoch = max(epoch, INVITE_LINKS_EPOCH)

    if added := actions.get("addMembersPendingAdminApproval"):
        if is_banned(before, caller):
            raise Banned()
        if not (before["accessControl"]["addFromInviteLink"] == ADMINISTRATOR and link_password_matches(before, link_password)):
            raise Forbidden("joining needs the invite link, with approval on")
        if len(added) != 1:
            bad("a join request names only the caller")
        if caller.aci in ids(after["members"]) | pending_ids() | ids(after["membersPendingAdminApproval"]):
            bad("already a member, invited, or asking to join")
        entry = {"userId": caller.aci, "profileKey": added[0]["added"]["profileKey"], "timestamp": now_ms}
        after["membersPendingAdminApproval"].append(entry)
        record("addMembersPendingAdminApproval", [{"added": entry}])
        epoch = max(epoch, INVITE_LINKS_EPOCH)

    if deleted := actions.get("deleteMembersPendingAdminApproval"):
        gone = [d["deletedUserId"] for d in deleted]
        no_duplicates(gone)
        if not (admin or (len(gone) == 1 and caller.is_(gone[0]))):
            raise Forbidden("only administrators, or the requester, remove a join request")
        if not set(gone) <= ids(after["membersPendingAdminApproval"]):
            bad("some users are not asking to join")
        after["membersPendingAdminApproval"] = [r for r in after["membersPendingAdminApproval"] if r["userId"] not in set(gone)]
        record("deleteMembersPendingAdminApproval", deleted)
        epoch = max(epoch, INVITE_LINKS_EPOCH)

    if promoted := actions.get("promoteMembersPendingAdminApproval"):
        if not admin:
            raise Forbidden("only administrators approve join requests")
        users = [p["userId"] for p in promoted]
        no_duplicates(users)
        if set(users) & ids(after["members"]):
            bad("some users are already members")
        requests = {r["userId"]: r for r in after["membersPendingAdminApproval"]}
        if not set(users) <= set(requests):
            bad("some users are not asking to join")
        after["members"] += [
            {"userId": p["userId"], "role": p["role"], "profileKey": requests[p["userId"]]["profileKey"], "joinedAtVersion": version}
            for p in promoted
        ]
        after["membersPendingAdminApproval"] = [r for r in after["membersPendingAdminApproval"] if r["userId"] not in set(users)]
        record("promoteMembersPendingAdminApproval", promoted)
        epoch = max(epoch, INVITE_LINKS_EPOCH)

    if "modifyInviteLinkPassword" in actions:
        if not admin:
            raise Forbidden("only administrators reset the invite link")
        after["inviteLinkPassword"] = actions["modifyInviteLinkPassword"].get("inviteLinkPassword", "")
        record("modifyInviteLinkPassword", {"inviteLinkPassword": after["inviteLinkPassword"]})
        epoch = max(epoch, INVITE_LINKS_EPOCH)

    if "modifyDescription" in actions:
        if not may_modify_attributes(before, caller):
            raise Forbidden("not allowed to modify the group's attributes")
        after["description"] = actions["modifyDescription"].get("description", "")
        record("modifyDescription", {"description": after["description"]})
        epoch = max(epoch, DESCRIPTION_EPOCH)

    if "modifyAnnouncementsOnly" in actions:
        if not admin:
            raise Forbidden("only administrators switch announcements-only")
        after["announcementsOnly"] = actions["modifyAnnouncementsOnly"].get("announcementsOnly", False)
        record("modifyAnnouncementsOnly", {"announcementsOnly": after["announcementsOnly"]})
        epoch = max(epoch, ANNOUNCEMENTS_ONLY_EPOCH)

    if promoted := actions.get("promoteMembersPendingPniAciProfileKey"):
        # A user invited by phone number (their PNI) accepts as their ACI.
        if len(promoted) > 1:
            bad("the same user twice in one action")
        pending = after["membersPendingProfileKey"]
        invited = None if caller.pni is None else next((p for p in pending if p["member"]["userId"] == caller.pni), None)
        if invited is None:
            raise Forbidden("only the invitee accepts an invitation")
        if caller.aci in ids(after["members"]):
            bad("already a member")
        after["membersPendingProfileKey"] = [p for p in after["membersPendingProfileKey"] if not caller.is_(p["member"]["userId"])]
        profile_key = promoted[0]["profileKey"]
        after["members"].append({**invited["member"], "userId": caller.aci, "profileKey": profile_key, "joinedAtVersion": version})
        record("promoteMembersPendingPniAciProfileKey", [{"userId": caller.aci, "pni": caller.pni, "profileKey": profile_key}])
        epoch = max(epoch, JOIN_BY_PNI_EPOCH)

    ensure_some_administrator(after, out)
    source = change_source(before, after, caller)
    if source is None:
        raise Forbidden("not a member of this group")
    check_invariants(after, group_id=group_id, max_size=max_size)
    out = {"groupId": b64encode_url(group_id, padded=False), "sourceUuid": source, **out}
    return Applied(state=after, actions=out, change_epoch=epoch)


def remove_users(before: dict, user_ids: set[str], *, group_id: bytes) -> Applied | None:
    """The change the server makes when an account is deleted: these users (its ACI and PNI) leave
    every list of the group, as version + 1 with no source, the administrator fix-up applied. None
    when the group names none of them."""
    version = before["version"] + 1
    after = {**before, "version": version}
    out = {"version": version}
    epoch = 0
    for name, action, user_of, action_epoch in (
        ("members", "deleteMembers", lambda e: e["userId"], 0),
        ("membersPendingProfileKey", "deleteMembersPendingProfileKey", lambda e: e["member"]["userId"], 0),
        ("membersPendingAdminApproval", "deleteMembersPendingAdminApproval", lambda e: e["userId"], INVITE_LINKS_EPOCH),
        ("membersBanned", "deleteMembersBanned", lambda e: e["userId"], BANNED_EPOCH),
    ):
        gone = [user_of(e) for e in before[name] if user_of(e) in user_ids]
        if gone:
            after[name] = [e for e in before[name] if user_of(e) not in user_ids]
            out[action] = [{"deletedUserId": user_id} for user_id in gone]
            epoch = max(epoch, action_epoch)
    if len(out) == 1:
        return None
    ensure_some_administrator(after, out)
    # Removing users never grows a group: a GROUP_MAX_SIZE lowered since must not block a deletion.
    check_invariants(after, group_id=group_id, max_size=2**31)
    return Applied(state=after, actions={"groupId": b64encode_url(group_id, padded=False), **out}, change_epoch=epoch)


def ensure_some_administrator(state: dict, actions: dict) -> None:
    """A group with members keeps an administrator: when a change leaves none, every member who
    neither joined nor had their role set by this change becomes one (recorded as role changes
    in the change itself), and if that is nobody, everyone does."""
    members = state["members"]
    if not members or any(m["role"] == ADMINISTRATOR for m in members):
        return
    version = state["version"]
    set_now = {m["userId"] for m in actions.get("modifyMemberRoles", [])}
    eligible = {m["userId"] for m in members if m["joinedAtVersion"] != version and m["userId"] not in set_now}
    promoted = eligible or {m["userId"] for m in members}
    state["members"] = [{**m, "role": ADMINISTRATOR} if m["userId"] in promoted else m for m in members]
    actions["modifyMemberRoles"] = actions.get("modifyMemberRoles", []) + [
        {"userId": m["userId"], "role": ADMINISTRATOR} for m in members if m["userId"] in promoted
    ]


def change_source(before: dict, after: dict, caller: Caller) -> str | None:
    """Who made the change, as the group names them: the caller's ACI if the group knew it before,
    else the identity it knew (a PNI invitation), else the one the change brought in (a join)."""
    known = [m["userId"] for m in before["members"] if caller.is_(m["userId"])]
    known += [p["member"]["userId"] for p in before["membersPendingProfileKey"] if caller.is_(p["member"]["userId"])]
    known += [r["userId"] for r in before["membersPendingAdminApproval"] if caller.is_(r["userId"])]
    if known:
        return caller.aci if caller.aci in known else known[0]
    joined = [m["userId"] for m in after["members"] if caller.is_(m["userId"])]
    joined += [r["userId"] for r in after["membersPendingAdminApproval"] if caller.is_(r["userId"])]
    return joined[0] if joined else None


def check_invariants(state: dict, *, group_id: bytes, max_size: int) -> None:
    """What every state must satisfy (400 otherwise)."""
    title = b64decode(state["title"])
    if not title or len(title) > TITLE_MAX_BYTES:
        bad("the title must be 1 to 1024 bytes")
    if len(b64decode(state["description"])) > DESCRIPTION_MAX_BYTES:
        bad("the description is too long")
    if not valid_avatar(state["avatar"], group_id):
        bad("the avatar is not a path of this group's avatar form")
    password = b64decode(state["inviteLinkPassword"])
    if password and len(password) != INVITE_LINK_PASSWORD_BYTES:
        bad("an invite link password is 16 bytes")
    access = state["accessControl"]
    if not password and access["addFromInviteLink"] not in (UNSATISFIABLE, UNKNOWN):
        bad("an enabled invite link needs a password")
    if access["attributes"] not in (UNKNOWN, MEMBER, ADMINISTRATOR) or access["members"] not in (UNKNOWN, MEMBER, ADMINISTRATOR):
        bad("attributes and members access are MEMBER or ADMINISTRATOR")
    if access["addFromInviteLink"] not in (UNKNOWN, ANY, ADMINISTRATOR, UNSATISFIABLE):
        bad("addFromInviteLink access is ANY, ADMINISTRATOR or UNSATISFIABLE")
    members = [m["userId"] for m in state["members"]]
    pending = [p["member"]["userId"] for p in state["membersPendingProfileKey"]]
    requesting = [r["userId"] for r in state["membersPendingAdminApproval"]]
    banned = [b["userId"] for b in state["membersBanned"]]
    if len(members) + len(pending) > max_size:
        bad(f"a group has at most {max_size} members and invitees")
    if len(requesting) > max_size or len(banned) > max_size:
        bad(f"at most {max_size} join requests and {max_size} bans")
    everyone = members + pending + requesting + banned
    if len(set(everyone)) != len(everyone):
        bad("a user appears twice among members, invitees, join requests and bans")
    if any(m["role"] not in (DEFAULT, ADMINISTRATOR) for m in state["members"]):
        bad("invalid role")


def valid_avatar(path: str, group_id: bytes) -> bool:
    if not path:
        return True
    own = re.escape(b64encode_url(group_id, padded=False))
    return re.fullmatch(rf"groups/(?:{own}/)?{_RANDOM_PART}", path) is not None


# ---- creating -------------------------------------------------------------------------------------


def initial_state(group: dict, *, caller: Caller, group_id: bytes, now_ms: int, max_size: int) -> tuple[dict, dict]:
    """The state of a new group (version 0) and its first log entry's actions, or 400: the creator
    is an administrator member; members and invitees, no join requests or bans."""
    if group.get("version", 0) != 0:
        bad("a new group has version 0")
    access = {"addFromInviteLink": UNSATISFIABLE, **group["accessControl"]}
    if UNKNOWN in (access["attributes"], access["members"]):
        bad("attributes and members access are MEMBER or ADMINISTRATOR")
    creator = next((m for m in group["members"] if m["userId"] == caller.aci), None)
    if creator is None or creator["role"] != ADMINISTRATOR:
        bad("the creator must be an administrator member")
    state = {
        "publicKey": group["publicKey"],
        "title": group["title"],
        "description": group.get("description", ""),
        "avatar": group.get("avatar", ""),
        "disappearingMessagesTimer": group.get("disappearingMessagesTimer", ""),
        "accessControl": access,
        "version": 0,
        "members": [{**m, "joinedAtVersion": 0} for m in group["members"]],
        "membersPendingProfileKey": [
            {"member": {**p["member"], "joinedAtVersion": 0}, "addedByUserId": caller.aci, "timestamp": now_ms}
            for p in group.get("membersPendingProfileKey", [])
        ],
        "membersPendingAdminApproval": [],
        "inviteLinkPassword": group.get("inviteLinkPassword", ""),
        "announcementsOnly": group.get("announcementsOnly", False),
        "membersBanned": [],
    }
    check_invariants(state, group_id=group_id, max_size=max_size)
    actions = {"groupId": b64encode_url(group_id, padded=False), "sourceUuid": caller.aci, "version": 0}
    return state, actions
