"""Messaging over HTTP: thin DRF views around the handlers of `messaging.api` (also served over the
WebSocket tunnel), and the long-polling entry of GET /v1/messages."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from accounts.services import device_group
from messaging import api
from messaging.services import has_queued
from signalserver.schema import RETRY_AFTER, challenge_required, error, rate_limited
from signalserver.tunnel import Call, render
from signalserver.waiting import request_principal, wait_for_group_event

MAX_WAIT_SECONDS = 30
UNAUTHORIZED = OpenApiResponse(description="Missing or wrong credentials")
GROUP_SEND_TOKEN = OpenApiParameter(
    "Group-Send-Token",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Our extension in Signal's header: base64 of version (0) ‖ expiration (8 bytes, big-endian "
        "epoch seconds) ‖ the XOR of the recipients' group send endorsements, which a full member "
        "gets when it reads its group. Authorises a sealed send to exactly those recipients "
        "without telling the server who sends; not with credentials, an access key or a story (400); "
        "expired, forged, malformed or for other recipients: 401."
    ),
)

_MESSAGE_ENTRY = {
    "type": "object",
    "required": ["type", "destinationDeviceId", "destinationRegistrationId", "content"],
    "properties": {
        "type": {"type": "integer", "enum": [1, 3, 6, 8], "description": "Envelope type"},
        "destinationDeviceId": {"type": "integer", "minimum": 1, "maximum": 127},
        "destinationRegistrationId": {"type": "integer", "minimum": 0, "maximum": 16383},
        "content": {"type": "string", "format": "byte", "description": "ciphertext, at most 96 KiB"},
    },
}
INCOMING_MESSAGE_LIST = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "messages": {"type": "array", "items": _MESSAGE_ENTRY, "minItems": 1, "maxItems": 127},
        "online": {"type": "boolean", "default": False, "description": "only to connected devices, never stored"},
        "urgent": {"type": "boolean", "default": True},
        "timestamp": {"type": "integer", "description": "sender timestamp (ms); 0 means server time"},
    },
}
OUTGOING_MESSAGE_ENTITY = {
    "type": "object",
    "properties": {
        name: {"type": kind}
        for name, kind in (
            ("guid", "string"),
            ("type", "integer"),
            ("timestamp", "integer"),
            ("sourceUuid", "string"),
            ("sourceDevice", "integer"),
            ("destinationUuid", "string"),
            ("updatedPni", "string"),
            ("content", "string"),
            ("serverTimestamp", "integer"),
            ("urgent", "boolean"),
            ("story", "boolean"),
            ("reportSpamToken", "string"),
        )
    },
}

_DEVICE_IDS = {"type": "array", "items": {"type": "integer"}}
MISMATCHED_DEVICES = {
    "type": "object",
    "required": ["missingDevices", "extraDevices"],
    "properties": {"missingDevices": _DEVICE_IDS, "extraDevices": _DEVICE_IDS},
}
STALE_DEVICES = {"type": "object", "required": ["staleDevices"], "properties": {"staleDevices": _DEVICE_IDS}}


def _per_recipient(devices: dict) -> dict:
    """A multi-recipient 409/410 body: one entry per recipient whose devices do not match."""
    entry = {"type": "object", "required": ["uuid", "devices"], "properties": {"uuid": {"type": "string"}, "devices": devices}}
    return {"type": "array", "items": entry}



class SendMessageView(APIView):
    permission_classes = [AllowAny]  # stories and sealed-sender sends need no credentials
    parser_classes: list = []  # the handler parses the raw body itself

    @extend_schema(
        tags=["messaging"],
        summary="Send a message to every device of one account",
        parameters=[
            OpenApiParameter("destination", OpenApiTypes.STR, OpenApiParameter.PATH, description="ACI or PNI:<uuid>"),
            OpenApiParameter("story", OpenApiTypes.BOOL, OpenApiParameter.QUERY),
            OpenApiParameter("Unidentified-Access-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, description="sealed sender, instead of credentials"),
            GROUP_SEND_TOKEN,
            RETRY_AFTER,
        ],
        request={"application/json": INCOMING_MESSAGE_LIST},
        responses={
            200: {"type": "object", "properties": {"needsSync": {"type": "boolean"}}},
            400: OpenApiResponse(description="Malformed JSON, mixed authorization, or a sealed message of another type"),
            401: UNAUTHORIZED,
            403: OpenApiResponse(description="A sync message addressed to the caller's PNI"),
            404: OpenApiResponse(description="Unknown destination (with credentials or a group send token)"),
            409: OpenApiResponse(MISMATCHED_DEVICES, description="The messages do not address exactly the destination's devices"),
            410: OpenApiResponse(STALE_DEVICES, description="Some addressed devices have a new registration id"),
            413: OpenApiResponse(description="A content is larger than 96 KiB"),
            422: OpenApiResponse(description="Invalid body or destination"),
            428: challenge_required("The sender's `messages` limit is reached and a challenge lifts it"),
            429: rate_limited("Too many messages to this account (`messages`, `stories`, `inboundMessageBytes`)"),
        },
    )
    def put(self, request, destination):
        return render(api.put_messages(Call.from_drf(request), destination))


class MessagesView(APIView):
    @extend_schema(
        tags=["messaging"],
        summary="Fetch queued messages (legacy REST retrieval), optionally long polling",
        description=(
            "Up to 100 queued messages, oldest first. **signalserver extension:** `wait=N` "
            "(0 < N <= 30) holds the request until a message is queued or N seconds have passed, "
            "for clients that cannot keep a WebSocket open."
        ),
        parameters=[
            OpenApiParameter("wait", OpenApiTypes.INT, OpenApiParameter.QUERY, description="seconds, 1..30"),
            OpenApiParameter("X-Signal-Receive-Stories", OpenApiTypes.STR, OpenApiParameter.HEADER),
        ],
        responses={
            200: {
                "type": "object",
                "properties": {"messages": {"type": "array", "items": OUTGOING_MESSAGE_ENTITY}, "more": {"type": "boolean"}},
            },
            401: UNAUTHORIZED,
            422: OpenApiResponse(description="`wait` out of range"),
        },
    )
    def get(self, request):
        return render(api.get_messages(Call.from_drf(request)))


class DeleteMessageView(APIView):
    @extend_schema(
        tags=["messaging"],
        summary="Acknowledge (delete) one queued message",
        responses={
            204: OpenApiResponse(description="Deleted"),
            401: UNAUTHORIZED,
            404: OpenApiResponse(description="No such message"),
            422: OpenApiResponse(description="Not a message guid"),
        },
    )
    def delete(self, request, guid):
        return render(api.delete_message(Call.from_drf(request), guid))


class MultiRecipientMessageView(APIView):
    authentication_classes: list = []  # device credentials are not used
    permission_classes = [AllowAny]
    parser_classes: list = []

    @extend_schema(
        tags=["messaging"],
        summary="Send one sealed-sender payload to many recipients",
        parameters=[
            OpenApiParameter("ts", OpenApiTypes.INT, OpenApiParameter.QUERY, description="sender timestamp (ms)"),
            OpenApiParameter("online", OpenApiTypes.BOOL, OpenApiParameter.QUERY),
            OpenApiParameter("urgent", OpenApiTypes.BOOL, OpenApiParameter.QUERY),
            OpenApiParameter("story", OpenApiTypes.BOOL, OpenApiParameter.QUERY),
            OpenApiParameter("Unidentified-Access-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, description="XOR of the recipients' keys"),
            GROUP_SEND_TOKEN,
            RETRY_AFTER,
        ],
        request={"application/vnd.signal-messenger.mrm": {"type": "string", "format": "binary"}},
        responses={
            200: OpenApiResponse(
                {"type": "object", "properties": {"uuids404": {"type": "array", "items": {"type": "string"}}}},
                description="Queued; `uuids404`: recipients without an account, skipped (group send token only)",
            ),
            400: OpenApiResponse(description="Malformed payload or parameters"),
            401: UNAUTHORIZED,
            404: OpenApiResponse(description="A recipient does not exist (access key only)"),
            409: OpenApiResponse(_per_recipient(MISMATCHED_DEVICES), description="Some recipients' devices are not addressed exactly"),
            410: OpenApiResponse(_per_recipient(STALE_DEVICES), description="Some addressed devices have a new registration id"),
            413: OpenApiResponse(description="Payload too large"),
            429: rate_limited("A story to an account over its `stories` limit"),
        },
    )
    def put(self, request):
        return render(api.put_multi_recipient_message(Call.from_drf(request)))


class DeliveryCertificateView(APIView):
    @extend_schema(
        tags=["messaging"],
        summary="A sealed-sender certificate for this device (valid 24 hours)",
        parameters=[OpenApiParameter("includeE164", OpenApiTypes.BOOL, OpenApiParameter.QUERY, description="default true")],
        responses={
            200: {"type": "object", "properties": {"certificate": {"type": "string", "format": "byte"}}},
            400: OpenApiResponse(description="includeE164 on an account without a number"),
            401: UNAUTHORIZED,
            503: OpenApiResponse(description="No server certificate configured"),
        },
    )
    def get(self, request):
        return render(api.get_delivery_certificate(Call.from_drf(request)))


class ReportSpamView(APIView):
    parser_classes: list = []

    @extend_schema(
        tags=["messaging"],
        summary="Report a received message as spam",
        description="Always 202. The report counts only when `token` is the envelope's `reportSpamToken`.",
        request={"application/json": {"type": "object", "properties": {"token": {"type": "string", "format": "byte"}}}},
        responses={
            202: OpenApiResponse(description="Accepted"),
            400: error("The body is not JSON"),
            401: UNAUTHORIZED,
            422: OpenApiResponse(description="Not a JSON object, or a malformed token"),
        },
    )
    def post(self, request, source, guid):
        return render(api.report_spam_message(Call.from_drf(request), source, guid))


_messages_view = MessagesView.as_view()


async def messages_endpoint(request):
    """GET /v1/messages. A long poll waits here, on the event loop, before the DRF view runs:
    sync views share one thread under ASGI, so they must never block."""
    wait = request.GET.get("wait")
    if request.method == "GET" and wait is not None:
        if not wait.isdigit() or not 0 < int(wait) <= MAX_WAIT_SECONDS:
            return JsonResponse({"code": 422, "message": "wait must be 1 to 30 seconds"}, status=422)
        principal = await sync_to_async(request_principal)(request)
        if principal is not None:
            await wait_for_messages(principal, int(wait))
    return await sync_to_async(_messages_view)(request)


# drf-spectacular documents the wrapped DRF view.
messages_endpoint.cls = MessagesView
messages_endpoint.initkwargs = {}


async def wait_for_messages(principal, seconds: int) -> None:
    """Return once the device has a queued message, or after `seconds`."""
    await wait_for_group_event(
        device_group(principal.account.aci, principal.device.device_id),
        lambda: has_queued(device_pk=principal.device.pk),
        seconds,
    )
