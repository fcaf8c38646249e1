"""The whole-dump audit (issue 18, docs/privacy.md): a realistic run through the real routes and the
real WebSocket route, then everything a seizure would find: every table, every Redis key and every
log line. Registrations from several addresses, a linked device, a bearer login, identified and
sealed sends, acknowledgements and receipts, offline recipients, a deletion, a spam report; then
the hourly purges with the clock 60 days on.

The run happens once (the first test that asks for it); each test asserts one property of its
dumps: `before` (after the sends, messages still queued), `reviewed` (after the deliveries and
the report, the clock not moved) and `after` (after the purges, Redis as it will be by then)."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import django.utils.timezone
import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.core.management import call_command
from google.protobuf.message import DecodeError

from accounts.models import Account
from messaging.models import QueuedMessage, SpamReport
from signalserver import purges
from signalserver.proto.envelope_pb2 import Envelope
from tests.privacy import dump
from tests.privacy.people import Person, next_envelope, receive_all, verification_settings

pytestmark = pytest.mark.django_db(transaction=True)

CLOCK_MOVES_ON = timedelta(days=60)  # past every retention period (the longest is 45 days)
TIMESTAMP = 1_734_000_000_000  # the senders' timestamps: TIMESTAMP + 1, + 2, ...
PEOPLE = {  # number, address
    "alice": ("+442079460101", "203.0.113.7"),
    "bob": ("+14155550102", "198.51.100.23"),
    "sam": ("+442079460103", "2001:db8::7"),  # sends sealed only
    "dave": ("+14155550104", "203.0.113.44"),  # offline, then reads and reports
    "carol": ("+442079460105", "192.0.2.55"),  # deletes her account
    "erin": ("+14155550106", "192.0.2.66"),  # never comes back
    "frank": ("+442079460107", "203.0.113.99"),  # verifies his number, never registers
}
LINKED_DEVICE_IP = "198.51.100.200"


@dataclass
class Audit:
    people: dict[str, Person]
    before: list[dump.Cell] = field(default_factory=list)
    reviewed: list[dump.Cell] = field(default_factory=list)
    after: list[dump.Cell] = field(default_factory=list)
    logs: dump.LogCapture | None = None
    delivered_early: list[Envelope] = field(default_factory=list)  # acknowledged before `before`
    delivered_late: list[Envelope] = field(default_factory=list)  # read from the queue after `before`
    contents: list[bytes] = field(default_factory=list)
    sent_between: tuple[int, int] = (0, 0)  # ms: when the server took the messages

    def log_cells(self) -> list[dump.Cell]:
        return self.logs.cells() + self.logs.cells(before_redaction=True)


_audit: Audit | None = None


@pytest.fixture
async def audit(settings, local_media, monkeypatch) -> Audit:
    global _audit
    if _audit is None:
        _audit = await run(settings, monkeypatch)
    return _audit


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _until_queue_empty(*devices: tuple[Person, int]) -> None:
    """Acknowledgements are deleted in batches: wait until those devices' queues are empty."""
    for _ in range(100):
        counts = [
            await sync_to_async(QueuedMessage.objects.filter(device__account_id=p.aci, device__device_id=d).count)() for p, d in devices
        ]
        if not any(counts):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("acknowledged messages still queued")


def _database_and_redis(alive_at_ms: int | None = None) -> list[dump.Cell]:
    return dump.database() + dump.redis(alive_at_ms=alive_at_ms)


async def run(settings, monkeypatch) -> Audit:
    verification_settings(settings)
    people = {name: Person(number, ip) for name, (number, ip) in PEOPLE.items()}
    alice, bob, sam, dave, carol, erin, frank = people.values()
    audit = Audit(people)
    with dump.LogCapture() as audit.logs:
        await sync_to_async(call_command)("sealed_sender", "development")
        for person in (alice, bob, sam, dave, carol, erin):
            await sync_to_async(person.register)()
        await sync_to_async(frank.verify_number)()
        await sync_to_async(alice.link_device)(ip=LINKED_DEVICE_IP)

        def log_in_and_set_up():
            tokens = alice.http(1).post("/v1/auth/token")
            assert tokens.status_code == 200, tokens.content
            refreshed = alice.http().post("/v1/auth/refresh", {"refreshToken": tokens.json()["refreshToken"]}, format="json")
            assert refreshed.status_code == 200, refreshed.content
            assert bob.http(1).put("/v1/accounts/apn", {"apnRegistrationId": "b" * 64}, format="json").status_code == 204
            assert sam.http(1).get("/v1/certificate/delivery").status_code == 200
            for recipient in (bob, dave, erin):
                assert sam.http(1).get(f"/v2/keys/{recipient.aci}/1").status_code == 200

        await sync_to_async(log_in_and_set_up)()

        bob_socket = bob.socket()
        assert (await bob_socket.connect())[0]
        assert await receive_all(bob_socket) == []

        def content(text: str) -> bytes:
            audit.contents.append(f"{text} {len(audit.contents)}".encode())
            return audit.contents[-1]

        start = _now_ms()
        await sync_to_async(alice.send)(bob, content("alice to bob"), timestamp=TIMESTAMP + 1)
        audit.delivered_early.append(await next_envelope(bob_socket))  # acknowledged: a receipt for Alice
        await sync_to_async(sam.send_sealed)(bob, content("sealed to bob"), timestamp=TIMESTAMP + 2)
        audit.delivered_early.append(await next_envelope(bob_socket))
        await sync_to_async(sam.send_sealed)(dave, content("sealed to dave"), timestamp=TIMESTAMP + 3)
        await sync_to_async(bob.send)(dave, content("bob to dave"), timestamp=TIMESTAMP + 4)
        await sync_to_async(carol.send)(dave, content("carol to dave"), timestamp=TIMESTAMP + 5)
        await sync_to_async(alice.send)(erin, content("alice to erin"), timestamp=TIMESTAMP + 6)
        await sync_to_async(sam.send_sealed)(erin, content("sealed to erin"), timestamp=TIMESTAMP + 7)
        audit.sent_between = (start, _now_ms())
        assert (await sync_to_async(carol.http(1).delete)("/v1/accounts/me")).status_code == 204
        await _until_queue_empty((bob, 1))

        audit.before = await sync_to_async(_database_and_redis)()
        await bob_socket.disconnect()

        dave_socket = dave.socket()
        assert (await dave_socket.connect())[0]
        audit.delivered_late += await receive_all(dave_socket)
        await dave_socket.disconnect()
        from_bob = next(e for e in audit.delivered_late if e.source_service_id == bob.aci.bytes)
        reported = await sync_to_async(dave.http(1).post)(
            f"/v1/messages/report/{bob.aci}/{from_bob.server_guid_text}",
            {"token": base64.b64encode(from_bob.report_spam_token).decode()}, format="json",
        )
        assert reported.status_code == 202
        assert await sync_to_async(SpamReport.objects.count)() == 1
        alice_socket = alice.socket(1)
        assert (await alice_socket.connect())[0]
        audit.delivered_late += await receive_all(alice_socket)  # Bob's delivery receipt
        await alice_socket.disconnect()
        await _until_queue_empty((dave, 1), (alice, 1))
        assert len(audit.delivered_late) == 4, audit.delivered_late

        audit.reviewed = await sync_to_async(dump.database)()
        # An operator reviews the report in the admin.
        await sync_to_async(SpamReport.objects.update)(status=SpamReport.Status.DISMISSED)

        # The clock moves on past every retention period, at its sources (Django's and Python's),
        # and the hourly purges run.
        later = CLOCK_MOVES_ON.total_seconds()
        with monkeypatch.context() as clock:
            real_now, real_time, real_time_ns = django.utils.timezone.now, time.time, time.time_ns
            clock.setattr(django.utils.timezone, "now", lambda: real_now() + CLOCK_MOVES_ON)
            clock.setattr(time, "time", lambda: real_time() + later)
            clock.setattr(time, "time_ns", lambda: real_time_ns() + int(later * 1e9))
            moved_ms = _now_ms()
            for purge in purges.purges():
                await sync_to_async(purge)()
        audit.after = await sync_to_async(_database_and_redis)(moved_ms)
    return audit


# --- the properties ---------------------------------------------------------------------------


def _owner_columns() -> set[str]:
    """Columns holding an account's own ACI as its key: the account row and references to it."""
    columns = set()
    for model in apps.get_models():
        for column in model._meta.concrete_fields:
            if (model is Account and column.primary_key) or (column.is_relation and column.related_model is Account):
                columns.add(f"{model._meta.db_table}.{column.column}")
    return columns


def _database(cells: list[dump.Cell]) -> list[dump.Cell]:
    return [cell for cell in cells if not cell.place.startswith("redis:")]


def _redis(cells: list[dump.Cell]) -> list[dump.Cell]:
    return [cell for cell in cells if cell.place.startswith("redis:")]


async def test_no_client_address_anywhere(audit):
    addresses = [form for _, ip in PEOPLE.values() for form in dump.address_forms(ip)] + dump.address_forms(LINKED_DEVICE_IP)
    assert audit.logs.written and _redis(audit.before) and _redis(audit.after)  # the dump read something
    found = dump.find(audit.before + audit.reviewed + audit.after + audit.log_cells(), addresses)
    assert dump.where(found) == []


async def test_phone_numbers_are_only_in_the_rows_that_hold_them(audit):
    numbers = [form for number, _ in PEOPLE.values() for form in dump.number_forms(number)]
    holders = {"accounts_account.number", "accounts_phonenumberidentifier.number"}
    while_needed = holders | {"accounts_verificationsession.number", "accounts_deletedaccount.number"}
    assert dump.where(cell for cell in dump.find(audit.before + audit.reviewed, numbers) if cell.place not in while_needed) == []
    assert dump.where(cell for cell in dump.find(audit.after, numbers) if cell.place not in holders) == []
    assert dump.where(dump.find(audit.log_cells(), numbers)) == []
    # Once purged, a number that never registered is gone; a deleted account's number stays only
    # with its PNI (a number keeps its PNI for good), linked to no ACI.
    frank, carol = audit.people["frank"].number, audit.people["carol"].number
    assert dump.where(dump.find(audit.after, dump.number_forms(frank))) == []
    assert {cell.place for cell in dump.find(audit.after, [carol.encode()])} == {"accounts_phonenumberidentifier.number"}


async def test_no_sender_of_a_sealed_message_anywhere(audit):
    sam = dump.uuid_forms(audit.people["sam"].aci)
    others = [form for name, person in audit.people.items() if name != "sam" and person.aci for form in dump.uuid_forms(person.aci)]
    owners = _owner_columns()
    for cells in (audit.before, audit.reviewed, audit.after):
        # In the database only as the key of Sam's own records (his account, devices, keys).
        assert dump.where(cell for cell in dump.find(_database(cells), sam) if cell.place not in owners) == []
        # In Redis only in keys of his own (his rate limits), never with anyone he wrote to.
        assert dump.where(dump.find(dump.find(_redis(cells), sam), others)) == []
    assert dump.where(dump.find(audit.logs.cells(), sam)) == []


def _queue(audit: Audit) -> list[dump.Cell]:
    """The queue table as read while Dave, Erin and Alice's devices had messages waiting."""
    queue = [cell for cell in audit.before if cell.place.startswith(f"{QueuedMessage._meta.db_table}.")]
    assert len({cell.row for cell in queue}) >= 5  # Dave's 3, Erin's 2, Alice's receipts
    return queue


def _known(audit: Audit) -> tuple[set[bytes], set[bytes], set[int]]:
    """What the queued messages turned out to hold once delivered: their guids, every account's
    ACI (senders and recipients), the senders' and the server's times."""
    later = audit.delivered_late
    guids = {envelope.server_guid for envelope in later}
    accounts = {person.aci.bytes for person in audit.people.values() if person.aci}
    timestamps = {TIMESTAMP + n for n in range(1, 8)} | {e.client_timestamp for e in later} | {e.server_timestamp for e in later}
    return guids, accounts, timestamps


async def test_the_queue_table_shows_no_guid_account_or_time_in_clear(audit):
    guids, accounts, timestamps = _known(audit)
    needles = [form for value in guids | accounts for form in dump.uuid_forms(uuid.UUID(bytes=value))]
    needles += [form for ms in timestamps for form in dump.timestamp_forms(ms)]
    assert dump.where(dump.find(_queue(audit), needles)) == []


async def test_the_queue_table_has_no_column_with_the_servers_time(audit):
    start, end = audit.sent_between
    clear = [cell for cell in _queue(audit) if isinstance(cell.raw, int) and start - 1000 <= cell.raw <= end + 1000]
    assert dump.where(clear) == []


async def test_no_queued_envelope_parses_as_an_envelope_with_its_fields(audit):
    guids, accounts, timestamps = _known(audit)
    start, end = audit.sent_between
    readable = []
    for cell in _queue(audit):
        if not isinstance(cell.raw, (bytes, memoryview)):
            continue
        try:
            envelope = Envelope.FromString(cell.value)
        except DecodeError:
            continue
        if (
            envelope.server_guid in guids
            or envelope.source_service_id in accounts
            or envelope.destination_service_id[-16:] in accounts
            or envelope.client_timestamp in timestamps
            or start <= envelope.server_timestamp <= end
        ):
            readable.append(cell)
    assert dump.where(readable) == []


async def test_nothing_of_a_delivered_message_is_left(audit):
    def traces(envelopes) -> list[bytes]:
        forms = [form for e in envelopes for form in dump.uuid_forms(uuid.UUID(bytes=e.server_guid))]
        return forms + [e.content for e in envelopes if e.content]

    assert dump.where(dump.find(audit.before, traces(audit.delivered_early))) == []
    delivered = audit.delivered_early + audit.delivered_late
    assert dump.where(dump.find(audit.after, traces(delivered) + audit.contents)) == []
    assert dump.where(dump.find(audit.logs.cells(), traces(delivered) + audit.contents)) == []


async def test_nothing_of_a_purged_record_is_left(audit):
    carol = dump.uuid_forms(audit.people["carol"].aci)
    # Before the clock moves on, the deleted account's ACI waits only for a re-registration of
    # its number (and in what it sent, still queued: see the queue table's test).
    waiting = {"accounts_deletedaccount.aci"}
    assert dump.where(c for c in dump.find(audit.before, carol) if c.place not in waiting and not c.place.startswith("messaging_queuedmessage.")) == []
    assert dump.where(dump.find(audit.after + audit.logs.cells(), carol)) == []
    purged = ("accounts_verificationsession", "accounts_deletedaccount", "accounts_usedlinktoken", "accounts_tokenfamily",
              "accounts_refreshtoken", "messaging_spamreport", "messaging_queuedmessage")
    assert {cell.place.split(".")[0] for cell in audit.before + audit.reviewed} >= set(purged)  # each had rows
    assert sorted({cell.place for cell in audit.after if cell.place.split(".")[0] in purged}) == []


async def test_rows_keep_no_time_finer_than_the_hour(audit):
    """Times in the records of accounts, keys, messages, media and push are whole hours or days,
    but for those that serve a live process and go with it (a verification session's waits, a
    5-minute username reservation, an upload's write lease, a push challenge's 5 minutes)."""
    live = {
        "accounts_verificationsession", "accounts_ratelimitpushchallenge.expires_at", "accounts_usernameclaim.expires",
        "media_upload.lease_until",
    }
    server_keys = {"messaging_trustroot", "messaging_servercertificate"}
    apps_prefixes = ("accounts_", "keys_", "messaging_", "media_", "push_", "groups_")
    exact = [
        cell for cell in audit.reviewed
        if isinstance(cell.raw, datetime)
        and cell.place.startswith(apps_prefixes)
        and cell.place.split(".")[0] not in server_keys | live
        and cell.place not in live
        and (cell.raw.minute, cell.raw.second, cell.raw.microsecond) != (0, 0, 0)
    ]
    assert dump.where(exact) == []
    checked = {cell.place for cell in audit.reviewed if isinstance(cell.raw, datetime)}
    assert checked >= {"accounts_device.push_token_set_at", "accounts_usedlinktoken.expires_at", "accounts_tokenfamily.expires_at", "accounts_refreshtoken.expires_at"}
