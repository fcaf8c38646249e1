"""Every row of the group permission table, allowed and refused, through PATCH /v2/groups.
Permissions are checked against the state before the change; a refusal is 403 and changes nothing."""

import base64
import json
import os

import pytest

from tests.groups.helpers import Person, change, create_group, current_version, member_roles, profile_key, stored_state

pytestmark = pytest.mark.django_db

ADMIN_ONLY = {"attributes": "ADMINISTRATOR", "members": "ADMINISTRATOR", "addFromInviteLink": "UNSATISFIABLE"}


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def allowed(response, group_id, version):
    assert response.status_code == 200, response.content
    assert current_version(group_id) == version


def refused(response, group_id, version):
    assert response.status_code == 403, response.content
    assert current_version(group_id) == version


@pytest.fixture
def people():
    return Person(), Person(), Person(), Person()  # admin, member, outsider, spare


def group_with(admin, member, access=None, **kwargs):
    extra = {} if access is None else {"accessControl": access}
    return create_group(admin, members=[member], **kwargs, **extra)


# ---- attributes: title, avatar, description, timer --------------------------------------------------


ATTRIBUTE_CHANGES = [
    {"modifyTitle": {"title": b64(b"new title")}},
    {"modifyAvatar": {"avatar": "groups/" + "A" * 22}},
    {"modifyDescription": {"description": b64(b"about")}},
    {"modifyDisappearingMessageTimer": {"timer": b64(os.urandom(40))}},
]


@pytest.mark.parametrize("action", ATTRIBUTE_CHANGES)
def test_any_member_modifies_attributes_when_attributes_access_is_member(people, action):
    admin, member, outsider, _ = people
    group_id = group_with(admin, member)
    allowed(change(member, group_id, **action), group_id, 1)
    refused(change(outsider, group_id, **action), group_id, 1)


@pytest.mark.parametrize("action", ATTRIBUTE_CHANGES)
def test_only_administrators_modify_attributes_when_attributes_access_is_administrator(people, action):
    admin, member, _, _ = people
    group_id = group_with(admin, member, ADMIN_ONLY)
    refused(change(member, group_id, **action), group_id, 0)
    allowed(change(admin, group_id, **action), group_id, 1)


def test_an_invitee_may_not_modify_attributes(people):
    admin, member, outsider, _ = people
    group_id = group_with(admin, member, invited=[outsider.aci])
    refused(change(outsider, group_id, modifyTitle={"title": b64(b"x")}), group_id, 0)


# ---- adding members ---------------------------------------------------------------------------------


def test_administrators_always_add_members_and_defaults_only_when_members_access_is_member(people):
    admin, member, newcomer, spare = people
    open_group = group_with(admin, member)
    allowed(change(member, open_group, addMembers=[{"added": newcomer.member()}]), open_group, 1)

    closed = group_with(admin, member, ADMIN_ONLY)
    refused(change(member, closed, addMembers=[{"added": spare.member()}]), closed, 0)
    allowed(change(admin, closed, addMembers=[{"added": spare.member()}]), closed, 1)


def test_only_administrators_add_administrators(people):
    admin, member, newcomer, _ = people
    group_id = group_with(admin, member)
    refused(change(member, group_id, addMembers=[{"added": newcomer.member("ADMINISTRATOR")}]), group_id, 0)
    allowed(change(admin, group_id, addMembers=[{"added": newcomer.member("ADMINISTRATOR")}]), group_id, 1)
    assert member_roles(group_id)[newcomer.aci] == "ADMINISTRATOR"


def test_a_non_member_adds_only_themself_and_only_with_the_open_link(people):
    admin, member, outsider, spare = people
    password = os.urandom(16)
    link = {"attributes": "MEMBER", "members": "MEMBER", "addFromInviteLink": "ANY"}
    group_id = group_with(admin, member, link, inviteLinkPassword=b64(password))

    refused(change(outsider, group_id, addMembers=[{"added": outsider.member()}]), group_id, 0)  # no password
    refused(change(outsider, group_id, password=os.urandom(16), addMembers=[{"added": outsider.member()}]), group_id, 0)
    refused(change(outsider, group_id, password=password, addMembers=[{"added": spare.member()}]), group_id, 0)
    refused(change(outsider, group_id, password=password, addMembers=[{"added": outsider.member("ADMINISTRATOR")}]), group_id, 0)
    allowed(change(outsider, group_id, password=password, addMembers=[{"added": outsider.member()}]), group_id, 1)
    assert member_roles(group_id)[outsider.aci] == "DEFAULT"


# ---- invitations ------------------------------------------------------------------------------------


def test_administrators_invite_and_defaults_only_when_members_access_is_member(people):
    admin, member, invitee, spare = people
    open_group = group_with(admin, member)
    invite = {"added": {"member": {"userId": invitee.pni, "role": "DEFAULT"}}}
    allowed(change(member, open_group, addMembersPendingProfileKey=[invite]), open_group, 1)
    assert stored_state(open_group)["membersPendingProfileKey"][0]["addedByUserId"] == member.aci

    closed = group_with(admin, member, ADMIN_ONLY)
    refused(change(member, closed, addMembersPendingProfileKey=[invite]), closed, 0)
    allowed(change(admin, closed, addMembersPendingProfileKey=[invite]), closed, 1)


def test_only_administrators_invite_administrators_and_outsiders_invite_nobody(people):
    admin, member, invitee, outsider = people
    group_id = group_with(admin, member)
    as_admin = {"added": {"member": {"userId": invitee.aci, "role": "ADMINISTRATOR"}}}
    refused(change(member, group_id, addMembersPendingProfileKey=[as_admin]), group_id, 0)
    as_default = {"added": {"member": {"userId": invitee.aci, "role": "DEFAULT"}}}
    refused(change(outsider, group_id, addMembersPendingProfileKey=[as_default]), group_id, 0)
    allowed(change(admin, group_id, addMembersPendingProfileKey=[as_admin]), group_id, 1)


def test_only_the_invitee_accepts_an_invitation_with_their_profile_key(people):
    admin, member, invitee, outsider = people
    group_id = group_with(admin, member, invited=[invitee.aci])
    key = profile_key()
    refused(change(outsider, group_id, promoteMembersPendingProfileKey=[{"profileKey": key}]), group_id, 0)
    refused(change(member, group_id, promoteMembersPendingProfileKey=[{"profileKey": key}]), group_id, 0)
    allowed(change(invitee, group_id, promoteMembersPendingProfileKey=[{"profileKey": key}]), group_id, 1)
    state = stored_state(group_id)
    joined = next(m for m in state["members"] if m["userId"] == invitee.aci)
    assert (joined["profileKey"], joined["joinedAtVersion"], joined["role"]) == (key, 1, "DEFAULT")
    assert state["membersPendingProfileKey"] == []


def test_an_invitee_by_phone_number_accepts_as_their_aci(people):
    admin, member, invitee, outsider = people
    group_id = group_with(admin, member, invited=[invitee.pni])
    refused(change(outsider, group_id, promoteMembersPendingPniAciProfileKey=[{"profileKey": profile_key()}]), group_id, 0)
    # The ACI itself is not invited, so the plain acceptance is refused.
    refused(change(invitee, group_id, promoteMembersPendingProfileKey=[{"profileKey": profile_key()}]), group_id, 0)
    response = change(invitee, group_id, promoteMembersPendingPniAciProfileKey=[{"profileKey": profile_key()}])
    allowed(response, group_id, 1)
    assert invitee.aci in member_roles(group_id) and stored_state(group_id)["membersPendingProfileKey"] == []
    actions = json.loads(base64.b64decode(response.json()["groupChange"]["actions"]))
    assert actions["sourceUuid"] == invitee.pni  # the group knew them by their PNI
    assert actions["promoteMembersPendingPniAciProfileKey"][0]["userId"] == invitee.aci
    assert response.json()["groupChange"]["changeEpoch"] == 5


def test_administrators_and_the_invitee_revoke_an_invitation_other_members_do_not(people):
    admin, member, invitee, other = people
    group_id = group_with(admin, member, invited=[invitee.pni, other.aci])
    refused(change(member, group_id, deleteMembersPendingProfileKey=[{"deletedUserId": invitee.pni}]), group_id, 0)
    allowed(change(invitee, group_id, deleteMembersPendingProfileKey=[{"deletedUserId": invitee.pni}]), group_id, 1)
    allowed(change(admin, group_id, deleteMembersPendingProfileKey=[{"deletedUserId": other.aci}]), group_id, 2)
    assert stored_state(group_id)["membersPendingProfileKey"] == []


# ---- removing members -------------------------------------------------------------------------------


def test_administrators_remove_anyone_and_members_only_themselves(people):
    admin, member, other, _ = people
    group_id = create_group(admin, members=[member, other])
    refused(change(member, group_id, deleteMembers=[{"deletedUserId": other.aci}]), group_id, 0)
    allowed(change(member, group_id, deleteMembers=[{"deletedUserId": member.aci}]), group_id, 1)
    allowed(change(admin, group_id, deleteMembers=[{"deletedUserId": other.aci}]), group_id, 2)
    assert list(member_roles(group_id)) == [admin.aci]


# ---- join requests ----------------------------------------------------------------------------------


def link_group(admin, member, access="ADMINISTRATOR"):
    password = os.urandom(16)
    link = {"attributes": "MEMBER", "members": "MEMBER", "addFromInviteLink": access}
    return group_with(admin, member, link, inviteLinkPassword=b64(password)), password


def test_a_non_member_asks_to_join_with_the_link_when_it_needs_approval(people):
    admin, member, outsider, _ = people
    group_id, password = link_group(admin, member)
    request = [{"added": {"profileKey": profile_key()}}]
    refused(change(outsider, group_id, addMembersPendingAdminApproval=request), group_id, 0)
    refused(change(outsider, group_id, password=os.urandom(16), addMembersPendingAdminApproval=request), group_id, 0)
    allowed(change(outsider, group_id, password=password, addMembersPendingAdminApproval=request), group_id, 1)
    [entry] = stored_state(group_id)["membersPendingAdminApproval"]
    assert entry["userId"] == outsider.aci and entry["timestamp"] > 0


def test_a_join_request_is_refused_when_the_link_joins_directly(people):
    admin, member, outsider, _ = people
    group_id, password = link_group(admin, member, access="ANY")
    request = [{"added": {"profileKey": profile_key()}}]
    refused(change(outsider, group_id, password=password, addMembersPendingAdminApproval=request), group_id, 0)


def asking(admin, member, *requesters):
    group_id, password = link_group(admin, member)
    for version, person in enumerate(requesters, start=1):
        request = [{"added": {"profileKey": profile_key()}}]
        allowed(change(person, group_id, password=password, addMembersPendingAdminApproval=request), group_id, version)
    return group_id


def test_only_administrators_approve_join_requests(people):
    admin, member, outsider, _ = people
    group_id = asking(admin, member, outsider)
    approve = [{"userId": outsider.aci, "role": "DEFAULT"}]
    refused(change(member, group_id, promoteMembersPendingAdminApproval=approve), group_id, 1)
    refused(change(outsider, group_id, promoteMembersPendingAdminApproval=approve), group_id, 1)
    allowed(change(admin, group_id, promoteMembersPendingAdminApproval=approve), group_id, 2)
    state = stored_state(group_id)
    assert outsider.aci in member_roles(group_id) and state["membersPendingAdminApproval"] == []
    joined = next(m for m in state["members"] if m["userId"] == outsider.aci)
    assert joined["joinedAtVersion"] == 2 and joined["profileKey"]


def test_administrators_deny_and_requesters_cancel_join_requests_other_members_do_not(people):
    admin, member, first, second = people
    group_id = asking(admin, member, first, second)
    refused(change(member, group_id, deleteMembersPendingAdminApproval=[{"deletedUserId": first.aci}]), group_id, 2)
    refused(change(first, group_id, deleteMembersPendingAdminApproval=[{"deletedUserId": second.aci}]), group_id, 2)
    allowed(change(first, group_id, deleteMembersPendingAdminApproval=[{"deletedUserId": first.aci}]), group_id, 3)
    allowed(change(admin, group_id, deleteMembersPendingAdminApproval=[{"deletedUserId": second.aci}]), group_id, 4)
    assert stored_state(group_id)["membersPendingAdminApproval"] == []


# ---- roles, access, link, announcements -------------------------------------------------------------


def test_only_administrators_change_roles(people):
    admin, member, _, _ = people
    group_id = group_with(admin, member)
    refused(change(member, group_id, modifyMemberRoles=[{"userId": member.aci, "role": "ADMINISTRATOR"}]), group_id, 0)
    allowed(change(admin, group_id, modifyMemberRoles=[{"userId": member.aci, "role": "ADMINISTRATOR"}]), group_id, 1)
    assert member_roles(group_id)[member.aci] == "ADMINISTRATOR"


@pytest.mark.parametrize(
    "action, field, value",
    [
        ("modifyAttributesAccess", "attributesAccess", "ADMINISTRATOR"),
        ("modifyMemberAccess", "membersAccess", "ADMINISTRATOR"),
        ("modifyAddFromInviteLinkAccess", "addFromInviteLinkAccess", "UNSATISFIABLE"),
        ("modifyAnnouncementsOnly", "announcementsOnly", True),
    ],
)
def test_only_administrators_change_access_control_and_announcements_only(people, action, field, value):
    admin, member, _, _ = people
    group_id = group_with(admin, member)
    refused(change(member, group_id, **{action: {field: value}}), group_id, 0)
    allowed(change(admin, group_id, **{action: {field: value}}), group_id, 1)


def test_announcements_only_is_in_the_state_and_a_change_of_epoch_3(people):
    admin, member, _, _ = people
    group_id = group_with(admin, member)
    response = change(admin, group_id, modifyAnnouncementsOnly={"announcementsOnly": True})
    assert response.json()["groupChange"]["changeEpoch"] == 3
    assert stored_state(group_id)["announcementsOnly"] is True


def test_only_administrators_reset_the_invite_link(people):
    admin, member, _, _ = people
    group_id = group_with(admin, member)
    refused(change(member, group_id, modifyInviteLinkPassword={"inviteLinkPassword": b64(os.urandom(16))}), group_id, 0)
    allowed(change(admin, group_id, modifyInviteLinkPassword={"inviteLinkPassword": b64(os.urandom(16))}), group_id, 1)


# ---- bans ---------------------------------------------------------------------------------------------


def test_only_administrators_ban(people):
    admin, member, outsider, _ = people
    group_id = group_with(admin, member)
    ban = [{"added": {"userId": outsider.aci}}]
    refused(change(member, group_id, addMembersBanned=ban), group_id, 0)
    refused(change(outsider, group_id, addMembersBanned=ban), group_id, 0)
    response = change(admin, group_id, addMembersBanned=ban)
    allowed(response, group_id, 1)
    assert response.json()["groupChange"]["changeEpoch"] == 4
    assert stored_state(group_id)["membersBanned"][0]["userId"] == outsider.aci


def test_administrators_unban_and_defaults_only_when_members_access_is_member(people):
    admin, member, first, second = people
    open_group = group_with(admin, member)
    allowed(change(admin, open_group, addMembersBanned=[{"added": {"userId": first.aci}}]), open_group, 1)
    allowed(change(member, open_group, deleteMembersBanned=[{"deletedUserId": first.aci}]), open_group, 2)

    closed = group_with(admin, member, ADMIN_ONLY)
    allowed(change(admin, closed, addMembersBanned=[{"added": {"userId": second.pni}}]), closed, 1)
    refused(change(member, closed, deleteMembersBanned=[{"deletedUserId": second.pni}]), closed, 1)
    refused(change(second, closed, deleteMembersBanned=[{"deletedUserId": second.pni}]), closed, 1)
    allowed(change(admin, closed, deleteMembersBanned=[{"deletedUserId": second.pni}]), closed, 2)


# ---- own profile key ----------------------------------------------------------------------------------


def test_a_member_updates_only_their_own_profile_key(people):
    admin, member, outsider, _ = people
    group_id = group_with(admin, member)
    key = profile_key()
    refused(change(outsider, group_id, modifyMemberProfileKeys=[{"profileKey": key}]), group_id, 0)
    allowed(change(member, group_id, modifyMemberProfileKeys=[{"profileKey": key}]), group_id, 1)
    assert next(m for m in stored_state(group_id)["members"] if m["userId"] == member.aci)["profileKey"] == key
    # Naming someone else is not even a known field: the key is always the caller's.
    other = change(member, group_id, modifyMemberProfileKeys=[{"userId": admin.aci, "profileKey": key}])
    assert other.status_code == 400


def test_permissions_are_judged_on_the_state_before_the_change(people):
    admin, member, _, _ = people
    group_id = group_with(admin, member, ADMIN_ONLY)
    # Making oneself an administrator and changing the title in one change: the title needs the
    # role before the change, and the role change needs it too.
    promote_and_rename = {"modifyMemberRoles": [{"userId": member.aci, "role": "ADMINISTRATOR"}], "modifyTitle": {"title": b64(b"t")}}
    refused(change(member, group_id, **promote_and_rename), group_id, 0)
    # An administrator stepping down in the same change as a rename still renames.
    step_down = {"modifyMemberRoles": [{"userId": admin.aci, "role": "DEFAULT"}], "modifyTitle": {"title": b64(b"t")}}
    allowed(change(admin, group_id, **step_down), group_id, 1)
    assert stored_state(group_id)["title"] == b64(b"t")
