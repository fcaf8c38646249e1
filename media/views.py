"""`GET /v4/attachments/form/upload`: a thin view over media.services."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.views import UNAUTHORIZED
from media import services
from signalserver.schema import RETRY_AFTER, error, rate_limited

FORM = {
    "type": "object",
    "properties": {
        "cdn": {"type": "integer", "description": "3: a tus 1.0.0 resumable upload"},
        "key": {"type": "string", "description": "the object key: 15 random bytes, URL-safe base64"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "to send with every upload request"},
        "signedUploadLocation": {"type": "string", "description": "where the tus creation POST goes"},
    },
}


class UploadFormView(APIView):
    @extend_schema(
        tags=["media"],
        summary="A form to upload one encrypted attachment",
        description=(
            "The client encrypts the attachment, then uploads it with tus 1.0.0 (creation, "
            "creation-with-upload, PATCH at `Upload-Offset`, HEAD to resume, termination) to "
            "`signedUploadLocation`, sending `headers` with every request; the attachment is then "
            "at `<cdn 3 base>/attachments/<key>` for everyone who knows the key."
        ),
        parameters=[
            OpenApiParameter("uploadLength", OpenApiTypes.INT, OpenApiParameter.QUERY, description="bytes; at most the largest attachment"),
            RETRY_AFTER,
        ],
        responses={
            200: FORM,
            400: error("uploadLength is not a positive integer"),
            401: UNAUTHORIZED,
            413: error("uploadLength is larger than the largest attachment"),
            429: rate_limited("Over `attachmentCreate` or `attachmentCreateBytes`"),
        },
    )
    def get(self, request):
        length = services.parse_upload_length(request.query_params.get("uploadLength"))
        form = services.upload_form(aci=request.auth.account.aci, upload_length=length, base_url=request.build_absolute_uri("/"))
        return Response(form)
