"""Devices and linking: thin views over `accounts.devices.services`."""

from datetime import UTC, datetime, time

from asgiref.sync import sync_to_async
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.devices import services as devices
from accounts.models import Device
from accounts.registration.serializers import ApnTokenSerializer, GcmTokenSerializer
from accounts.serializers import DEVICE_NAME_MAX_BYTES, REGISTRATION_ID_MAX, CapabilitiesField
from keys.serializers import ECSignedPreKeySerializer, KEMSignedPreKeySerializer
from signalserver.auth import parse_basic_header
from signalserver.errors import BadRequest, RateLimited, Unauthorized, UnprocessableEntity, json_error
from signalserver.fields import Base64Field
from signalserver.schema import RETRY_AFTER, rate_limited
from signalserver.waiting import request_principal, wait_for_group_event
from signalserver.wire import b64decode, b64encode

NO_CONTENT = OpenApiResponse(description="Done")
UNAUTHORIZED = OpenApiResponse(description="Missing or wrong device credentials")
MAX_PROVISIONING_BODY_CHARS = 256 * 1024


class DeviceLimitSerializer(serializers.Serializer):
    """Body of 411: the account has the most devices allowed."""

    current = serializers.IntegerField()
    max = serializers.IntegerField()


DEVICE_LIMIT = OpenApiResponse(DeviceLimitSerializer, description="The account has the most devices allowed")


class DeviceInfoSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(allow_null=True, help_text="encrypted by the client, base64")
    lastSeen = serializers.IntegerField(help_text="ms, day granularity")
    created = serializers.IntegerField(help_text="ms, day granularity")
    registrationId = serializers.IntegerField()


class DeviceListSerializer(serializers.Serializer):
    devices = DeviceInfoSerializer(many=True)


def _day_ms(day) -> int:
    return int(datetime.combine(day, time.min, tzinfo=UTC).timestamp() * 1000) if day else 0


def device_info(device: Device) -> dict:
    # No createdAtCiphertext: it needs libsignal's HPKE sealing; clients fall back
    # to the plain `created`.
    return {
        "id": device.device_id,
        "name": b64encode(bytes(device.name)) if device.name else None,
        "lastSeen": _day_ms(device.last_seen),
        "created": _day_ms(device.created),
        "registrationId": device.registration_id,
    }


class DevicesView(APIView):
    @extend_schema(
        tags=["devices"],
        summary="The account's devices",
        responses={200: DeviceListSerializer, 401: UNAUTHORIZED},
    )
    def get(self, request):
        rows = Device.objects.filter(account=request.auth.account).order_by("device_id")
        return Response({"devices": [device_info(device) for device in rows]})


class DeviceView(APIView):
    @extend_schema(
        tags=["devices"],
        summary="Remove a linked device (the primary removes any, a linked device itself)",
        responses={
            204: NO_CONTENT,
            401: OpenApiResponse(description="A linked device tried to remove another device"),
            403: OpenApiResponse(description="The primary cannot be removed"),
            404: OpenApiResponse(description="The device id is not a number from 0 (no such route)"),
        },
    )
    def delete(self, request, device_id: int):
        devices.remove_device(account=request.auth.account, caller=request.auth.device, device_id=device_id)
        return Response(status=204)


class LinkTokenSerializer(serializers.Serializer):
    verificationCode = serializers.CharField()
    tokenIdentifier = serializers.CharField()


class ProvisioningCodeView(APIView):
    @extend_schema(
        tags=["devices"],
        summary="A single-use token (10 minutes) for linking a new device; primary only",
        parameters=[RETRY_AFTER],
        responses={
            200: LinkTokenSerializer,
            401: OpenApiResponse(description="Not the primary device"),
            411: DEVICE_LIMIT,
            429: rate_limited("Too many tokens for this account (`allocateDevice`)"),
        },
    )
    def get(self, request):
        token = devices.issue_link_token(account=request.auth.account, device=request.auth.device)
        return Response({"verificationCode": token.verification_code, "tokenIdentifier": token.token_identifier})


class LinkDeviceAttributesSerializer(serializers.Serializer):
    fetchesMessages = serializers.BooleanField(required=False, default=False)
    registrationId = serializers.IntegerField(min_value=1, max_value=REGISTRATION_ID_MAX)
    pniRegistrationId = serializers.IntegerField(
        min_value=1, max_value=REGISTRATION_ID_MAX, required=False, allow_null=True, default=None
    )
    name = Base64Field(max_length=DEVICE_NAME_MAX_BYTES, required=False, allow_null=True, default=None)
    capabilities = CapabilitiesField()


class LinkDeviceSerializer(serializers.Serializer):
    verificationCode = serializers.CharField(max_length=512, source="verification_code")
    accountAttributes = LinkDeviceAttributesSerializer(source="attributes")
    aciSignedPreKey = ECSignedPreKeySerializer(source="aci_signed_prekey")
    pniSignedPreKey = ECSignedPreKeySerializer(source="pni_signed_prekey", required=False, allow_null=True, default=None)
    aciPqLastResortPreKey = KEMSignedPreKeySerializer(source="aci_pq_last_resort_prekey")
    pniPqLastResortPreKey = KEMSignedPreKeySerializer(
        source="pni_pq_last_resort_prekey", required=False, allow_null=True, default=None
    )
    apnToken = ApnTokenSerializer(source="apn_token", required=False, allow_null=True, default=None)
    gcmToken = GcmTokenSerializer(source="gcm_token", required=False, allow_null=True, default=None)

    def validate(self, attrs):
        tokens = [token for token in (attrs["apn_token"], attrs["gcm_token"]) if token is not None]
        if attrs["attributes"]["fetchesMessages"] and tokens:
            raise serializers.ValidationError("no push token may be given when fetchesMessages is true")
        if len(tokens) > 1:
            raise serializers.ValidationError("at most one of apnToken and gcmToken")
        return attrs


class LinkDeviceView(APIView):
    """Not device-authenticated: the Basic header's password becomes the new device's."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        tags=["devices"],
        summary="Link a new device with a token from the primary",
        description="`Authorization: Basic base64(<anything>:<new device password>)`.",
        request=LinkDeviceSerializer,
        parameters=[RETRY_AFTER],
        responses={
            200: {"type": "object", "properties": {"uuid": {"type": "string"}, "pni": {"type": "string", "nullable": True}, "deviceId": {"type": "integer"}}},
            401: OpenApiResponse(description="No Basic header"),
            403: OpenApiResponse(description="Token invalid, expired or already used"),
            409: OpenApiResponse(description="A required capability is missing or would be downgraded"),
            411: DEVICE_LIMIT,
            422: OpenApiResponse(description="Validation failed or a signature does not verify"),
            429: rate_limited("Too many links to this account (`verifyDevice`)"),
        },
    )
    def put(self, request):
        credentials = parse_basic_header(request.META.get("HTTP_AUTHORIZATION"))
        if credentials is None:
            raise Unauthorized()
        body = LinkDeviceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        device = devices.link_device(password=credentials[1], **body.validated_data)
        account = device.account
        return Response(
            {"uuid": str(account.aci), "pni": str(account.pni) if account.pni else None, "deviceId": device.device_id}
        )


class ProvisioningMessageSerializer(serializers.Serializer):
    body = serializers.CharField(allow_blank=True, trim_whitespace=False)


class ProvisioningView(APIView):
    @extend_schema(
        tags=["devices"],
        summary="Send an encrypted ProvisionEnvelope to a provisioning socket's address",
        request=ProvisioningMessageSerializer,
        responses={
            204: NO_CONTENT,
            400: OpenApiResponse(description="Body over 256 KiB of base64"),
            401: UNAUTHORIZED,
            404: OpenApiResponse(description="No socket is listening on that address"),
            422: OpenApiResponse(description="Empty or undecodable body"),
            429: rate_limited("Too many messages from this account (`messages`)"),
        },
        parameters=[
            OpenApiParameter("destination", OpenApiTypes.STR, OpenApiParameter.PATH, description="provisioning address"),
            RETRY_AFTER,
        ],
    )
    def put(self, request, destination: str):
        text = ProvisioningMessageSerializer(data=request.data)
        text.is_valid(raise_exception=True)
        body = text.validated_data["body"]
        if len(body) > MAX_PROVISIONING_BODY_CHARS:
            raise BadRequest("provisioning message too large")
        try:
            envelope = b64decode("".join(body.split()))  # MIME base64 may carry line breaks
        except ValueError:
            raise UnprocessableEntity("body must be base64") from None
        if not envelope:
            raise UnprocessableEntity("body must not be empty")
        devices.send_provisioning_message(account=request.auth.account, address=destination, envelope=envelope)
        return Response(status=204)


MAX_LINK_WAIT_SECONDS = 3600


def _link_wait_parameters(identifier: str, timeout: str | None) -> int:
    """The wait in seconds; BadRequest for an identifier or timeout out of range."""
    if not 32 <= len(identifier) <= 64:
        raise BadRequest("tokenIdentifier must be 32 to 64 characters")
    if timeout is None:
        return 30
    if not timeout.isdigit() or not 1 <= int(timeout) <= MAX_LINK_WAIT_SECONDS:
        raise BadRequest("timeout must be 1 to 3600 seconds")
    return int(timeout)


class LinkedDeviceView(APIView):
    @extend_schema(
        tags=["devices"],
        summary="Wait until a device has been linked with a token from provisioning/code",
        parameters=[
            OpenApiParameter("timeout", OpenApiTypes.INT, OpenApiParameter.QUERY, description="seconds, 1..3600 (default 30)"),
            RETRY_AFTER,
        ],
        responses={
            200: DeviceInfoSerializer,
            204: OpenApiResponse(description="Nothing linked within the timeout: call again"),
            400: OpenApiResponse(description="Identifier or timeout out of range"),
            401: UNAUTHORIZED,
            429: rate_limited("Too many waits for this account (`waitForLinkedDevice`)"),
        },
    )
    def get(self, request, identifier: str):
        _link_wait_parameters(identifier, request.query_params.get("timeout"))
        device = devices.get_linked_device(account=request.auth.account, identifier=identifier)
        return Response(device_info(device)) if device else Response(status=204)


_linked_device_view = LinkedDeviceView.as_view()


async def wait_for_linked_device_endpoint(request, identifier: str):
    """The wait happens here on the event loop; the DRF view above then answers."""
    principal = await sync_to_async(request_principal)(request)
    try:
        seconds = _link_wait_parameters(identifier, request.GET.get("timeout"))
    except BadRequest:
        principal = None  # the view answers 400
    if principal is not None:
        try:
            await sync_to_async(devices.check_link_wait_rate)(account=principal.account)
        except RateLimited as limited:
            return json_error(limited)
        await wait_for_group_event(
            devices.linked_device_group(identifier),
            lambda: devices.get_linked_device(account=principal.account, identifier=identifier) is not None,
            seconds,
        )
    return await sync_to_async(_linked_device_view)(request, identifier=identifier)


wait_for_linked_device_endpoint.cls = LinkedDeviceView  # documented as the DRF view
wait_for_linked_device_endpoint.initkwargs = {}
