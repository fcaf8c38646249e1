"""An account's groups in its data report, and its deletion taking it out of every group by a
change the server makes: signed, with no source, the administrator fix-up applied, and a
concurrent change to the same group kept."""

import base64
import json
import os
import threading
import time

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import connection

from accounts.data_report import account_data
from groups.changes import check_invariants
from groups.models import Group, GroupChange
from tests.groups.helpers import LOGS, PUBLIC_KEY, Person, b64, change, create_group, member_roles, profile_key, stored_state

REPORT, ME = "/v2/accounts/data_report", "/v1/accounts/me"


def report_groups(person: Person) -> list[dict]:
    response = person.client.get(REPORT)
    assert response.status_code == 200, response.content
    return response.json()["data"].get("groups", [])


def current_states() -> list[str]:
    """The text of every group's current state."""
    return [
        state
        for group in Group.objects.all()
        for state in GroupChange.objects.filter(group=group, version=group.version).values_list("state", flat=True)
    ]


def log_entries(person: Person, group_id: bytes, from_version: int) -> list[dict]:
    response = person.get(group_id, f"{LOGS}/{from_version}")
    assert response.status_code == 200, response.content
    return response.json()["groupChanges"]


def actions_of(entry: dict) -> dict:
    return json.loads(base64.b64decode(entry["groupChange"]["actions"]))


def verified(person: Person, entry: dict) -> dict:
    """The actions of a log entry, after checking the server's signature over them."""
    key = base64.b64decode(person.get(None, PUBLIC_KEY).json()["publicKey"])
    signed = base64.b64decode(entry["groupChange"]["actions"])
    Ed25519PublicKey.from_public_bytes(key).verify(base64.b64decode(entry["groupChange"]["serverSignature"]), signed)
    return json.loads(signed)


def linked(admin: Person, **kwargs) -> tuple[bytes, bytes]:
    password = os.urandom(16)
    control = {"attributes": "MEMBER", "members": "MEMBER", "addFromInviteLink": "ADMINISTRATOR"}
    return create_group(admin, accessControl=control, inviteLinkPassword=b64(password), **kwargs), password


@pytest.mark.django_db
def test_the_report_lists_each_group_with_the_accounts_standing_and_nothing_else():
    alice, bob, carol = Person(), Person(), Person()
    member = create_group(alice, members=[bob], invited=[carol.pni])
    invited = create_group(bob, invited=[alice.aci])
    asking, password = linked(bob)
    assert change(alice, asking, password=password, addMembersPendingAdminApproval=[{"added": {"profileKey": profile_key()}}]).status_code == 200
    banned = create_group(bob)
    assert change(bob, banned, addMembersBanned=[{"added": {"userId": alice.pni}}]).status_code == 200
    assert change(bob, member, modifyTitle={"title": b64(os.urandom(20))}).status_code == 200
    elsewhere = create_group(bob, members=[carol])  # nothing of alice's

    entries = {entry["groupId"]: entry for entry in report_groups(alice)}
    assert entries == {
        b64(member): {"groupId": b64(member), "serviceId": alice.aci, "status": "member", "role": "ADMINISTRATOR", "joinedAtVersion": 0},
        b64(invited): {"groupId": b64(invited), "serviceId": alice.aci, "status": "pending", "joinedAtVersion": 0},
        b64(asking): {"groupId": b64(asking), "serviceId": alice.aci, "status": "requesting"},
        b64(banned): {"groupId": b64(banned), "serviceId": alice.pni, "status": "banned"},
    }
    assert b64(elsewhere) not in entries
    # Nothing of the groups' content or other members.
    text = alice.client.get(REPORT).json()["text"]
    assert bob.aci not in text and carol.pni not in text and stored_state(member)["title"] not in text

    assert report_groups(bob)[0] == {"groupId": b64(member), "serviceId": bob.aci, "status": "member", "role": "DEFAULT", "joinedAtVersion": 0}
    assert {"groupId": b64(member), "serviceId": carol.pni, "status": "pending", "joinedAtVersion": 0} in report_groups(carol)


@pytest.mark.django_db
def test_deletion_takes_the_account_out_of_every_group_by_a_signed_server_change():
    alice, bob, carol = Person(), Person(), Person()
    led = create_group(alice, members=[bob, carol])  # alice is the only administrator
    invited = create_group(bob, members=[carol], invited=[alice.pni])
    asking, password = linked(bob)
    assert change(alice, asking, password=password, addMembersPendingAdminApproval=[{"added": {"profileKey": profile_key()}}]).status_code == 200
    banned = create_group(bob)
    assert change(bob, banned, addMembersBanned=[{"added": {"userId": alice.aci}}]).status_code == 200
    untouched = create_group(bob, members=[carol])
    assert len(report_groups(alice)) == 4

    assert alice.client.delete(ME).status_code == 204

    # The report of that ACI is empty (groups included), and no current state names either id.
    assert account_data(alice.account.aci) == {}
    assert not any(alice.aci in state or alice.pni in state for state in current_states())

    # The group it led: the others see version 1 without alice, and both became administrators
    # by the fix-up, recorded in the change the server signed, which names no source.
    assert member_roles(led) == {bob.aci: "ADMINISTRATOR", carol.aci: "ADMINISTRATOR"}
    seen = bob.state(led)
    assert seen["version"] == 1 and alice.aci not in json.dumps(seen)
    first, removal = log_entries(bob, led, 0)
    assert verified(bob, removal) == {
        "groupId": base64.urlsafe_b64encode(led).decode().rstrip("="),
        "version": 1,
        "deleteMembers": [{"deletedUserId": alice.aci}],
        "modifyMemberRoles": [{"userId": bob.aci, "role": "ADMINISTRATOR"}, {"userId": carol.aci, "role": "ADMINISTRATOR"}],
    }
    # The signed history members verify keeps version 0, which named alice.
    assert verified(bob, first)["sourceUuid"] == alice.aci

    for group_id, action, epoch in (
        (invited, {"deleteMembersPendingProfileKey": [{"deletedUserId": alice.pni}]}, 0),
        (asking, {"deleteMembersPendingAdminApproval": [{"deletedUserId": alice.aci}]}, 1),
        (banned, {"deleteMembersBanned": [{"deletedUserId": alice.aci}]}, 4),
    ):
        entry = log_entries(bob, group_id, 0)[-1]
        version = stored_state(group_id)["version"]
        assert verified(bob, entry) == {"groupId": base64.urlsafe_b64encode(group_id).decode().rstrip("="), "version": version, **action}
        assert entry["groupChange"]["changeEpoch"] == epoch
        check_invariants(stored_state(group_id), group_id=group_id, max_size=1000)
        assert member_roles(group_id)[bob.aci] == "ADMINISTRATOR"  # no fix-up needed: nothing else changed
    assert Group.objects.get(group_id=untouched).version == 0
    # The group keeps working for the others.
    assert change(bob, led, modifyTitle={"title": b64(os.urandom(20))}).status_code == 200


@pytest.mark.django_db
def test_a_deleted_account_that_was_the_only_member_leaves_an_empty_group():
    alice, bob = Person(), Person()
    group_id = create_group(alice, invited=[bob.aci])
    assert alice.client.delete(ME).status_code == 204
    state = stored_state(group_id)
    assert (state["version"], state["members"], len(state["membersPendingProfileKey"])) == (1, [], 1)


def waiting_on_locks(dsn: dict, count: int) -> None:
    """Until `count` sessions wait for a lock in the test database."""
    with psycopg.connect(**dsn, autocommit=True) as watcher:
        for _ in range(500):
            waiting = watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]
            if waiting >= count:
                return
            time.sleep(0.01)
    raise AssertionError("the requests never waited on the group's row")


def in_thread(call) -> tuple[threading.Thread, list]:
    from django.db import connections

    result = []

    def run():
        try:
            result.append(call())
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


@pytest.mark.django_db(transaction=True)
def test_a_change_stored_first_is_kept_and_the_removal_retried_on_its_version():
    alice, bob = Person(), Person()
    group_id = create_group(alice, members=[bob])
    settings = connection.settings_dict
    dsn = {"dbname": settings["NAME"], "user": settings["USER"], "host": settings["HOST"], "port": settings["PORT"] or 5432}
    if settings["PASSWORD"]:
        dsn["password"] = settings["PASSWORD"]
    title = b64(os.urandom(20))

    # Hold the group's row, so that bob's change (computed on version 0) queues for it first, then
    # the deletion (also computed on version 0) behind it.
    with psycopg.connect(**dsn) as holder:
        holder.execute("SELECT 1 FROM groups_group WHERE group_id = %s FOR UPDATE", [group_id])
        renaming, renamed = in_thread(lambda: change(bob, group_id, version=1, modifyTitle={"title": title}))
        waiting_on_locks(dsn, 1)
        deleting, deleted = in_thread(lambda: alice.client.delete(ME))
        waiting_on_locks(dsn, 2)
        holder.rollback()
    renaming.join(10)
    deleting.join(10)

    assert renamed[0].status_code == 200, renamed[0].content
    assert deleted[0].status_code == 204, deleted[0].content
    state = stored_state(group_id)
    assert state["version"] == 2 and state["title"] == title
    assert [m["userId"] for m in state["members"]] == [bob.aci] and state["members"][0]["role"] == "ADMINISTRATOR"
    versions = [actions_of(entry) for entry in log_entries(bob, group_id, 0)]
    assert versions[1]["sourceUuid"] == bob.aci and "modifyTitle" in versions[1]
    assert "sourceUuid" not in versions[2] and versions[2]["deleteMembers"] == [{"deletedUserId": alice.aci}]
