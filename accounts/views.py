"""Account endpoints: thin views over accounts.services."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.data_report import data_report
from accounts.serializers import (
    DEVICE_NAME_MAX_BYTES,
    AccountAttributesSerializer,
    AccountIdentitySerializer,
    CapabilitiesField,
    account_identity,
)
from signalserver.auth import carries_credentials
from signalserver.errors import BadRequest, NotFound, Unauthorized, UnprocessableEntity
from signalserver.fields import Base64Field, validated
from signalserver.schema import RETRY_AFTER, rate_limited
from signalserver.tunnel import Call
from signalserver.wire import ServiceId

NO_CONTENT = OpenApiResponse(description="Done")
UNAUTHORIZED = OpenApiResponse(description="Missing or wrong device credentials")
VALIDATION = OpenApiResponse(description="The body failed validation")


def whoami(call: Call) -> tuple[int, dict]:
    """`GET /v1/accounts/whoami`, over HTTP (WhoAmIView) and as a hot route over sockets."""
    if call.principal is None:
        raise Unauthorized()
    account = call.principal.account
    return 200, account_identity(account, storage_capable=selectors.any_device_has(account, "storage"))


class WhoAmIView(APIView):
    @extend_schema(tags=["accounts"], responses={200: AccountIdentitySerializer, 401: UNAUTHORIZED})
    def get(self, request):
        status, body = whoami(Call.from_drf(request))
        return Response(body, status=status)


class AccountAttributesView(APIView):
    @extend_schema(
        tags=["accounts"],
        request=AccountAttributesSerializer,
        responses={204: NO_CONTENT, 400: OpenApiResponse(description="Discoverable without a number"), 401: UNAUTHORIZED, 422: VALIDATION},
        summary="Replace the account's and this device's attributes",
    )
    def put(self, request):
        services.set_account_attributes(
            account=request.auth.account,
            device=request.auth.device,
            attributes=validated(AccountAttributesSerializer, request.data),
            user_agent=request.headers.get("X-Signal-Agent", ""),
        )
        return Response(status=204)


class DeleteAccountView(APIView):
    @extend_schema(tags=["accounts"], responses={204: NO_CONTENT, 401: UNAUTHORIZED}, summary="Delete the account")
    def delete(self, request):
        services.delete_account(account=request.auth.account)
        return Response(status=204)


class RegistrationLockSerializer(serializers.Serializer):
    registrationLock = serializers.CharField(min_length=64, max_length=64)


class RegistrationLockView(APIView):
    @extend_schema(
        tags=["accounts"],
        request=RegistrationLockSerializer,
        responses={204: NO_CONTENT, 400: OpenApiResponse(description="Account has no number"), 401: UNAUTHORIZED, 422: VALIDATION},
    )
    def put(self, request):
        lock = validated(RegistrationLockSerializer, request.data)["registrationLock"]
        if request.auth.account.number is None:
            raise BadRequest("registration lock requires a phone number")
        services.set_registration_lock(account=request.auth.account, lock=lock)
        return Response(status=204)

    @extend_schema(tags=["accounts"], responses={204: NO_CONTENT, 401: UNAUTHORIZED})
    def delete(self, request):
        services.set_registration_lock(account=request.auth.account, lock=None)
        return Response(status=204)


class DeviceNameSerializer(serializers.Serializer):
    deviceName = Base64Field(max_length=DEVICE_NAME_MAX_BYTES)


class DeviceNameView(APIView):
    @extend_schema(
        tags=["accounts"],
        summary="Set a device's encrypted name",
        parameters=[OpenApiParameter("deviceId", OpenApiTypes.INT, OpenApiParameter.QUERY, description="default: the calling device")],
        request=DeviceNameSerializer,
        responses={
            204: NO_CONTENT,
            401: UNAUTHORIZED,
            403: OpenApiResponse(description="A linked device naming another device"),
            404: OpenApiResponse(description="No such device"),
            422: VALIDATION,
        },
    )
    def put(self, request):
        name = validated(DeviceNameSerializer, request.data)["deviceName"]
        device_id = request.query_params.get("deviceId")
        if device_id is not None and not (device_id.isascii() and device_id.isdigit() and len(device_id) < 6):
            raise UnprocessableEntity("deviceId must be a device id")
        services.set_device_name(
            account=request.auth.account, caller=request.auth.device, device_id=int(device_id) if device_id else None, name=name
        )
        return Response(status=204)


class DeviceCapabilitiesView(APIView):
    @extend_schema(
        tags=["accounts"],
        summary="Replace this device's capabilities",
        request={"application/json": {"type": "object", "additionalProperties": {"type": "boolean"}}},
        responses={204: NO_CONTENT, 401: UNAUTHORIZED, 422: VALIDATION},
    )
    def put(self, request):
        field = CapabilitiesField()
        try:
            capabilities = field.to_internal_value(request.data)
        except serializers.ValidationError as error:
            raise serializers.ValidationError({"capabilities": error.detail}) from None
        services.set_device_capabilities(device=request.auth.device, capabilities=capabilities)
        return Response(status=204)


class DiscoverabilitySerializer(serializers.Serializer):
    discoverableByPhoneNumber = serializers.BooleanField()


class DiscoverabilityView(APIView):
    @extend_schema(
        tags=["accounts"],
        summary="Whether the account can be found by its phone number",
        request=DiscoverabilitySerializer,
        responses={204: NO_CONTENT, 400: OpenApiResponse(description="Discoverable without a number"), 401: UNAUTHORIZED, 422: VALIDATION},
    )
    def put(self, request):
        discoverable = validated(DiscoverabilitySerializer, request.data)["discoverableByPhoneNumber"]
        services.set_phone_number_discoverability(account=request.auth.account, discoverable=discoverable)
        return Response(status=204)


class DataReportView(APIView):
    @extend_schema(
        tags=["accounts"],
        summary="Everything the server holds about this account",
        description="For the account itself (data portability): its account and device records, and counts of its keys, username hashes, profile versions, blocks and queued messages (ciphertext the server cannot read); and `groups`, the account's place in each group that names its ACI or PNI (`groupId`, `serviceId`, `status`: member, pending, requesting or banned; a member's `role` and `joinedAtVersion`), never a group's content or other members.",
        responses={
            200: {"type": "object", "properties": {"reportId": {"type": "string"}, "reportTimestamp": {"type": "string"}, "data": {"type": "object"}, "text": {"type": "string"}}},
            401: UNAUTHORIZED,
        },
    )
    def get(self, request):
        return Response(data_report(request.auth.account))


class AccountExistsView(APIView):
    """Unauthenticated on purpose: an authenticated caller gets 400. Clients call it
    with HEAD, which Django routes to `get` (documented as GET: OpenAPI tools skip HEAD)."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        tags=["accounts"],
        parameters=[
            OpenApiParameter("service_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="ACI or PNI:<uuid>"),
            RETRY_AFTER,
        ],
        responses={
            200: OpenApiResponse(description="The account exists"),
            400: OpenApiResponse(description="Called with credentials"),
            404: OpenApiResponse(description="No such account"),
            422: OpenApiResponse(description="Not a service id"),
            429: rate_limited("Too many lookups from this address (`checkAccountExistence`)"),
        },
        summary="Does an account exist (clients use HEAD)",
    )
    def get(self, request, service_id):
        if carries_credentials(request._request):
            raise BadRequest("must not be authenticated")
        try:
            parsed = ServiceId.parse(service_id)
        except ValueError:
            raise UnprocessableEntity("invalid service id") from None
        if not services.check_account_existence(parsed, client_ip=request.META.get("REMOTE_ADDR")):
            raise NotFound()
        return Response(status=200)
