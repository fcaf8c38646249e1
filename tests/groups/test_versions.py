"""Versions: a change carries the current version + 1; a stale one is 409 with the current state;
of many concurrent changes to one version exactly one wins."""

import base64
import json
import os
import threading

import pytest
from django.db import connection

from groups.models import GroupChange
from tests.groups.helpers import Person, change, create_group, current_version

B64 = lambda value: base64.b64encode(value).decode()  # noqa: E731


@pytest.mark.django_db
def test_a_stale_change_is_409_with_the_current_state_for_members():
    admin, member = Person(), Person()
    group_id = create_group(admin, members=[member])
    assert change(admin, group_id, modifyTitle={"title": B64(b"one")}).status_code == 200
    stale = change(member, group_id, version=1, modifyTitle={"title": B64(b"two")})
    assert stale.status_code == 409
    assert stale.json()["version"] == 1 and stale.json()["title"] == B64(b"one")
    assert change(member, group_id, version=3, modifyTitle={"title": B64(b"two")}).status_code == 409  # from the future
    assert change(member, group_id, version=2, modifyTitle={"title": B64(b"two")}).status_code == 200


@pytest.mark.django_db
def test_a_stale_change_from_an_outsider_does_not_show_the_state():
    admin, outsider = Person(), Person()
    group_id = create_group(admin)
    response = change(outsider, group_id, version=7, addMembers=[{"added": outsider.member()}])
    assert response.status_code == 409 and "members" not in response.json()


@pytest.mark.django_db
def test_a_change_to_a_missing_group_is_404():
    assert change(Person(), os.urandom(32), version=1).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_of_many_concurrent_changes_to_one_version_exactly_one_wins():
    admins = [Person() for _ in range(8)]
    group_id = create_group(admins[0], admins=admins[1:])
    start, outcomes = threading.Barrier(len(admins)), []

    def attempt(person, index):
        try:
            start.wait(timeout=10)
            response = change(person, group_id, version=1, modifyTitle={"title": B64(f"title {index}".encode())})
            outcomes.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(person, index)) for index, person in enumerate(admins)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    statuses = sorted(status for status, _ in outcomes)
    assert statuses == [200] + [409] * (len(admins) - 1)
    assert current_version(group_id) == 1
    assert GroupChange.objects.filter(group__group_id=group_id).count() == 2
    winner = next(body for status, body in outcomes if status == 200)
    title = json.loads(base64.b64decode(winner["groupChange"]["actions"]))["modifyTitle"]["title"]
    for status, body in outcomes:
        if status == 409:
            assert body["version"] == 1 and body["title"] == title  # the losers see the winner's state


@pytest.mark.django_db(transaction=True)
def test_concurrent_changes_in_sequence_each_win_once_they_rebase():
    admins = [Person() for _ in range(4)]
    group_id = create_group(admins[0], admins=admins[1:])
    errors = []

    def rename_until_done(person):
        try:
            for _ in range(20):
                response = change(person, group_id, modifyTitle={"title": B64(os.urandom(8))})
                if response.status_code == 200:
                    return
                assert response.status_code == 409
            errors.append("never won")
        except Exception as error:  # collected: an assertion in a thread would be lost
            errors.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=rename_until_done, args=(person,)) for person in admins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert current_version(group_id) == len(admins)
    versions = sorted(GroupChange.objects.filter(group__group_id=group_id).values_list("version", flat=True))
    assert versions == list(range(len(admins) + 1))
