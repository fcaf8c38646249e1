"""Invite links: the preview, joining directly and with approval, rotation, and bans (with
`X-Signal-Forbidden-Reason: banned`)."""

import base64
import json
import os

import pytest

from tests.groups.helpers import JOIN, Person, b64url, change, create_group, member_roles, profile_key, stored_state

pytestmark = pytest.mark.django_db


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def linked_group(admin, access, *members):
    password = os.urandom(16)
    control = {"attributes": "MEMBER", "members": "MEMBER", "addFromInviteLink": access}
    return create_group(admin, members=list(members), accessControl=control, inviteLinkPassword=b64(password)), password


def preview(person, group_id, password: bytes | bytearray | str):
    text = password if isinstance(password, str) else b64url(bytes(password))
    return person.get(group_id, f"{JOIN}/{text}")


def test_a_link_holder_previews_the_group_without_seeing_its_members():
    admin, member, visitor = Person(), Person(), Person()
    group_id, password = linked_group(admin, "ANY", member)
    response = preview(visitor, group_id, password)
    assert response.status_code == 200
    info = response.json()
    state = stored_state(group_id)
    assert info == {
        "publicKey": state["publicKey"],
        "title": state["title"],
        "description": state["description"],
        "avatar": state["avatar"],
        "memberCount": 2,
        "addFromInviteLink": "ANY",
        "version": 0,
        "pendingAdminApproval": False,
        "pendingAdminApprovalFull": False,
    }
    assert admin.aci not in response.content.decode()


def test_the_preview_needs_the_current_password_and_an_enabled_link():
    admin, visitor = Person(), Person()
    group_id, password = linked_group(admin, "ADMINISTRATOR")
    assert preview(visitor, group_id, os.urandom(16)).status_code == 403
    assert preview(visitor, group_id, "").status_code == 403
    assert preview(visitor, group_id, "%%%").status_code == 403
    assert preview(visitor, group_id, password).status_code == 200
    assert change(admin, group_id, modifyAddFromInviteLinkAccess={"addFromInviteLinkAccess": "UNSATISFIABLE"}).status_code == 200
    assert preview(visitor, group_id, password).status_code == 403


def test_joining_by_link_without_approval_makes_a_full_member_at_once():
    admin, visitor = Person(), Person()
    group_id, password = linked_group(admin, "ANY")
    response = change(visitor, group_id, password=password, addMembers=[{"added": visitor.member()}])
    assert response.status_code == 200
    assert member_roles(group_id) == {admin.aci: "ADMINISTRATOR", visitor.aci: "DEFAULT"}
    actions = json.loads(base64.b64decode(response.json()["groupChange"]["actions"]))
    assert actions["addMembers"][0]["joinFromInviteLink"] is True
    assert actions["sourceUuid"] == visitor.aci
    assert response.json()["groupSendEndorsements"] is not None  # now a full member
    assert visitor.get(group_id).status_code == 200


def test_joining_by_link_with_approval_makes_a_request_an_administrator_approves():
    admin, visitor = Person(), Person()
    group_id, password = linked_group(admin, "ADMINISTRATOR")
    # Joining directly is refused: this link needs approval.
    assert change(visitor, group_id, password=password, addMembers=[{"added": visitor.member()}]).status_code == 403
    asked = change(visitor, group_id, password=password, addMembersPendingAdminApproval=[{"added": {"profileKey": profile_key()}}])
    assert asked.status_code == 200 and asked.json()["groupSendEndorsements"] is None
    assert asked.json()["groupChange"]["changeEpoch"] == 1
    assert visitor.get(group_id).status_code == 403  # a requester reads no state
    assert preview(visitor, group_id, "").json()["pendingAdminApproval"] is True  # but sees its request without the link
    # Asking twice is refused.
    again = change(visitor, group_id, password=password, addMembersPendingAdminApproval=[{"added": {"profileKey": profile_key()}}])
    assert again.status_code == 400

    approved = change(admin, group_id, promoteMembersPendingAdminApproval=[{"userId": visitor.aci, "role": "DEFAULT"}])
    assert approved.status_code == 200
    assert visitor.aci in member_roles(group_id) and stored_state(group_id)["membersPendingAdminApproval"] == []


def test_a_full_request_list_shows_in_the_preview(settings):
    admin, first, second = Person(), Person(), Person()
    settings.GROUP_MAX_SIZE = 2
    group_id, password = linked_group(admin, "ADMINISTRATOR")
    for person in (first, second):
        assert change(person, group_id, password=password, addMembersPendingAdminApproval=[{"added": {"profileKey": profile_key()}}]).status_code == 200
    assert preview(Person(), group_id, password).json()["pendingAdminApprovalFull"] is True


def test_rotating_the_password_invalidates_the_old_link():
    admin, visitor = Person(), Person()
    group_id, old = linked_group(admin, "ANY")
    new = os.urandom(16)
    assert change(admin, group_id, modifyInviteLinkPassword={"inviteLinkPassword": b64(new)}).status_code == 200
    assert preview(visitor, group_id, old).status_code == 403
    assert change(visitor, group_id, password=old, addMembers=[{"added": visitor.member()}]).status_code == 403
    assert preview(visitor, group_id, new).status_code == 200
    assert change(visitor, group_id, password=new, addMembers=[{"added": visitor.member()}]).status_code == 200


def test_a_malformed_password_in_the_query_is_400():
    admin, visitor = Person(), Person()
    group_id, _ = linked_group(admin, "ANY")
    response = visitor.client.patch(
        "/v2/groups?inviteLinkPassword=%%%", json.dumps({"version": 1}), content_type="application/json", HTTP_X_GROUP_ID=b64(group_id)
    )
    assert response.status_code == 400


# ---- bans -------------------------------------------------------------------------------------------


def banned_group(admin, access, *, pni=False):
    visitor = Person()
    group_id, password = linked_group(admin, access)
    target = visitor.pni if pni else visitor.aci
    assert change(admin, group_id, addMembersBanned=[{"added": {"userId": target}}]).status_code == 200
    return visitor, group_id, password


@pytest.mark.parametrize("pni", [False, True])
def test_a_banned_user_gets_403_banned_from_the_preview(pni):
    admin = Person()
    visitor, group_id, password = banned_group(admin, "ANY", pni=pni)
    response = preview(visitor, group_id, password)
    assert response.status_code == 403
    assert response["X-Signal-Forbidden-Reason"] == "banned"


def test_a_banned_user_cannot_join_or_ask_to_join():
    admin = Person()
    visitor, group_id, password = banned_group(admin, "ANY")
    joined = change(visitor, group_id, password=password, addMembers=[{"added": visitor.member()}])
    assert joined.status_code == 403 and joined["X-Signal-Forbidden-Reason"] == "banned"

    approval = Person()
    asker, other_group, other_password = banned_group(approval, "ADMINISTRATOR")
    asked = change(asker, other_group, password=other_password, addMembersPendingAdminApproval=[{"added": {"profileKey": profile_key()}}])
    assert asked.status_code == 403 and asked["X-Signal-Forbidden-Reason"] == "banned"


def test_an_administrator_adds_a_banned_user_by_lifting_the_ban_in_the_same_change():
    admin = Person()
    visitor, group_id, _ = banned_group(admin, "ANY")
    assert change(admin, group_id, addMembers=[{"added": visitor.member()}]).status_code == 400
    both = change(admin, group_id, deleteMembersBanned=[{"deletedUserId": visitor.aci}], addMembers=[{"added": visitor.member()}])
    assert both.status_code == 200
    assert visitor.aci in member_roles(group_id) and stored_state(group_id)["membersBanned"] == []


def test_after_the_ban_is_lifted_the_link_works_again():
    admin = Person()
    visitor, group_id, password = banned_group(admin, "ANY")
    assert change(admin, group_id, deleteMembersBanned=[{"deletedUserId": visitor.aci}]).status_code == 200
    assert preview(visitor, group_id, password).status_code == 200
    assert change(visitor, group_id, password=password, addMembers=[{"added": visitor.member()}]).status_code == 200
