"""A group at the default maximum size (1,000 members) is created, read and changed through the
real routes, and one more member is refused."""

import base64
import os
import time
import uuid

import pytest

from groups.models import Group, GroupChange
from tests.groups.helpers import Person, change, member_roles, new_group_body, profile_key

pytestmark = pytest.mark.django_db


def test_a_1000_member_group_is_created_read_and_changed(settings):
    assert settings.GROUP_MAX_SIZE == 1000
    admin, reader = Person(), Person()
    others = [{"userId": str(uuid.uuid4()), "role": "DEFAULT", "profileKey": profile_key()} for _ in range(998)]
    body = new_group_body(admin, members=[reader])
    body["members"] += others
    group_id = os.urandom(32)

    created = admin.put(group_id, body)
    assert created.status_code == 200, created.content
    assert len(created.json()["group"]["members"]) == 1000
    assert len(created.json()["groupSendEndorsements"]["endorsements"]) == 1000

    read = reader.get(group_id)
    assert read.status_code == 200 and len(read.json()["group"]["members"]) == 1000

    # Full: one more member or invitee is refused.
    newcomer = Person()
    assert change(admin, group_id, addMembers=[{"added": newcomer.member()}]).status_code == 400
    invite = {"added": {"member": {"userId": newcomer.aci, "role": "DEFAULT"}}}
    assert change(admin, group_id, addMembersPendingProfileKey=[invite]).status_code == 400

    started = time.perf_counter()
    swapped = change(
        admin,
        group_id,
        deleteMembers=[{"deletedUserId": others[0]["userId"]}],
        addMembers=[{"added": newcomer.member()}],
        modifyTitle={"title": base64.b64encode(os.urandom(30)).decode()},
    )
    elapsed = time.perf_counter() - started
    assert swapped.status_code == 200, swapped.content
    assert elapsed < 1.0, f"a change of a 1,000-member group took {elapsed:.3f} s"

    roles = member_roles(group_id)
    assert len(roles) == 1000 and newcomer.aci in roles and others[0]["userId"] not in roles
    row = Group.objects.get(group_id=group_id)
    assert (row.version, row.member_count) == (1, 1000)
    assert GroupChange.objects.filter(group=row).count() == 2
    assert len(newcomer.get(group_id).json()["groupSendEndorsements"]["endorsements"]) == 1000


def test_a_group_one_over_the_maximum_is_refused(settings):
    settings.GROUP_MAX_SIZE = 5
    admin = Person()
    body = new_group_body(admin)
    body["members"] += [{"userId": str(uuid.uuid4()), "role": "DEFAULT", "profileKey": profile_key()} for _ in range(5)]
    assert admin.put(os.urandom(32), body).status_code == 400
    body["members"].pop()
    assert admin.put(os.urandom(32), body).status_code == 200
