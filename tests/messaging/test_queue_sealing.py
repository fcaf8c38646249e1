"""Queued envelopes sealed at rest under keys outside the database, and their rotation
(messaging/sealing.py, `manage.py queue_keys`), through the real routes."""

import base64
import os
import subprocess
import sys
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from messaging.envelopes import parse_envelope
from messaging.models import QueuedMessage
from messaging.sealing import forget_keys, queue_keys
from tests.factories import DeviceFactory
from tests.messaging.helpers import all_devices, message_list
from tests.servers import PROJECT

pytestmark = pytest.mark.django_db

KEY_1 = "1:" + base64.b64encode(b"1" * 32).decode()
KEY_2 = "2:" + base64.b64encode(b"2" * 32).decode()


@pytest.fixture
def keys(settings):
    """Sets QUEUE_KEYS for the rest of the test: keys("2:..., 1:...")."""

    def use(value: str) -> None:
        settings.QUEUE_KEYS = value
        forget_keys()

    use(KEY_1)
    yield use
    forget_keys()


@pytest.fixture
def alice():
    return DeviceFactory()


@pytest.fixture
def bob():
    return DeviceFactory()


def send(client, recipient, content: bytes, **query) -> None:
    path = f"/v1/messages/{recipient.account.aci}" + ("?story=true" if query.get("story") else "")
    body = message_list(all_devices(recipient.account), content=content, timestamp=1764000000123)
    assert client.put(path, body, format="json").status_code == 200


def fetched(client_for, device) -> list[dict]:
    return client_for(device).get("/v1/messages", HTTP_X_SIGNAL_RECEIVE_STORIES="true").json()["messages"]


def raw_rows() -> list[tuple]:
    """Every column of every queue row, as the database holds them."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {QueuedMessage._meta.db_table}")
        return [tuple(bytes(value) if isinstance(value, memoryview) else value for value in row) for row in cursor.fetchall()]


def test_a_queue_row_holds_no_envelope_field_in_clear(keys, client_for, alice, bob):
    send(client_for(alice), bob, b"meet at noon")
    (row,) = raw_rows()
    envelope = parse_envelope(QueuedMessage.objects.get().open()[0])
    fields = [
        b"meet at noon",
        envelope.server_guid,
        envelope.server_guid_text.encode(),
        alice.account.aci.bytes,
        str(alice.account.aci).encode(),
        bob.account.aci.bytes,
        str(envelope.server_timestamp).encode(),
        envelope.server_timestamp.to_bytes(8, "big"),
        (1764000000123).to_bytes(8, "big"),
    ]
    dump = b"|".join(value if isinstance(value, bytes) else str(value).encode() for value in row)
    assert [field for field in fields if field in dump] == []
    assert envelope.server_timestamp // 3_600_000 in row  # the hour, not the millisecond
    assert fetched(client_for, bob)[0]["content"] == base64.b64encode(b"meet at noon").decode()


def test_a_row_moved_into_another_devices_queue_does_not_open(keys, client_for, alice, bob, caplog):
    send(client_for(alice), bob, b"for bob only")
    QueuedMessage.objects.update(device=alice)
    assert fetched(client_for, alice) == []
    assert "queued messages do not open" in caplog.text
    assert QueuedMessage.objects.count() == 1  # kept: the key may come back; retention removes it


def test_rotation_reseals_every_row_under_the_new_key_and_nothing_is_lost(keys, client_for, alice, bob, capsys):
    send(client_for(alice), bob, b"under key 1")
    keys(f"{KEY_2},{KEY_1}")  # the new key first: it seals, both open
    send(client_for(alice), bob, b"under key 2", story=True)
    call_command("queue_keys", "status")
    assert capsys.readouterr().out.splitlines() == [
        "key 2 (current): 1 queued messages",
        "key 1 (opens only): 1 queued messages",
    ]

    call_command("queue_keys", "rotate")
    assert capsys.readouterr().out.strip() == "resealed 1 queued messages under key 2"
    assert set(QueuedMessage.objects.values_list("key_id", flat=True)) == {2}

    keys(KEY_2)  # the old key is gone: every row still opens, acks by guid still find theirs
    messages = fetched(client_for, bob)
    assert [(base64.b64decode(m["content"]), m["story"]) for m in messages] == [(b"under key 1", False), (b"under key 2", True)]
    for message in messages:
        assert client_for(bob).delete(f"/v1/messages/uuid/{message['guid']}").status_code == 204
    assert not QueuedMessage.objects.filter(device=bob).exists()
    assert [m["type"] for m in fetched(client_for, alice)] == [5]  # the receipt of the one identified message


def test_rows_under_a_key_no_longer_configured_are_reported_not_lost(keys, client_for, alice, bob, capsys):
    send(client_for(alice), bob, b"sealed under key 1")
    keys(KEY_2)
    call_command("queue_keys", "status")
    assert "key 1 (NOT CONFIGURED): 1 queued messages that cannot be delivered" in capsys.readouterr().out
    with pytest.raises(CommandError, match="1 queued messages do not open"):
        call_command("queue_keys", "rotate")
    keys(f"{KEY_2},{KEY_1}")  # restored: delivered after all
    assert len(fetched(client_for, bob)) == 1


def test_a_new_key_goes_first_in_the_key_file(settings, tmp_path, capsys):
    key_file = tmp_path / "queue.keys"
    key_file.write_text(KEY_1 + "\n")
    settings.QUEUE_KEYS, settings.QUEUE_KEYS_FILE = "", str(key_file)
    forget_keys()
    try:
        call_command("queue_keys", "new", "--write")
        lines = key_file.read_text().splitlines()
        assert [line.split(":")[0] for line in lines] == ["2", "1"] and len(base64.b64decode(lines[0][2:])) == 32
        forget_keys()
        assert queue_keys().current.id == 2 and set(queue_keys().by_id) == {1, 2}
    finally:
        forget_keys()


@pytest.mark.parametrize(
    ("queue_keys_env", "refusal"),
    [
        ({}, "neither QUEUE_KEYS nor QUEUE_KEYS_FILE is set"),
        ({"QUEUE_KEYS": "1:c2hvcnQ="}, "QUEUE_KEYS: ids are 1..32767, keys 32 bytes"),
        ({"QUEUE_KEYS_FILE": "/nonexistent/queue.keys"}, "QUEUE_KEYS_FILE cannot be read"),
    ],
)
def test_production_does_not_start_without_a_usable_queue_key(queue_keys_env, refusal):
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "signalserver.settings",
        "SIGNALSERVER_ENV": "production",
        "DEBUG": "false",
        "SECRET_KEY": uuid.uuid4().hex,
        "ALLOWED_HOSTS": "chat.example.org",
        **queue_keys_env,
    }
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and refusal in done.stderr, done.stderr[-2000:]
