"""What every group state must satisfy after a change (400 otherwise, nothing stored), the
"some administrator" fix-up, and the shape checks of a change."""

import base64
import json
import os

import pytest

from groups.models import GroupChange
from tests.groups.helpers import Person, change, create_group, current_version, member_roles, profile_key, stored_state

pytestmark = pytest.mark.django_db


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def rejected(response, group_id, version=0):
    assert response.status_code == 400, response.content
    assert current_version(group_id) == version
    assert GroupChange.objects.filter(group__group_id=group_id).count() == version + 1


@pytest.fixture
def group():
    admin, member = Person(), Person()
    return admin, member, create_group(admin, members=[member])


def test_the_title_stays_non_empty_and_within_1024_bytes(group):
    admin, _, group_id = group
    rejected(change(admin, group_id, modifyTitle={"title": ""}), group_id)
    rejected(change(admin, group_id, modifyTitle={"title": b64(os.urandom(1025))}), group_id)
    assert change(admin, group_id, modifyTitle={"title": b64(os.urandom(1024))}).status_code == 200


def test_the_description_stays_within_8192_bytes(group):
    admin, _, group_id = group
    rejected(change(admin, group_id, modifyDescription={"description": b64(os.urandom(8193))}), group_id)
    assert change(admin, group_id, modifyDescription={"description": b64(os.urandom(8192))}).status_code == 200


def test_the_timer_and_profile_keys_are_bounded(group):
    admin, member, group_id = group
    rejected(change(admin, group_id, modifyDisappearingMessageTimer={"timer": b64(os.urandom(129))}), group_id)
    rejected(change(member, group_id, modifyMemberProfileKeys=[{"profileKey": b64(os.urandom(129))}]), group_id)


def test_members_plus_invitees_stay_within_the_maximum_group_size(settings, group):
    admin, member, group_id = group
    settings.GROUP_MAX_SIZE = 3
    third, fourth = Person(), Person()
    rejected(
        change(admin, group_id, addMembers=[{"added": third.member()}], addMembersPendingProfileKey=[{"added": {"member": {"userId": fourth.aci, "role": "DEFAULT"}}}]),
        group_id,
    )
    assert change(admin, group_id, addMembers=[{"added": third.member()}]).status_code == 200
    rejected(change(admin, group_id, addMembersPendingProfileKey=[{"added": {"member": {"userId": fourth.aci, "role": "DEFAULT"}}}]), group_id, 1)


def test_bans_and_join_requests_stay_within_the_maximum_group_size(settings, group):
    admin, _, group_id = group
    settings.GROUP_MAX_SIZE = 3
    too_many = [{"added": {"userId": Person().aci}} for _ in range(4)]
    rejected(change(admin, group_id, addMembersBanned=too_many), group_id)
    assert change(admin, group_id, addMembersBanned=too_many[:3]).status_code == 200


def test_nobody_is_in_two_lists(group):
    admin, member, group_id = group
    outsider = Person()
    # A member cannot be banned while still a member, nor invited again.
    rejected(change(admin, group_id, addMembersBanned=[{"added": {"userId": member.aci}}]), group_id)
    rejected(change(admin, group_id, addMembersPendingProfileKey=[{"added": {"member": {"userId": member.aci, "role": "DEFAULT"}}}]), group_id)
    # Banned and invited at once.
    rejected(
        change(
            admin,
            group_id,
            addMembersBanned=[{"added": {"userId": outsider.aci}}],
            addMembersPendingProfileKey=[{"added": {"member": {"userId": outsider.aci, "role": "DEFAULT"}}}],
        ),
        group_id,
    )
    # Removing and banning in one change is how a member is banned.
    both = change(admin, group_id, deleteMembers=[{"deletedUserId": member.aci}], addMembersBanned=[{"added": {"userId": member.aci}}])
    assert both.status_code == 200
    state = stored_state(group_id)
    assert member.aci not in member_roles(group_id) and state["membersBanned"][0]["userId"] == member.aci


def test_nobody_is_twice_in_one_list(group):
    admin, _, group_id = group
    newcomer = Person()
    rejected(change(admin, group_id, addMembers=[{"added": newcomer.member()}, {"added": newcomer.member()}]), group_id)
    rejected(change(admin, group_id, addMembersBanned=[{"added": {"userId": newcomer.aci}}] * 2), group_id)


def test_an_enabled_link_needs_a_16_byte_password(group):
    admin, _, group_id = group
    rejected(change(admin, group_id, modifyAddFromInviteLinkAccess={"addFromInviteLinkAccess": "ANY"}), group_id)
    rejected(change(admin, group_id, modifyInviteLinkPassword={"inviteLinkPassword": b64(os.urandom(12))}), group_id)
    both = change(
        admin,
        group_id,
        modifyAddFromInviteLinkAccess={"addFromInviteLinkAccess": "ANY"},
        modifyInviteLinkPassword={"inviteLinkPassword": b64(os.urandom(16))},
    )
    assert both.status_code == 200 and both.json()["groupChange"]["changeEpoch"] == 1
    # Removing the password while the link is on breaks the rule again.
    rejected(change(admin, group_id, modifyInviteLinkPassword={}), group_id, 1)


def test_access_values_outside_the_allowed_ones_are_refused(group):
    admin, _, group_id = group
    rejected(change(admin, group_id, modifyAttributesAccess={"attributesAccess": "ANY"}), group_id)
    rejected(change(admin, group_id, modifyMemberAccess={"membersAccess": "UNSATISFIABLE"}), group_id)
    rejected(change(admin, group_id, modifyAddFromInviteLinkAccess={"addFromInviteLinkAccess": "MEMBER"}), group_id)
    rejected(change(admin, group_id, modifyMemberRoles=[{"userId": admin.aci, "role": "UNKNOWN"}]), group_id)


def test_an_avatar_is_a_key_of_a_group_avatar_form(group):
    admin, _, group_id = group
    rejected(change(admin, group_id, modifyAvatar={"avatar": "profiles/" + "A" * 22}), group_id)
    rejected(change(admin, group_id, modifyAvatar={"avatar": "groups/../../etc/passwd"}), group_id)
    other_group = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    rejected(change(admin, group_id, modifyAvatar={"avatar": f"groups/{other_group}/{'A' * 22}"}), group_id)
    own = base64.urlsafe_b64encode(group_id).decode().rstrip("=")
    assert change(admin, group_id, modifyAvatar={"avatar": f"groups/{own}/{'B' * 22}"}).status_code == 200
    assert change(admin, group_id, modifyAvatar={"avatar": ""}).status_code == 200


def test_the_targets_of_removals_and_role_changes_must_exist(group):
    admin, _, group_id = group
    stranger = Person()
    rejected(change(admin, group_id, deleteMembers=[{"deletedUserId": stranger.aci}]), group_id)
    rejected(change(admin, group_id, modifyMemberRoles=[{"userId": stranger.aci, "role": "DEFAULT"}]), group_id)
    rejected(change(admin, group_id, deleteMembersPendingProfileKey=[{"deletedUserId": stranger.aci}]), group_id)
    rejected(change(admin, group_id, deleteMembersBanned=[{"deletedUserId": stranger.aci}]), group_id)
    rejected(change(admin, group_id, promoteMembersPendingAdminApproval=[{"userId": stranger.aci, "role": "DEFAULT"}]), group_id)
    rejected(change(admin, group_id, addMembers=[{"added": admin.member()}]), group_id)


@pytest.mark.parametrize(
    "actions",
    [
        {"modifyTitle": {"title": "AAAA", "extra": 1}},
        {"addMembers": [{"added": {"userId": "x", "role": "DEFAULT", "profileKey": "AAAA"}}]},
        {"addMembers": [{"added": {"role": "DEFAULT", "profileKey": "AAAA"}}]},
        {"addMembers": [{"added": {"userId": "00000000-0000-0000-0000-000000000001", "role": "DEFAULT", "profileKey": "AAAA"}, "joinFromInviteLink": True}]},
        {"groupId": "AAAA"},
        {"sourceUuid": "00000000-0000-0000-0000-000000000001"},
        {"unknownAction": []},
        {"modifyTitle": {"title": "not base64!"}},
        {"deleteMembers": "not a list"},
        {"modifyAnnouncementsOnly": {"announcementsOnly": "yes"}},
    ],
)
def test_unknown_fields_and_malformed_values_are_400(group, actions):
    admin, _, group_id = group
    rejected(change(admin, group_id, **actions), group_id)


def test_a_change_without_a_version_is_400(group):
    admin, _, group_id = group
    response = admin.client.patch("/v2/groups", json.dumps({}), content_type="application/json", HTTP_X_GROUP_ID=b64(group_id))
    assert response.status_code == 400


# ---- the "some administrator" fix-up ---------------------------------------------------------------


def test_when_the_last_administrator_leaves_the_other_members_become_administrators():
    admin, first, second = Person(), Person(), Person()
    group_id = create_group(admin, members=[first, second])
    response = change(admin, group_id, deleteMembers=[{"deletedUserId": admin.aci}])
    assert response.status_code == 200
    assert member_roles(group_id) == {first.aci: "ADMINISTRATOR", second.aci: "ADMINISTRATOR"}
    actions = json.loads(base64.b64decode(response.json()["groupChange"]["actions"]))
    assert sorted(r["userId"] for r in actions["modifyMemberRoles"]) == sorted([first.aci, second.aci])


def test_the_fix_up_skips_members_who_joined_or_changed_role_in_the_same_change():
    admin, first, second, newcomer = Person(), Person(), Person(), Person()
    group_id = create_group(admin, members=[first], admins=[second])
    response = change(
        admin,
        group_id,
        deleteMembers=[{"deletedUserId": admin.aci}],
        modifyMemberRoles=[{"userId": second.aci, "role": "DEFAULT"}],
        addMembers=[{"added": newcomer.member()}],
    )
    assert response.status_code == 200
    assert member_roles(group_id) == {first.aci: "ADMINISTRATOR", second.aci: "DEFAULT", newcomer.aci: "DEFAULT"}


def test_when_only_new_or_changed_members_remain_everyone_becomes_administrator():
    admin, newcomer = Person(), Person()
    group_id = create_group(admin)
    response = change(admin, group_id, deleteMembers=[{"deletedUserId": admin.aci}], addMembers=[{"added": newcomer.member()}])
    assert response.status_code == 200
    assert member_roles(group_id) == {newcomer.aci: "ADMINISTRATOR"}


def test_the_last_member_leaving_leaves_an_empty_group_without_an_administrator():
    admin, invitee = Person(), Person()
    group_id = create_group(admin, invited=[invitee.aci])
    assert change(admin, group_id, deleteMembers=[{"deletedUserId": admin.aci}]).status_code == 200
    state = stored_state(group_id)
    assert state["members"] == [] and len(state["membersPendingProfileKey"]) == 1
    # The invitee can still accept and then holds the group alone, as its administrator.
    assert change(invitee, group_id, promoteMembersPendingProfileKey=[{"profileKey": profile_key()}]).status_code == 200
    assert member_roles(group_id) == {invitee.aci: "ADMINISTRATOR"}
