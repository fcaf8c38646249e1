"""Sending, queueing and acknowledging messages: the one delivery path (docs/architecture.md §4).

`send_messages` checks 1:1 sends (one, or a batch from the sockets of a process:
`messaging.batches`) and turns them into envelopes; `deliver_envelopes` is the only way
into a device queue (1:1 sends, receipts, and later multi-recipient and group fan-out); after its
transaction commits it hands the new rows to the devices' live sockets, or asks for a push.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from accounts.models import MAX_DEVICE_ID, Account, Device
from accounts.challenges.services import challenge_gated
from accounts.selectors import has_unidentified_access
from groups.send_tokens import verify_group_send_token
from messaging.envelopes import (
    CLIENT_TYPES,
    SERVER_DELIVERY_RECEIPT,
    UNIDENTIFIED_SENDER,
    build_envelope,
    envelope_destination,
    envelope_source,
    parse_envelope,
)
from messaging.models import QueuedMessage
from messaging.multi_recipient import MultiRecipientMessage
from messaging.notify import notify_committed
from messaging.reports import report_token
from messaging.sealing import UnreadableEnvelope, guid_tag, guid_tags, queue_keys, seal, unseal
from signalserver import metrics, ratelimit
from signalserver.batching import each_going_on
from signalserver.db import any_of, as_uuid, bound_cursor
from signalserver.randomness import uuid4
from signalserver.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    Unauthorized,
    UnprocessableEntity,
)
from signalserver.wire import ServiceId

logger = logging.getLogger(__name__)

MAX_CONTENT_BYTES = 96 * 1024  # per destination device
MAX_TIMESTAMP = 8_640_000_000_000_000
# An `online` (ephemeral) message is only for sockets open now, and stale after this.
EPHEMERAL_MAX_AGE_MS = 10_000
# Rows per INSERT statement (5 parameters each; SQLite takes at most 32,766 parameters).
INSERT_BATCH = 1000
HOUR_MS = 3_600_000


class MismatchedDevices(Conflict):
    """The request does not address exactly the destination's devices."""

    def __init__(self, *, missing: list[int], extra: list[int]):
        super().__init__(body={"missingDevices": missing, "extraDevices": extra})


class StaleDevices(DomainError):
    """Some addressed devices were re-registered: the sender's sessions with them are stale."""

    status = 410
    message = "Stale devices"

    def __init__(self, *, stale: list[int]):
        super().__init__(body={"staleDevices": stale})


class MismatchedRecipientDevices(Conflict):
    """Multi-recipient: `[{"uuid", "devices": {missingDevices, extraDevices}}]`."""


class StaleRecipientDevices(DomainError):
    """Multi-recipient: `[{"uuid", "devices": {staleDevices}}]`."""

    status = 410
    message = "Stale devices"


class ContentTooLarge(DomainError):
    status = 413
    message = "Content too large"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One entry of a send: the ciphertext for one destination device."""

    device_id: int
    registration_id: int
    type: int
    content: bytes


@dataclass(slots=True)
class Delivery:
    """One envelope for one device queue."""

    device_pk: int
    aci: uuid.UUID
    device_id: int
    guid: uuid.UUID
    envelope: bytes
    server_timestamp: int
    story: bool = False
    urgent: bool = True
    ephemeral: bool = False
    row_id: int | None = field(default=None)
    key_id: int = 0  # with `sealed`: the envelope as its queue row holds it (messaging/sealing.py)
    sealed: bytes | None = None

    def seal(self) -> tuple[int, bytes]:
        if self.sealed is None:
            self.key_id, self.sealed = seal(self.envelope, story=self.story, device_pk=self.device_pk)
        return self.key_id, self.sealed


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- Sending ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One 1:1 send: identified, sealed sender, or a story.

    `sender` is the authenticated principal (`request.auth`), None for an anonymous caller, who
    needs the destination's unidentified `access_key` or a `group_send_token` naming
    the destination (`groups.send_tokens`) unless it sends a story.
    """

    sender: Any
    destination: ServiceId
    messages: list[OutgoingMessage]
    online: bool = False
    urgent: bool = True
    story: bool = False
    timestamp: int = 0
    access_key: bytes | None = None
    group_send_token: str | None = None


def send_message(request: SendRequest) -> bool:
    """Queue one 1:1 send; returns `needsSync`."""
    outcome = send_messages([request])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@dataclass(slots=True)
class _Send:
    """A send on its way through `send_messages`."""

    index: int
    request: SendRequest
    is_sync: bool = False
    source: ServiceId | None = None  # the sender as the envelope names it (None: sealed, story)
    target: Destination | None = None
    takes: list = field(default_factory=list)  # the rate-limit buckets it takes
    refusal: DomainError | None = None  # what the rate limiter said to those
    deliveries: list[Delivery] = field(default_factory=list)


def send_messages(requests: list[SendRequest]) -> list[bool | Exception]:
    """Queue many 1:1 sends at once (the sends of a process's sockets that arrived together): one
    read of every destination and sender, one rate-limit call, one INSERT. Each send succeeds or
    fails on its own: its outcome is its `needsSync`, or the error it answers with."""
    outcomes: list = [None] * len(requests)
    sends = each_going_on([_Send(index, request) for index, request in enumerate(requests)], outcomes, _check_request)
    if not sends:
        return outcomes
    accounts = _load_accounts(
        [send.request.destination for send in sends], [send.source.uuid for send in sends if send.source is not None]
    )
    sends = each_going_on(sends, outcomes, lambda send: _check_access(send, accounts))
    for send, refusal in zip(sends, ratelimit.check_each([send.takes for send in sends]), strict=True):
        send.refusal = refusal
    sends = each_going_on(sends, outcomes, _check_refusal)
    sends = each_going_on(sends, outcomes, _build_deliveries)
    _drop_blocked(sends)
    identified = sealed = 0  # envelopes queued, counted once for the batch
    for send in _queue(sends, outcomes):
        if send.source is None:
            sealed += len(send.deliveries)
        else:
            identified += len(send.deliveries)
        if send.is_sync or send.source is None:
            outcomes[send.index] = False
        else:
            sender = accounts.get(send.source)
            outcomes[send.index] = sender is not None and len(sender.devices) > 1
    if identified:
        metrics.SENT_IDENTIFIED.inc(identified)
    if sealed:
        metrics.SENT_SEALED.inc(sealed)
    return outcomes


def _check_request(send: _Send) -> None:
    """What a send can be refused for before anything is read."""
    request = send.request
    check_outgoing_messages(request.messages)
    if not 0 <= request.timestamp <= MAX_TIMESTAMP:
        raise UnprocessableEntity("timestamp out of range")
    sender, destination = request.sender, request.destination
    send.is_sync = sender is not None and not request.story and destination.uuid in (sender.account.aci, sender.account.pni)
    if send.is_sync and destination.is_pni:
        raise Forbidden("sync messages go to the ACI")
    if request.group_send_token is not None:
        # Checked before anything is read: the token names its recipients (as Signal does).
        verify_group_send_token(request.group_send_token, [destination])
    elif sender is None and not request.story and (request.access_key is None or destination.is_pni):
        raise Unauthorized()  # sealed sender: a PNI destination looks exactly like a wrong key
    # Stories and sealed-sender messages carry no sender anywhere on the server.
    send.source = ServiceId(sender.account.aci) if sender is not None and not request.story else None


def _check_access(send: _Send, accounts: dict[ServiceId, Destination]) -> bool | None:
    """The destination exists and the sender may write to it; the rate-limit buckets the send takes."""
    request = send.request
    target = accounts.get(request.destination)
    if request.story:
        if target is None:
            return False  # never reveal whether a story's destination exists
    elif request.sender is None:
        if request.group_send_token is not None:
            if target is None:
                raise NotFound()  # the token named it: its holder may learn it is gone
        # Sealed sender: unknown destinations look exactly like a wrong key (401, not 404).
        elif target is None or not has_unidentified_access(target, request.access_key):
            raise Unauthorized()
        if any(message.type != UNIDENTIFIED_SENDER for message in request.messages):
            raise BadRequest("sealed-sender messages must be of type UNIDENTIFIED_SENDER")
    elif target is None:
        raise NotFound()
    send.target = target
    inbound = ratelimit.Take("inboundMessageBytes", str(target.aci), sum(len(m.content) for m in request.messages))
    if request.story:
        send.takes = [ratelimit.Take("stories", str(target.aci)), inbound]
    elif send.source is not None and not send.is_sync:
        pair = ratelimit.pair_key(send.source.uuid, target.aci)
        send.takes = [ratelimit.Take("messages", pair, 1, send.source.uuid), inbound]
    else:
        send.takes = [inbound]
    return None


def _check_refusal(send: _Send) -> None:
    if send.refusal is not None:
        if send.request.sender is None:
            raise send.refusal
        # The sender's `messages` limit is lifted by a challenge (428); the others are a plain 429.
        raise challenge_gated(send.refusal, "messages", account=send.request.sender.account)


def _build_deliveries(send: _Send) -> None:
    """The send's envelopes, after the 409/410/413 checks against the destination's devices."""
    request, target = send.request, send.target
    exclude_device_id = request.sender.device.device_id if send.is_sync else None
    devices = _check_device_set(target.devices, request.destination, request.messages, exclude_device_id=exclude_device_id)
    server_timestamp = now_ms()
    send.deliveries = [
        _delivery(
            devices[message.device_id],
            target.aci,
            message=message,
            destination=request.destination,
            source=send.source,
            source_device=request.sender.device.device_id if send.source is not None else None,
            client_timestamp=request.timestamp or server_timestamp,
            server_timestamp=server_timestamp,
            urgent=request.urgent,
            story=request.story,
            ephemeral=request.online,
        )
        for message in request.messages
    ]


def _drop_blocked(sends: list[_Send]) -> None:
    """Identified sends to an account that blocks their sender are answered as any other, after
    every check, and queue nothing (the sender learns nothing). One query for the batch, none
    when no identified send goes to an account that blocks anyone."""
    identified = [send for send in sends if send.source is not None and not send.is_sync and send.target.blocks_someone]
    if not identified:
        return
    from accounts.blocks.services import blocked_pairs

    triples = {send.index: (send.target.aci, send.request.sender.account.aci, send.request.sender.account.pni) for send in identified}
    blocked = blocked_pairs(list(set(triples.values())))
    for send in identified:
        if triples[send.index] in blocked:
            send.deliveries = []


def _queue(sends: list[_Send], outcomes: list) -> list[_Send]:
    """Insert the rows of every send in one statement (atomic on its own); the sends queued."""
    try:
        with _savepoint_if_nested():
            deliver_envelopes([delivery for send in sends for delivery in send.deliveries])
        return sends
    except IntegrityError:
        pass
    # A destination device went away between the read and the insert, and the statement inserted
    # nothing: each send again on its own, after a fresh read of its destination, which answers
    # 409/410 like any other mismatch.
    queued = []
    for send in sends:
        reloaded = _load_accounts([send.request.destination], []).get(send.request.destination)
        send.target = replace(send.target, devices=reloaded.devices if reloaded is not None else [])
        try:
            _build_deliveries(send)
            with _savepoint_if_nested():
                deliver_envelopes(send.deliveries)
        except (DomainError, IntegrityError) as error:
            outcomes[send.index] = error
        else:
            queued.append(send)
    return queued


def _savepoint_if_nested():
    """Inside a caller's transaction, a failed statement must not abort it: run it in a savepoint.
    Outside one (autocommit), a single statement needs no transaction of its own."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def check_outgoing_messages(messages: list[OutgoingMessage]) -> None:
    """Shape rules of a send that need no database: types, device ids, duplicates, content."""
    if not messages:
        raise UnprocessableEntity("messages must not be empty")
    seen: set[int] = set()
    for message in messages:
        if message.type not in CLIENT_TYPES:
            raise UnprocessableEntity("invalid envelope type")
        if not 1 <= message.device_id <= MAX_DEVICE_ID:
            raise UnprocessableEntity("invalid destination device id")
        if message.device_id in seen:
            raise UnprocessableEntity("duplicate destination device")
        seen.add(message.device_id)
        if not message.content:
            raise UnprocessableEntity("content must not be empty")


@dataclass(frozen=True, slots=True)
class Destination:
    """What a send needs of an account (a destination, or the sender), read in one query."""

    aci: uuid.UUID
    unidentified_access_key: bytes | None
    unrestricted_unidentified_access: bool
    devices: list[tuple]  # (device id, pk, registration id, PNI registration id)
    blocks_someone: bool = False


def _load_accounts(service_ids: list[ServiceId], sender_acis: list[uuid.UUID]) -> dict[ServiceId, Destination]:
    """The accounts these service ids name, and the senders' accounts, with their devices: the
    one read of a batch of 1:1 sends or of a multi-recipient send (the hottest requests we serve;
    no ORM query building on them).
    Unknown ones are absent (an account always has its primary device)."""
    acis = list({sid.uuid for sid in service_ids if not sid.is_pni} | set(sender_acis))
    pnis = list({sid.uuid for sid in service_ids if sid.is_pni})
    by_aci, aci_params = any_of("a.aci", acis, "uuid")
    by_pni, pni_params = any_of("a.pni", pnis, "uuid")
    with bound_cursor() as cursor:
        cursor.execute(
            "SELECT a.aci, a.pni, a.unidentified_access_key, a.unrestricted_unidentified_access, a.blocks_someone,"
            " d.device_id, d.id, d.registration_id, d.pni_registration_id"
            f" FROM {Account._meta.db_table} a JOIN {Device._meta.db_table} d ON d.account_id = a.aci"
            f" WHERE {by_aci} OR {by_pni}",
            aci_params + pni_params,
        )
        rows = cursor.fetchall()
    found: dict[ServiceId, Destination] = {}
    wanted_pnis = set(pnis)
    for aci, pni, access_key, unrestricted, blocks_someone, *device in rows:
        key = ServiceId(as_uuid(aci))
        account = found.get(key)
        if account is None:
            account = found[key] = Destination(
                aci=key.uuid,
                unidentified_access_key=bytes(access_key) if access_key is not None else None,
                unrestricted_unidentified_access=bool(unrestricted),
                devices=[],
                blocks_someone=bool(blocks_someone),
            )
            if pni is not None and as_uuid(pni) in wanted_pnis:
                found[ServiceId(as_uuid(pni), is_pni=True)] = account
        account.devices.append(tuple(device))
    return found


def _check_device_set(
    rows: list[tuple], destination: ServiceId, messages: list[OutgoingMessage], *, exclude_device_id: int | None
) -> dict[int, tuple[int, int | None]]:
    """device id → (pk, registration id of the addressed identity), after the 410/409/413 checks."""
    devices = _addressable(rows, destination, exclude_device_id)
    missing, extra, stale = _mismatches(devices, [(m.device_id, m.registration_id) for m in messages])
    if stale:
        raise StaleDevices(stale=stale)
    if missing or extra:
        raise MismatchedDevices(missing=missing, extra=extra)
    if any(len(message.content) > MAX_CONTENT_BYTES for message in messages):
        raise ContentTooLarge()
    return devices


def _addressable(
    rows: list[tuple], destination: ServiceId, exclude_device_id: int | None = None
) -> dict[int, tuple[int, int | None]]:
    """device id → (pk, the registration id of the addressed identity)."""
    return {
        device_id: (pk, pni_registration_id if destination.is_pni else registration_id)
        for device_id, pk, registration_id, pni_registration_id in rows
        if device_id != exclude_device_id
    }


def _mismatches(
    devices: dict[int, tuple[int, int | None]], requested: list[tuple[int, int]]
) -> tuple[list[int], list[int], list[int]]:
    """(missing, extra, stale) device ids of a request against the account's devices. A device
    without a registration id for the addressed identity (no PNI registration id) is stale."""
    wanted = dict(requested)
    stale = sorted(
        device_id
        for device_id, registration_id in wanted.items()
        if device_id in devices
        # 0 means "not checked": old clients sent it, and accepting it is harmless.
        and registration_id != 0
        and registration_id != devices[device_id][1]
    )
    missing = sorted(set(devices) - set(wanted))
    extra = sorted(set(wanted) - set(devices))
    return missing, extra, stale


def _delivery(
    device: tuple[int, int | None],
    aci: uuid.UUID,
    *,
    message: OutgoingMessage,
    destination: ServiceId,
    source: ServiceId | None,
    source_device: int | None,
    client_timestamp: int,
    server_timestamp: int,
    urgent: bool,
    story: bool,
    ephemeral: bool,
) -> Delivery:
    guid = uuid4()
    envelope = build_envelope(
        type=message.type,
        guid=guid,
        destination=destination,
        content=message.content,
        client_timestamp=client_timestamp,
        server_timestamp=server_timestamp,
        urgent=urgent,
        story=story,
        source=source,
        source_device=source_device,
        report_spam_token=report_token(guid, source.uuid) if source is not None else None,
    )
    return Delivery(
        device_pk=device[0],
        aci=aci,
        device_id=message.device_id,
        guid=guid,
        envelope=envelope,
        server_timestamp=server_timestamp,
        story=story,
        urgent=urgent,
        ephemeral=ephemeral,
    )


def send_multi_recipient_message(
    *,
    message: MultiRecipientMessage,
    access_key: bytes | None,
    group_send_token: str | None = None,
    timestamp: int = 0,
    online: bool = False,
    urgent: bool = True,
    story: bool = False,
) -> list[str]:
    """Queue one sealed-sender payload for every device of every recipient, in one
    transaction; returns `uuids404`: the recipients a group send token named that have no account
    (skipped; with an access key an unknown recipient is a 404)."""
    if not message.recipients:
        raise BadRequest("no recipients")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise BadRequest("timestamp out of range")
    if group_send_token is not None:
        # The token covers the recipients and those deliberately excluded: a member's token for
        # the whole group serves a send that leaves some members out. Checked before any read.
        verify_group_send_token(group_send_token, [r.service_id for r in message.recipients] + message.excluded)
    found = _load_accounts([recipient.service_id for recipient in message.recipients], [])
    accounts = {r.service_id: found[r.service_id] for r in message.recipients if r.service_id in found}
    uuids404 = []
    if group_send_token is not None:
        recipients = [r for r in message.recipients if r.service_id in accounts]
        uuids404 = [str(r.service_id) for r in message.recipients if r.service_id not in accounts]
    elif story:
        recipients = [r for r in message.recipients if r.service_id in accounts]
        # A `stories` permit from every recipient account (once each, even when named by both its
        # ACI and PNI), all or none: one recipient over its limit refuses the whole send (429).
        story_accounts = sorted({str(accounts[r.service_id].aci) for r in recipients})
        ratelimit.check_all([ratelimit.Take("stories", aci) for aci in story_accounts])
    else:
        if access_key is None:
            raise Unauthorized()
        if len(accounts) < len(message.recipients):
            raise NotFound()
        if any(recipient.service_id.is_pni for recipient in message.recipients):
            raise Unauthorized()
        if not hmac.compare_digest(_combined_access_key(accounts.values()), access_key):
            raise Unauthorized()
        recipients = message.recipients
    if recipients and len(message.payload_for(recipients[0])) > MAX_CONTENT_BYTES:
        raise ContentTooLarge()

    server_timestamp = now_ms()
    with transaction.atomic():
        deliveries, mismatched, stale = [], [], []
        for recipient in recipients:
            account = accounts[recipient.service_id]
            devices = _addressable(account.devices, recipient.service_id)
            missing, extra, stale_ids = _mismatches(devices, recipient.devices)
            uuid_text = str(recipient.service_id)
            if missing or extra:
                mismatched.append({"uuid": uuid_text, "devices": {"missingDevices": missing, "extraDevices": extra}})
            elif stale_ids:
                stale.append({"uuid": uuid_text, "devices": {"staleDevices": stale_ids}})
            if mismatched or stale:
                continue
            payload = message.payload_for(recipient)
            for device_id, _ in recipient.devices:
                guid = uuid4()
                deliveries.append(
                    Delivery(
                        device_pk=devices[device_id][0],
                        aci=account.aci,
                        device_id=device_id,
                        guid=guid,
                        server_timestamp=server_timestamp,
                        story=story,
                        urgent=urgent,
                        ephemeral=online,
                        envelope=build_envelope(
                            type=UNIDENTIFIED_SENDER,
                            guid=guid,
                            destination=recipient.service_id,
                            content=payload,
                            client_timestamp=timestamp or server_timestamp,
                            server_timestamp=server_timestamp,
                            urgent=urgent,
                            story=story,
                        ),
                    )
                )
        if mismatched:  # 409 wins over 410 here
            raise MismatchedRecipientDevices(body=mismatched)
        if stale:
            raise StaleRecipientDevices(body=stale)
        deliver_envelopes(deliveries)
        metrics.SENT_MULTI_RECIPIENT.inc(len(deliveries))
    return uuids404


def _combined_access_key(accounts) -> bytes:
    """XOR of the recipients' access keys; unrestricted recipients contribute nothing."""
    combined = bytes(16)
    for account in accounts:
        if account.unrestricted_unidentified_access:
            continue
        if account.unidentified_access_key is None:
            raise Unauthorized()  # nobody may send it sealed-sender messages
        combined = bytes(a ^ b for a, b in zip(combined, bytes(account.unidentified_access_key), strict=True))
    return combined


# --- Queueing -----------------------------------------------------------------------------------


def deliver_envelopes(deliveries: list[Delivery]) -> None:
    """Queue envelopes (one row per device) and, once committed, hand them to live sockets or ask
    for pushes. Ephemeral envelopes are never stored: they go to live sockets only. On PostgreSQL
    the rows go in one INSERT; on SQLite one per INSERT_BATCH rows (more only inside a transaction)."""
    durable = [delivery for delivery in deliveries if not delivery.ephemeral]
    if durable:
        rows = _queue_rows(durable)
        if connection.vendor == "postgresql":
            _insert_arrays(durable, rows)
        else:
            for start in range(0, len(durable), INSERT_BATCH):
                _insert_values(durable[start : start + INSERT_BATCH], rows[start : start + INSERT_BATCH])
    transaction.on_commit(lambda: notify_committed(deliveries))


_QUEUE_COLUMNS = "device_id, guid_tag, queued_hour, key_id, envelope"


def _queue_rows(deliveries: list[Delivery]) -> list[tuple]:
    """The queue row of each delivery: nothing of its envelope in clear (messaging/sealing.py)."""
    rows = []
    for delivery in deliveries:
        key_id, sealed = delivery.seal()
        rows.append((delivery.device_pk, guid_tag(delivery.guid), delivery.server_timestamp // HOUR_MS, key_id, sealed))
    return rows


def _insert_arrays(deliveries: list[Delivery], rows: list[tuple]) -> None:
    """PostgreSQL: the rows as five arrays, one statement text whatever their count (psycopg
    converts it once; a VALUES list of many rows was parsed again on every send)."""
    with bound_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {QueuedMessage._meta.db_table} ({_QUEUE_COLUMNS})"
            " SELECT * FROM unnest(%b::bigint[], %b::bytea[], %b::integer[], %b::smallint[], %b::bytea[])"
            " RETURNING id, guid_tag",
            [list(column) for column in zip(*rows, strict=True)],
        )
        row_ids = {bytes(tag): row_id for row_id, tag in cursor.fetchall()}
    for delivery, row in zip(deliveries, rows, strict=True):
        delivery.row_id = row_ids[row[1]]


def _insert_values(deliveries: list[Delivery], rows: list[tuple]) -> None:
    params = [value for row in rows for value in row]
    with connection.cursor() as cursor:  # SQLite
        cursor.execute(_insert_sql(len(deliveries)), params)
        # Rows come back in the order of VALUES (SQLite ≥ 3.35; bulk_create relies on it too).
        for delivery, (row_id,) in zip(deliveries, cursor.fetchall(), strict=True):
            delivery.row_id = row_id


def _parameters(count: int, one: str = "%s") -> str:
    """`count` parameter markers (or groups of them) for a raw SQL list: `%s, %s, ...`."""
    return ", ".join([one] * count)




@cache
def _insert_sql(rows: int) -> str:
    values = _parameters(rows, "(%s, %s, %s, %s, %s)")
    return f"INSERT INTO {QueuedMessage._meta.db_table} ({_QUEUE_COLUMNS}) VALUES {values} RETURNING id"


# --- Reading and acknowledging ------------------------------------------------------------------


def retention_cutoff_hour() -> int:
    """Rows queued before this hour are expired (kept to the hour: the row holds no finer time)."""
    return (now_ms() - settings.MESSAGE_RETENTION_DAYS * 86_400_000) // HOUR_MS


def list_queued(*, device_pk: int, after_id: int = 0, limit: int = 100, stories: bool = True) -> list[tuple]:
    """(row id, envelope, story) of a device's queue in order, oldest first, opened; expired rows
    are not delivered even before the purge removes them, nor rows that do not open."""
    listed: list[tuple] = []
    while len(listed) < limit:
        wanted = limit - len(listed)
        rows = list(
            QueuedMessage.objects.filter(device_id=device_pk, id__gt=after_id, queued_hour__gte=retention_cutoff_hour())
            .order_by("id")
            .values_list("id", "key_id", "envelope")[:wanted]
        )
        unreadable = 0
        for row_id, key_id, sealed in rows:
            try:
                envelope, story = unseal(key_id, sealed, device_pk=device_pk)
            except UnreadableEnvelope:
                unreadable += 1  # it stays until its key is restored or it expires
                continue
            if stories or not story:
                listed.append((row_id, envelope, story))
        if unreadable:
            logger.error("queued messages do not open: is a queue key missing?", extra={"count": unreadable})
        if len(rows) < wanted:
            break
        after_id = rows[-1][0]
    return listed


def has_queued(*, device_pk: int) -> bool:
    return QueuedMessage.objects.filter(device_id=device_pk, queued_hour__gte=retention_cutoff_hour()).exists()


class Receipt(NamedTuple):
    """The server delivery receipt that acknowledging an identified envelope owes its sender."""

    sender: uuid.UUID  # the sender's ACI
    recipient: ServiceId  # the envelope's destination
    client_timestamp: int


class Acknowledgement(NamedTuple):
    """A delivered row of a device's queue, with what its acknowledgement owes once the row is
    deleted: the envelope's kind (`metrics.envelope_kind`) and, for an identified message, its
    sender's receipt. A socket works it out from the envelope it delivers
    (`acknowledgement`), so deleting the row needs nothing of it back from the database."""

    row_id: int
    kind: int
    receipt: Receipt | None


def acknowledgement(row_id: int, envelope: bytes) -> Acknowledgement:
    kind = metrics.envelope_kind(envelope)
    return Acknowledgement(row_id, kind, receipt_owed(envelope) if kind == metrics.IDENTIFIED_KIND else None)


def receipt_owed(data: bytes) -> Receipt | None:
    """The receipt an acknowledged envelope owes: none for sealed sender (no source), for
    receipts, or for the sender's own devices (sync messages)."""
    envelope = parse_envelope(data)
    source = envelope_source(envelope)
    destination = envelope_destination(envelope)
    if source is None or destination is None or envelope.type == SERVER_DELIVERY_RECEIPT or source == destination:
        return None
    return Receipt(source.uuid, destination, envelope.client_timestamp)


def acknowledge_guids(*, device, guids: list[uuid.UUID]) -> int:
    """Delete this device's messages with these guids (REST, `DELETE /v1/messages/uuid/{guid}`)
    and queue their receipts; returns how many were deleted. Another device's guids match
    nothing. The rows are opened to learn what they owe, since no socket delivered them."""
    if not guids:
        return 0
    by_guid, params = any_of("guid_tag", [tag for guid in guids for tag in guid_tags(guid)], "bytea")
    table = QueuedMessage._meta.db_table
    with transaction.atomic():
        with bound_cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE device_id = %s AND {by_guid} RETURNING key_id, envelope", [device.pk, *params])
            deleted = cursor.fetchall()
        acknowledged = []
        for key_id, sealed in deleted:
            try:
                acknowledged.append(acknowledgement(0, unseal(key_id, sealed, device_pk=device.pk)[0]))
            except UnreadableEnvelope:
                pass  # never delivered (it does not open), so it owes nothing
        _settle({device.pk: device.device_id}, [(device.pk, ack) for ack in acknowledged])
    return len(deleted)


def acknowledge_rows(acks: dict[tuple[int, int], list[Acknowledgement]]) -> int:
    """Delete acknowledged rows of many devices at once, (device pk, device id) → the rows a
    socket delivered: one DELETE, then one INSERT of the receipts the deleted ones owe; returns
    how many were deleted. A device's row ids delete only that device's rows."""
    pairs = [(device_pk, ack.row_id) for (device_pk, _), device_acks in acks.items() for ack in device_acks]
    if not pairs:
        return 0
    if connection.vendor == "postgresql":
        # One statement text whatever the batch: prepared once per connection.
        condition = "(device_id, id) IN (SELECT * FROM unnest(%b::bigint[], %b::bigint[]))"
        params = [[device_pk for device_pk, _ in pairs], [row_id for _, row_id in pairs]]
    else:
        condition = " OR ".join(["(device_id = %s AND id = %s)"] * len(pairs))
        params = [value for pair in pairs for value in pair]
    by_row = {(device_pk, ack.row_id): ack for (device_pk, _), device_acks in acks.items() for ack in device_acks}
    table = QueuedMessage._meta.db_table
    with transaction.atomic():
        with bound_cursor() as cursor:
            # Only what this statement deleted owes anything (an ack delivered twice, or a row
            # id of another device's queue, deletes nothing).
            cursor.execute(f"DELETE FROM {table} WHERE {condition} RETURNING device_id, id", params)
            deleted = cursor.fetchall()
        _settle(dict(acks.keys()), [(device_pk, by_row[(device_pk, row_id)]) for device_pk, row_id in deleted])
    return len(deleted)


def _settle(device_ids: dict[int, int], deleted: list[tuple[int, Acknowledgement]]) -> None:
    """Count the acknowledged rows (device pk, acknowledgement) by kind and queue the receipts
    they owe; device_ids: device pk → device id."""
    tally = [0, 0, 0]
    for _, ack in deleted:
        tally[ack.kind] += 1
    metrics.count_acknowledged(tally)
    _queue_receipts([(device_ids[device_pk], ack.receipt) for device_pk, ack in deleted if ack.receipt is not None])


def _queue_receipts(owed: list[tuple[int, Receipt]]) -> None:
    """Server delivery receipts to every device of the senders, (device id that acknowledged,
    receipt): one INSERT."""
    receipts_by_sender: dict[uuid.UUID, list[tuple[ServiceId, int, int]]] = {}
    for acknowledging_device_id, receipt in owed:
        receipts_by_sender.setdefault(receipt.sender, []).append((receipt.recipient, acknowledging_device_id, receipt.client_timestamp))
    if not receipts_by_sender:
        return
    senders, params = any_of("account_id", list(receipts_by_sender), "uuid")
    with bound_cursor() as cursor:
        cursor.execute(f"SELECT id, account_id, device_id FROM {Device._meta.db_table} WHERE {senders}", params)
        devices = [(pk, as_uuid(aci), device_id) for pk, aci, device_id in cursor.fetchall()]
    server_timestamp = now_ms()
    deliveries = []
    for pk, aci, device_id in devices:
        for recipient, acknowledging_device_id, client_timestamp in receipts_by_sender[aci]:
            guid = uuid4()
            deliveries.append(
                Delivery(
                    device_pk=pk,
                    aci=aci,
                    device_id=device_id,
                    guid=guid,
                    server_timestamp=server_timestamp,
                    urgent=False,
                    envelope=build_envelope(
                        type=SERVER_DELIVERY_RECEIPT,
                        guid=guid,
                        destination=ServiceId(aci),
                        content=b"",
                        client_timestamp=client_timestamp,
                        server_timestamp=server_timestamp,
                        urgent=False,
                        source=recipient,
                        source_device=acknowledging_device_id,
                    ),
                )
            )
    deliver_envelopes(deliveries)
    metrics.SENT_RECEIPT.inc(len(deliveries))


def reseal_queued(*, batch: int = 1000) -> tuple[int, int]:
    """Seal every queued row not under the current queue key again under it (a key rotation);
    returns (rows resealed, rows that do not open). Rows an ack holds meanwhile are skipped: it
    deletes them."""
    current = queue_keys().current
    resealed = unreadable = 0
    after_id = 0
    while True:
        with transaction.atomic():
            rows = QueuedMessage.objects.filter(id__gt=after_id).exclude(key_id=current.id).order_by("id")
            if connection.features.has_select_for_update_skip_locked:
                rows = rows.select_for_update(skip_locked=True)
            rows = list(rows.only("id", "device_id", "key_id", "envelope")[:batch])
            if not rows:
                return resealed, unreadable
            changed = []
            for row in rows:
                try:
                    envelope, story = row.open()
                except UnreadableEnvelope:
                    unreadable += 1
                    continue
                row.key_id, row.envelope = seal(envelope, story=story, device_pk=row.device_id)
                row.guid_tag = guid_tag(uuid.UUID(bytes=parse_envelope(envelope).server_guid), current)
                changed.append(row)
            QueuedMessage.objects.bulk_update(changed, ["key_id", "envelope", "guid_tag"])
            resealed += len(changed)
            after_id = rows[-1].id


def purge_expired_messages() -> int:
    """Delete undelivered messages older than the retention (MESSAGE_RETENTION_DAYS)."""
    deleted, _ = QueuedMessage.objects.filter(queued_hour__lt=retention_cutoff_hour()).delete()
    if deleted:
        logger.info("purged expired messages", extra={"count": deleted})
    return deleted
