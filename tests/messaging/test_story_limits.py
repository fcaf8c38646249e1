"""The `stories` limiter on multi-recipient story sends: a permit from every recipient account, all
or none, from the same bucket as 1:1 story sends."""

import os

import pytest

from messaging.models import QueuedMessage
from tests.factories import DeviceFactory, override_limit
from tests.messaging.helpers import all_devices, message_list
from tests.messaging.test_sealed_sender import aci_bytes, devices_of, mrm_payload, put_mrm

pytestmark = pytest.mark.django_db


def story_to(client, *accounts):
    payload = mrm_payload([(aci_bytes(account), devices_of(account), os.urandom(48)) for account in accounts])
    return put_mrm(client, payload, query="?story=true")


def queued_for(account) -> int:
    return QueuedMessage.objects.filter(device__account=account).count()


def test_a_story_to_a_recipient_past_its_stories_limit_is_429_and_queues_nothing(client):
    override_limit("stories", 2, 60)
    recipient = DeviceFactory().account
    for _ in range(2):
        assert story_to(client, recipient).status_code == 200

    refused = story_to(client, recipient)

    assert refused.status_code == 429 and refused["Retry-After"] == "60"
    assert queued_for(recipient) == 2


def test_one_recipient_past_the_limit_refuses_the_whole_story_and_costs_the_others_nothing(client):
    override_limit("stories", 1, 60)
    busy, idle = DeviceFactory().account, DeviceFactory().account
    assert story_to(client, busy).status_code == 200

    refused = story_to(client, idle, busy)

    assert refused.status_code == 429
    assert queued_for(idle) == 0
    assert story_to(client, idle).status_code == 200  # its one permit is still there


def test_one_to_one_and_multi_recipient_stories_share_the_recipients_bucket(client):
    override_limit("stories", 1, 60)
    recipient = DeviceFactory().account
    one_to_one = client.put(
        f"/v1/messages/{recipient.aci}?story=true", message_list(all_devices(recipient), type=6), format="json"
    )
    assert one_to_one.status_code == 200

    assert story_to(client, recipient).status_code == 429
