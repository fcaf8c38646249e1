"""`/v1/accounts/blocks` (our extension): the service ids an account blocks (accounts.blocks.services)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.blocks import services as blocks
from accounts.views import NO_CONTENT, UNAUTHORIZED
from signalserver.errors import UnprocessableEntity
from signalserver.schema import error
from signalserver.wire import ServiceId

TAGS = ["blocks"]
DESCRIPTION = (
    "**signalserver extension.** The server enforces a block: identified messages from a blocked "
    "account are accepted and dropped (the sender cannot tell), and the blocked account cannot read "
    "this account's prekeys or profile with its credentials. Sealed-sender messages carry no sender, "
    "so the server cannot block them: the client rotates its unidentified access key "
    "(`PUT /v1/accounts/attributes`) when it blocks, and the blocked account's sealed sends then get 401."
)
SERVICE_ID = OpenApiParameter("service_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="ACI or PNI:<uuid>")


def _service_id(value: str) -> ServiceId:
    try:
        return ServiceId.parse(value)
    except ValueError:
        raise UnprocessableEntity("invalid service id") from None


class BlocksView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="The service ids this account blocks",
        description=DESCRIPTION,
        responses={200: {"type": "object", "properties": {"blocks": {"type": "array", "items": {"type": "string"}}}}, 401: UNAUTHORIZED},
    )
    def get(self, request):
        return Response({"blocks": blocks.blocked_service_ids(request.auth.account)})


class BlockView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Block a service id",
        description=DESCRIPTION,
        parameters=[SERVICE_ID],
        request=None,
        responses={204: NO_CONTENT, 401: UNAUTHORIZED, 413: error(f"More than {blocks.MAX_BLOCKS} blocks"), 422: error("Not a service id")},
    )
    def put(self, request, service_id):
        blocks.block(account=request.auth.account, target=_service_id(service_id))
        return Response(status=204)

    @extend_schema(
        tags=TAGS,
        summary="Unblock a service id (messages get through again at once)",
        parameters=[SERVICE_ID],
        responses={204: NO_CONTENT, 401: UNAUTHORIZED, 422: error("Not a service id")},
    )
    def delete(self, request, service_id):
        blocks.unblock(account=request.auth.account, target=_service_id(service_id))
        return Response(status=204)
