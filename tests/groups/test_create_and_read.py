"""Creating and reading groups through the real routes: who may read, what the state holds, and the
endorsements full members get."""

import base64
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from groups.models import Group, GroupChange
from groups.send_tokens import verify_group_send_token
from signalserver.wire import ServiceId
from tests.groups.helpers import JOINED, PUBLIC_KEY, Person, create_group, new_group_body

pytestmark = pytest.mark.django_db


def test_a_created_group_is_version_0_with_its_creator_as_administrator_and_one_log_entry():
    alice, bob, carol = Person(), Person(), Person()
    group_id = os.urandom(32)
    body = new_group_body(alice, members=[bob], invited=[carol.pni])

    response = alice.put(group_id, body)

    assert response.status_code == 200, response.content
    group = response.json()["group"]
    assert group["version"] == 0
    assert [(m["userId"], m["role"], m["joinedAtVersion"]) for m in group["members"]] == [
        (alice.aci, "ADMINISTRATOR", 0),
        (bob.aci, "DEFAULT", 0),
    ]
    assert group["title"] == body["title"] and group["publicKey"] == body["publicKey"]
    [invited] = group["membersPendingProfileKey"]
    assert invited["member"]["userId"] == carol.pni and invited["addedByUserId"] == alice.aci and invited["timestamp"] > 0
    assert group["membersPendingAdminApproval"] == [] and group["membersBanned"] == []
    assert group["accessControl"] == {"attributes": "MEMBER", "members": "MEMBER", "addFromInviteLink": "UNSATISFIABLE"}
    row = Group.objects.get(group_id=group_id)
    assert (row.version, row.member_count, row.pending_count) == (0, 2, 1)
    assert GroupChange.objects.filter(group=row).count() == 1


def test_full_members_get_endorsements_and_a_token_for_the_others_and_invitees_only_the_state():
    alice, bob, carol = Person(), Person(), Person()
    group_id = create_group(alice, members=[bob], invited=[carol.aci])

    as_member = bob.get(group_id)
    as_invitee = carol.get(group_id)

    assert as_member.status_code == 200 and as_invitee.status_code == 200
    assert as_invitee.json()["groupSendEndorsements"] is None
    credentials = as_member.json()["groupSendEndorsements"]
    assert {e["serviceId"] for e in credentials["endorsements"]} == {alice.aci, bob.aci}
    verify_group_send_token(credentials["token"], [ServiceId.parse(alice.aci)])  # everyone but bob
    assert as_invitee.json()["group"] == as_member.json()["group"]


def test_the_creator_gets_endorsements_with_the_new_group():
    alice, bob = Person(), Person()
    response = alice.put(os.urandom(32), new_group_body(alice, members=[bob]))
    verify_group_send_token(response.json()["groupSendEndorsements"]["token"], [ServiceId.parse(bob.aci)])


def test_an_invitee_by_phone_number_reads_the_group():
    alice, carol = Person(), Person()
    group_id = create_group(alice, invited=[carol.pni])
    assert carol.get(group_id).status_code == 200


def test_others_may_not_read_a_group_and_an_unknown_group_is_404():
    alice, mallory = Person(), Person()
    group_id = create_group(alice)
    assert mallory.get(group_id).status_code == 403
    assert alice.get(os.urandom(32)).status_code == 404


def test_a_group_id_is_required_and_must_be_32_bytes():
    alice = Person()
    assert alice.get(None).status_code == 400
    assert alice.get(os.urandom(31)).status_code == 400
    response = alice.client.get("/v2/groups", HTTP_X_GROUP_ID="not base64!")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"


def test_the_group_id_may_be_url_safe_base64_without_padding():
    alice = Person()
    group_id = create_group(alice)
    url_safe = base64.urlsafe_b64encode(group_id).decode().rstrip("=")
    assert alice.client.get("/v2/groups", HTTP_X_GROUP_ID=url_safe).status_code == 200


def test_a_second_group_with_the_same_id_is_409():
    alice = Person()
    group_id = create_group(alice)
    assert alice.put(group_id, new_group_body(alice)).status_code == 409


def test_creating_needs_credentials():
    from rest_framework.test import APIClient

    response = APIClient().put("/v2/groups", "{}", content_type="application/json", HTTP_X_GROUP_ID=base64.b64encode(os.urandom(32)).decode())
    assert response.status_code == 401


@pytest.mark.parametrize(
    "change, why",
    [
        ({"version": 1}, "version must be 0"),
        ({"title": ""}, "empty title"),
        ({"title": base64.b64encode(os.urandom(1025)).decode()}, "title too long"),
        ({"description": base64.b64encode(os.urandom(8193)).decode()}, "description too long"),
        ({"disappearingMessagesTimer": base64.b64encode(os.urandom(129)).decode()}, "timer too long"),
        ({"accessControl": {"attributes": "UNKNOWN", "members": "MEMBER"}}, "unknown attributes access"),
        ({"accessControl": {"attributes": "ANY", "members": "MEMBER"}}, "attributes access ANY"),
        ({"accessControl": {"attributes": "MEMBER", "members": "MEMBER", "addFromInviteLink": "ANY"}}, "link on without password"),
        ({"inviteLinkPassword": base64.b64encode(os.urandom(15)).decode()}, "password of 15 bytes"),
        ({"membersPendingAdminApproval": [{"userId": "x"}]}, "join requests in a new group"),
        ({"membersBanned": [{"userId": "x"}]}, "bans in a new group"),
        ({"avatar": "profiles/AAAAAAAAAAAAAAAAAAAAAA"}, "avatar outside groups/"),
        ({"unexpected": 1}, "an unknown field"),
        ({"publicKey": ""}, "no public key"),
    ],
)
def test_a_new_group_that_breaks_a_rule_is_400(change, why):
    alice = Person()
    response = alice.put(os.urandom(32), new_group_body(alice) | change)
    assert response.status_code == 400, why
    assert not Group.objects.exists()


def test_the_creator_must_be_an_administrator_member():
    alice, bob = Person(), Person()
    as_default = new_group_body(alice)
    as_default["members"][0]["role"] = "DEFAULT"
    assert alice.put(os.urandom(32), as_default).status_code == 400
    assert alice.put(os.urandom(32), new_group_body(bob)).status_code == 400  # alice is not in it


def test_a_new_group_names_nobody_twice_and_members_by_aci():
    alice, bob = Person(), Person()
    twice = new_group_body(alice, members=[bob], invited=[bob.aci])
    assert alice.put(os.urandom(32), twice).status_code == 400
    pni_member = new_group_body(alice)
    pni_member["members"].append({"userId": bob.pni, "role": "DEFAULT", "profileKey": base64.b64encode(b"k" * 65).decode()})
    assert alice.put(os.urandom(32), pni_member).status_code == 400


def test_a_malformed_body_is_400_as_json():
    alice = Person()
    response = alice.client.put("/v2/groups", "{", content_type="application/json", HTTP_X_GROUP_ID=base64.b64encode(os.urandom(32)).decode())
    assert response.status_code == 400 and response.json()["code"] == 400


def test_roles_and_access_names_are_case_insensitive():
    alice, bob = Person(), Person()
    body = new_group_body(alice, members=[bob])
    body["members"][1]["role"] = "default"
    body["accessControl"]["attributes"] = "administrator"
    group_id = os.urandom(32)
    assert alice.put(group_id, body).status_code == 200
    assert alice.state(group_id)["accessControl"]["attributes"] == "ADMINISTRATOR"


def test_joined_at_version_is_for_full_members():
    alice, carol = Person(), Person()
    group_id = create_group(alice, invited=[carol.aci])
    assert alice.get(group_id, JOINED).json() == {"joinedAtVersion": 0}
    assert carol.get(group_id, JOINED).status_code == 403


def test_the_public_key_verifies_the_creation_entry():
    alice = Person()
    group_id = create_group(alice)
    key = base64.b64decode(alice.client.get(PUBLIC_KEY).json()["publicKey"])
    row = GroupChange.objects.get(group__group_id=group_id, version=0)
    Ed25519PublicKey.from_public_bytes(key).verify(bytes(row.signature), bytes(row.actions))
