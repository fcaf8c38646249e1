"""Request handlers of the messaging endpoints, shared by the DRF views and the WebSocket tunnel.

Each takes a `Call` (principal, headers, query, raw body) and returns (status, JSON body). Input is
checked with plain functions, not DRF serializers: a send is the hottest request we serve.
"""

from __future__ import annotations

import uuid

import orjson

from messaging.batches import submit_send
from messaging.certificates import issue_sender_certificate
from messaging.multi_recipient import MAX_BODY_BYTES, parse_multi_recipient
from messaging.reports import report_spam
from messaging.services import (
    ContentTooLarge,
    OutgoingMessage,
    SendRequest,
    acknowledge_guids,
    list_queued,
    send_message,
    send_multi_recipient_message,
)
from messaging.envelopes import envelope_destination, envelope_source, parse_envelope
from messaging.tasks import push_if_still_away_task
from push.services import request_push_later
from signalserver import metrics
from signalserver.auth import parse_access_key
from signalserver.errors import BadRequest, NotFound, Unauthorized, UnprocessableEntity
from signalserver.tunnel import Call
from signalserver.wire import ServiceId, b64decode, b64encode

MAX_MESSAGES_PER_SEND = 127  # one per device at most
MAX_REGISTRATION_ID = 0x3FFF
LIST_LIMIT = 100


def put_messages(call: Call, destination: str) -> tuple[int, dict]:
    """PUT /v1/messages/{destination}."""
    return 200, {"needsSync": send_message(_send_request(call, destination))}


async def put_messages_batched(call: Call, destination: str) -> tuple[int, dict]:
    """`put_messages` for the socket tunnel: the send joins the batch of the loop's sockets."""
    return 200, {"needsSync": await submit_send(_send_request(call, destination))}


def _send_request(call: Call, destination: str) -> SendRequest:
    """The send a request asks for, after the checks that need no database."""
    try:
        service_id = ServiceId.parse(destination)
    except ValueError:
        raise UnprocessableEntity("invalid destination") from None
    story = _query_bool(call, "story", default=False)
    access_key, group_send_token = _anonymous_access(call, story=story)
    data = _json_object(call.body)
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list) or not 0 < len(raw_messages) <= MAX_MESSAGES_PER_SEND:
        raise UnprocessableEntity("messages must be a list of 1 to 127 entries")
    return SendRequest(
        sender=call.principal,
        destination=service_id,
        messages=[_outgoing_message(entry) for entry in raw_messages],
        online=_bool(data, "online", default=False),
        urgent=_bool(data, "urgent", default=True),
        story=story,
        timestamp=_int(data, "timestamp", default=0),
        access_key=access_key,
        group_send_token=group_send_token,
    )


def put_multi_recipient_message(call: Call) -> tuple[int, dict]:
    """PUT /v1/messages/multi_recipient: one sealed payload for many recipients."""
    story = _query_bool(call, "story", default=False)
    access_key, group_send_token = _anonymous_access(call, story=story, uses_credentials=False)
    if len(call.body) > MAX_BODY_BYTES:
        raise ContentTooLarge()
    try:
        timestamp = int(call.query.get("ts", "0"))
    except ValueError:
        raise BadRequest("ts must be an integer") from None
    uuids404 = send_multi_recipient_message(
        message=parse_multi_recipient(call.body),
        access_key=access_key,
        group_send_token=group_send_token,
        timestamp=timestamp,
        online=_query_bool(call, "online", default=False),
        urgent=_query_bool(call, "urgent", default=True),
        story=story,
    )
    return 200, {"uuids404": uuids404}


def get_delivery_certificate(call: Call) -> tuple[int, dict]:
    """GET /v1/certificate/delivery: a sender certificate for the calling device."""
    if call.principal is None:
        raise Unauthorized()
    certificate = issue_sender_certificate(
        account=call.principal.account,
        device=call.principal.device,
        include_e164=_query_bool(call, "includeE164", default=True),
    )
    return 200, {"certificate": b64encode(certificate)}


def _anonymous_access(call: Call, *, story: bool, uses_credentials: bool = True) -> tuple[bytes | None, str | None]:
    """(access key, group send token) of an anonymous send after the mixed-authorization rules
    of Signal's API; `uses_credentials` is false for multi-recipient sends, which ignore device
    credentials. The service checks the token against the send's recipients."""
    header = call.headers.get("unidentified-access-key")
    token = call.headers.get("group-send-token")
    authenticated = uses_credentials and call.principal is not None
    if token is not None and (header is not None or authenticated or story):
        raise BadRequest("a group send token cannot be combined with other authorization or a story")
    if header is not None and authenticated:
        raise BadRequest("credentials and an access key cannot be combined")
    if token is not None:
        return None, token
    if header is None or story:
        return None, None  # stories need no authorization; a key sent with one is ignored
    key = parse_access_key(header)
    if key is None:
        raise Unauthorized()
    return key, None


def report_spam_message(call: Call, source: str, guid: str) -> tuple[int, None]:
    """POST /v1/messages/report/{source}/{messageGuid}: always 202, no oracle."""
    if call.principal is None:
        raise Unauthorized()
    token = None
    if call.body:
        data = _json_object(call.body)
        text = data.get("token")
        if text is not None and not isinstance(text, str):
            raise UnprocessableEntity("token must be base64")
        try:
            token = b64decode(text) if text else None
        except ValueError:
            raise UnprocessableEntity("token must be base64") from None
    report_spam(reporter_aci=call.principal.account.aci, source=source, message_guid=guid, token=token)
    return 202, None


def get_messages(call: Call) -> tuple[int, dict]:
    """GET /v1/messages: up to 100 queued messages, oldest first."""
    device = _device(call)
    stories = call.headers.get("x-signal-receive-stories", "").lower() == "true"
    rows = list_queued(device_pk=device.pk, limit=LIST_LIMIT, stories=stories)
    metrics.count_delivered_envelopes(envelope for _, envelope, _ in rows)
    more = len(rows) == LIST_LIMIT
    if more:
        # A full page: if the device stops fetching, a push in a minute reminds it.
        request_push_later(device_pk=device.pk, task=push_if_still_away_task)
    return 200, {"messages": [outgoing_message_entity(envelope) for _, envelope, _ in rows], "more": more}


def delete_message(call: Call, guid: str) -> tuple[int, None]:
    """DELETE /v1/messages/uuid/{guid}: acknowledge one message as a socket ack does."""
    device = _device(call)
    try:
        value = uuid.UUID(guid)
    except ValueError:
        raise UnprocessableEntity("invalid guid") from None
    if not acknowledge_guids(device=device, guids=[value]):
        raise NotFound()
    return 204, None


def outgoing_message_entity(data: bytes) -> dict:
    envelope = parse_envelope(data)
    source = envelope_source(envelope)
    destination = envelope_destination(envelope)
    return {
        "guid": envelope.server_guid_text,
        "type": envelope.type,
        "timestamp": envelope.client_timestamp,
        "sourceUuid": str(source) if source else None,
        "sourceDevice": envelope.source_device if source else 0,
        "destinationUuid": str(destination) if destination else None,
        "updatedPni": str(uuid.UUID(bytes=envelope.updated_pni)) if envelope.HasField("updated_pni") else None,
        "content": b64encode(envelope.content),
        "serverTimestamp": envelope.server_timestamp,
        "urgent": envelope.urgent,
        "story": envelope.story,
        "reportSpamToken": b64encode(envelope.report_spam_token) if envelope.HasField("report_spam_token") else None,
    }


def _device(call: Call):
    if call.principal is None:
        raise Unauthorized()
    return call.principal.device


def _json_object(body: bytes) -> dict:
    try:
        data = orjson.loads(body)  # a send's body is parsed on the event loop: the fast parser
    except orjson.JSONDecodeError:
        raise BadRequest("Malformed JSON") from None
    if not isinstance(data, dict):
        raise UnprocessableEntity("expected a JSON object")
    return data


def _outgoing_message(entry) -> OutgoingMessage:
    if not isinstance(entry, dict):
        raise UnprocessableEntity("messages[] must be objects")
    content = entry.get("content")
    if not isinstance(content, str):
        raise UnprocessableEntity("messages[].content must be base64")
    try:
        decoded = b64decode(content)
    except ValueError:
        raise UnprocessableEntity("messages[].content must be base64") from None
    registration_id = _int(entry, "destinationRegistrationId", default=None)
    if registration_id is None or not 0 <= registration_id <= MAX_REGISTRATION_ID:
        raise UnprocessableEntity("messages[].destinationRegistrationId out of range")
    device_id = _int(entry, "destinationDeviceId", default=None)
    message_type = _int(entry, "type", default=None)
    if device_id is None or message_type is None:
        raise UnprocessableEntity("messages[] need type and destinationDeviceId")
    return OutgoingMessage(device_id=device_id, registration_id=registration_id, type=message_type, content=decoded)


def _query_bool(call: Call, name: str, *, default: bool) -> bool:
    value = call.query.get(name)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise BadRequest(f"{name} must be true or false")
    return value.lower() == "true"


def _int(data: dict, name: str, *, default):
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnprocessableEntity(f"{name} must be an integer")
    return value


def _bool(data: dict, name: str, *, default: bool) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise UnprocessableEntity(f"{name} must be a boolean")
    return value
