"""The change log: pages of at most 64 versions (206 with Content-Range), read from the version the
caller joined at, states where asked for, and every change signed by the published key."""

import base64
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.groups.helpers import LOGS, PUBLIC_KEY, Person, change, create_group

pytestmark = pytest.mark.django_db


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def renamed(admin, group_id, times):
    for _ in range(times):
        assert change(admin, group_id, modifyTitle={"title": b64(os.urandom(20))}).status_code == 200


def log(person, group_id, from_version, **query):
    return person.get(group_id, f"{LOGS}/{from_version}", **query)


def test_a_long_log_comes_in_pages_of_64_with_content_range():
    admin = Person()
    group_id = create_group(admin)
    renamed(admin, group_id, 70)  # versions 0..70

    first = log(admin, group_id, 0)
    assert first.status_code == 206
    assert first["Content-Range"] == "versions 0-63/70"
    versions = [json.loads(base64.b64decode(e["groupChange"]["actions"]))["version"] for e in first.json()["groupChanges"]]
    assert versions == list(range(64))

    rest = log(admin, group_id, 64)
    assert rest.status_code == 200 and not rest.has_header("Content-Range")
    assert len(rest.json()["groupChanges"]) == 7
    assert rest.json()["groupSendEndorsements"]["endorsements"][0]["serviceId"] == admin.aci


def test_limit_makes_smaller_pages_and_is_capped_at_64():
    admin = Person()
    group_id = create_group(admin)
    renamed(admin, group_id, 9)
    page = log(admin, group_id, 2, limit=3)
    assert page.status_code == 206 and page["Content-Range"] == "versions 2-4/9"
    assert len(page.json()["groupChanges"]) == 3
    assert log(admin, group_id, 0, limit=1000).status_code == 200
    assert log(admin, group_id, 0, limit="x").status_code == 400


def test_from_beyond_the_latest_version_is_an_empty_page():
    admin = Person()
    group_id = create_group(admin)
    response = log(admin, group_id, 5)
    assert response.status_code == 200 and response.json()["groupChanges"] == []


def test_members_read_only_from_the_version_they_joined_at_and_others_not_at_all():
    admin, late, invitee, outsider = Person(), Person(), Person(), Person()
    group_id = create_group(admin, invited=[invitee.aci])
    renamed(admin, group_id, 2)
    assert change(admin, group_id, addMembers=[{"added": late.member()}]).status_code == 200  # version 3
    assert log(late, group_id, 2).status_code == 403
    assert log(late, group_id, 3).status_code == 200
    assert log(invitee, group_id, 0).status_code == 403
    assert log(outsider, group_id, 0).status_code == 403


def test_states_come_where_the_client_cannot_apply_a_change_and_where_asked_for():
    admin = Person()
    group_id = create_group(admin)
    renamed(admin, group_id, 2)  # epoch 0
    assert change(admin, group_id, modifyDescription={"description": b64(b"d")}).status_code == 200  # v3, epoch 2
    assert change(admin, group_id, modifyAnnouncementsOnly={"announcementsOnly": True}).status_code == 200  # v4, epoch 3

    def with_state(**query):
        entries = log(admin, group_id, 0, **query).json()["groupChanges"]
        return [e["groupState"]["version"] for e in entries if e["groupState"] is not None]

    assert with_state() == [0, 1, 2, 3, 4]  # without maxSupportedChangeEpoch: every state
    assert with_state(maxSupportedChangeEpoch=5) == []
    assert with_state(maxSupportedChangeEpoch=2) == [4]
    assert with_state(maxSupportedChangeEpoch=1) == [3, 4]
    assert with_state(maxSupportedChangeEpoch=5, includeFirstState="true", includeLastState="true") == [0, 4]
    assert log(admin, group_id, 0, includeFirstState="maybe").status_code == 400


def test_every_change_in_the_log_verifies_with_the_published_key():
    admin, member = Person(), Person()
    group_id = create_group(admin, members=[member])
    renamed(admin, group_id, 2)
    assert change(member, group_id, deleteMembers=[{"deletedUserId": member.aci}]).status_code == 200
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(admin.client.get(PUBLIC_KEY).json()["publicKey"]))
    entries = log(admin, group_id, 0).json()["groupChanges"]
    assert len(entries) == 4
    for entry in entries:
        actions = base64.b64decode(entry["groupChange"]["actions"])
        key.verify(base64.b64decode(entry["groupChange"]["serverSignature"]), actions)
        parsed = json.loads(actions)
        assert parsed["groupId"] == base64.urlsafe_b64encode(group_id).decode().rstrip("=")
    last = json.loads(base64.b64decode(entries[-1]["groupChange"]["actions"]))
    assert last["sourceUuid"] == member.aci and last["deleteMembers"] == [{"deletedUserId": member.aci}]
    # A forged change does not verify.
    forged = base64.b64decode(entries[-1]["groupChange"]["actions"]).replace(member.aci.encode(), admin.aci.encode())
    with pytest.raises(Exception):
        key.verify(base64.b64decode(entries[-1]["groupChange"]["serverSignature"]), forged)


def test_the_patch_answer_is_the_logged_change():
    admin = Person()
    group_id = create_group(admin)
    response = change(admin, group_id, modifyTitle={"title": b64(b"x")})
    assert log(admin, group_id, 1).json()["groupChanges"][0]["groupChange"] == response.json()["groupChange"]


def test_a_configured_signing_key_signs_and_is_published(settings):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    seed = os.urandom(32)
    settings.GROUP_CHANGE_SIGNING_KEY = b64(seed)
    expected = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    admin = Person()
    assert admin.client.get(PUBLIC_KEY).json() == {"publicKey": b64(expected), "algorithm": "Ed25519"}
    group_id = create_group(admin)
    entry = log(admin, group_id, 0).json()["groupChanges"][0]["groupChange"]
    key = Ed25519PublicKey.from_public_bytes(expected)
    key.verify(base64.b64decode(entry["serverSignature"]), base64.b64decode(entry["actions"]))
