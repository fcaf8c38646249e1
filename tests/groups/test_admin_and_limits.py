"""Operators: groups listed with counts and versions (no encrypted content), a moderator deletes an
abusive group (in the operator log). Limits: the group size served in /v2/config, the limiters on
creation and changes, and the avatar form for those allowed to modify attributes."""

import base64
import json
import os

import pytest
from django.contrib.auth.models import Permission, User

from groups.models import Group, GroupChange
from signalserver.models import OperatorAction
from tests.factories import override_limit
from tests.groups.helpers import AVATAR, Person, b64url, change, create_group, new_group_body, stored_state

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    User.objects.create_superuser("operator", "op@example.org", "operator-password")
    client.login(username="operator", password="operator-password")
    return client


def test_the_admin_lists_groups_with_counts_and_versions_and_no_content(operator_client):
    admin, member, invitee = Person(), Person(), Person()
    group_id = create_group(admin, members=[member], invited=[invitee.aci])
    assert change(admin, group_id, modifyTitle={"title": base64.b64encode(b"secret title bytes").decode()}).status_code == 200
    state = stored_state(group_id)

    listing = operator_client.get("/admin/groups/group/").content.decode()
    assert b64url(group_id) in listing
    row = Group.objects.get(group_id=group_id)
    page = operator_client.get(f"/admin/groups/group/{row.pk}/change/").content.decode()
    for shown in (b64url(group_id), ">1<", ">2<"):  # id, version 1, two members
        assert shown in listing + page
    for secret in (state["title"], state["publicKey"], admin.aci, member.aci, invitee.aci, state["members"][0]["profileKey"]):
        assert secret not in listing and secret not in page


def test_the_admin_finds_a_group_only_by_its_exact_id(operator_client):
    first, second = create_group(Person()), create_group(Person())
    found = operator_client.get("/admin/groups/group/", {"q": b64url(first)}).content.decode()
    assert b64url(first) in found and b64url(second) not in found
    assert b64url(first) not in operator_client.get("/admin/groups/group/", {"q": b64url(first)[:10]}).content.decode()


def test_a_moderator_deletes_an_abusive_group_and_the_operator_log_records_it(operator_client):
    admin = Person()
    group_id = create_group(admin)
    row = Group.objects.get(group_id=group_id)
    response = operator_client.post("/admin/groups/group/", {"action": "delete_groups", "_selected_action": [row.pk]})
    assert response.status_code == 302
    assert not Group.objects.filter(group_id=group_id).exists() and not GroupChange.objects.exists()
    action = OperatorAction.objects.get(action="delete group")
    assert action.target == b64url(group_id) and action.operator.username == "operator"
    assert admin.get(group_id).status_code == 404


def test_staff_without_the_moderation_permission_cannot_delete_groups(client):
    staff = User.objects.create_user("viewer", password="viewer-password", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_group", content_type__app_label="groups"))
    client.login(username="viewer", password="viewer-password")
    group_id = create_group(Person())
    row = Group.objects.get(group_id=group_id)
    assert client.get("/admin/groups/group/").status_code == 200
    client.post("/admin/groups/group/", {"action": "delete_groups", "_selected_action": [row.pk]})
    assert Group.objects.filter(group_id=group_id).exists()
    assert client.post(f"/admin/groups/group/{row.pk}/delete/", {"post": "yes"}).status_code == 403


def test_the_config_serves_the_maximum_group_size(client_for, settings):
    person = Person()
    config = person.client.get("/v2/config").json()["config"]
    assert config["global.groupsv2.groupSizeHardLimit"] == "1000"
    settings.GROUP_MAX_SIZE = 64
    config = person.client.get("/v2/config").json()["config"]
    assert config["global.groupsv2.groupSizeHardLimit"] == "64"
    assert int(config["global.groupsv2.maxGroupSize"]) < 64


def test_creating_groups_is_limited_per_account():
    override_limit("groupCreate", 2, 3600)
    alice, bob = Person(), Person()
    create_group(alice)
    create_group(alice)
    refused = alice.put(os.urandom(32), new_group_body(alice))
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    create_group(bob)  # another account has its own bucket


def test_changes_are_limited_per_account():
    override_limit("groupChange", 2, 3600)
    admin, member = Person(), Person()
    group_id = create_group(admin, members=[member])
    for _ in range(2):
        assert change(admin, group_id, modifyTitle={"title": "AAAA"}).status_code == 200
    assert change(admin, group_id, modifyTitle={"title": "AAAA"}).status_code == 429
    assert change(member, group_id, modifyTitle={"title": "AAAA"}).status_code == 200


def test_lists_in_a_change_are_bounded_by_the_group_size(settings):
    settings.GROUP_MAX_SIZE = 3
    admin = Person()
    group_id = create_group(admin)
    too_many = [{"deletedUserId": Person().aci} for _ in range(4)]
    response = change(admin, group_id, deleteMembersBanned=too_many)
    assert response.status_code == 400 and "at most 3" in response.json()["message"]


def test_the_avatar_form_is_for_those_who_may_modify_attributes(local_media):
    admin, member, outsider = Person(), Person(), Person()
    control = {"attributes": "ADMINISTRATOR", "members": "MEMBER", "addFromInviteLink": "UNSATISFIABLE"}
    group_id = create_group(admin, members=[member], accessControl=control)
    assert member.get(group_id, AVATAR).status_code == 403
    assert outsider.get(group_id, AVATAR).status_code == 403
    response = admin.get(group_id, AVATAR)
    assert response.status_code == 200
    form = response.json()
    policy = json.loads(base64.b64decode(form["policy"]))
    assert ["content-length-range", 1, 3 * 1024 * 1024] in policy["conditions"]
    assert form["key"].startswith("groups/") and form["acl"] == "private"
    # The key it names is an avatar the group accepts.
    assert change(admin, group_id, modifyAvatar={"avatar": form["key"]}).status_code == 200
    assert stored_state(group_id)["avatar"] == form["key"]
    assert admin.get(os.urandom(32), AVATAR).status_code == 404
