"""OpenAPI descriptions of our authentication scheme, custom fields and error bodies (drf-spectacular).

`AutoSchema` (the project's DEFAULT_SCHEMA_CLASS) documents what every operation can answer
whatever its view declares, because one mapper (`signalserver.errors`) and the middleware produce it:
`X-Signal-Timestamp` on every response, the error body on every error, 400 (malformed JSON), 415 and
422 where a JSON body is read, 401 where credentials are read, 403 for a banned address. A view
declares the rest: its own statuses, and the bodies that differ from the generic ones.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer
from rest_framework import serializers

# Starts the description of every endpoint that is ours, not Signal's (docs/api.md, "What we add").
EXTENSION = "**signalserver extension.** "


class DeviceCredentialsScheme(OpenApiAuthenticationExtension):
    target_class = "signalserver.auth.DeviceAuthentication"
    name = "deviceCredentials"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "basic",
            "description": "Device credentials: username `{aci}.{deviceId}` (or `{aci}` for the primary), "
            "password chosen by the device at registration or linking. Wherever these are accepted, "
            "`Authorization: Bearer <access token>` from `POST /v1/auth/token` is too (signalserver extension).",
        }


class Base64FieldSchema(OpenApiSerializerFieldExtension):
    target_class = "signalserver.fields.Base64Field"

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        size = f"exactly {field.length}" if field.length else f"at most {field.max_bytes}" if field.max_bytes else "any"
        alphabet = "URL-safe" if field.url_safe else "standard"
        return {"type": "string", "format": "byte", "description": f"{alphabet} base64, {size} bytes"}


# ---- error bodies ---------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    """`{"code", "message"}`: the body of every error that has no structured one of its own."""

    code = serializers.IntegerField()
    message = serializers.CharField()


class ValidationErrorSerializer(serializers.Serializer):
    """`{"errors": [...]}`: a body that failed validation, one `"<field> <problem>"` per error."""

    errors = serializers.ListField(child=serializers.CharField())


class ChallengeSerializer(serializers.Serializer):
    """Body of 428: answer a challenge with `PUT /v1/challenge` (with `token`), then try again."""

    token = serializers.CharField()
    options = serializers.ListField(child=serializers.CharField(), help_text="`captcha`, `pushChallenge`")


# A 422 is either: a body that failed its serializer, or a value a service could not use.
UNPROCESSABLE_BODY = PolymorphicProxySerializer(
    component_name="Unprocessable",
    serializers=[ValidationErrorSerializer, ErrorSerializer],
    resource_type_field_name=None,
)

RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    description="Seconds until the limit lets the request through again; absent when waiting will not help",
    response=[428, 429],
)


def error(description: str) -> OpenApiResponse:
    """An error answered with `{"code", "message"}`."""
    return OpenApiResponse(ErrorSerializer, description=description)


def unprocessable(description: str) -> OpenApiResponse:
    """A 422: `{"errors": [...]}` from validation, or `{"code", "message"}` from a service."""
    return OpenApiResponse(UNPROCESSABLE_BODY, description=description)


def rate_limited(description: str) -> OpenApiResponse:
    """A 429 from a limiter (`Retry-After`: declare RETRY_AFTER among the parameters)."""
    return error(f"{description}; wait `Retry-After` seconds")


def challenge_required(description: str) -> OpenApiResponse:
    """A 428 with `{token, options}` (`Retry-After`: declare RETRY_AFTER among the parameters)."""
    return OpenApiResponse(ChallengeSerializer, description=description)


# ---- what every operation can answer -------------------------------------------------------

TIMESTAMP_HEADER = {
    "X-Signal-Timestamp": {
        "schema": {"type": "integer"},
        "required": True,
        "description": "Server time in ms (on every response)",
    }
}
UNAVAILABLE_RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "required": True,
        "description": "Seconds to wait before trying again",
    }
}
UNAVAILABLE = "A service the server needs (its database, Redis) cannot be reached; try again after `Retry-After`"
MALFORMED_JSON = "The body is not JSON"
UNAUTHORIZED = "Missing or wrong credentials"
BANNED = "The client's address is in a range the operator banned"
UNSUPPORTED_MEDIA_TYPE = "The body is not `application/json`"
INVALID_BODY = "The body failed validation"
JSON = "application/json"


class AutoSchema(SpectacularAutoSchema):
    def _get_request_body(self, direction="request"):
        # A DELETE that reads a body (removing two-factor authentication takes a code) declares it;
        # drf-spectacular documents the bodies of PUT, PATCH and POST only.
        if self.method == "DELETE" and self._declared_request() is not None:
            self.method = "POST"
            try:
                return super()._get_request_body(direction)
            finally:
                self.method = "DELETE"
        return super()._get_request_body(direction)

    def _declared_request(self):
        self._get_serializer = lambda: None  # what @extend_schema(request=...) says, no guessing
        try:
            return self.get_request_serializer()
        finally:
            del self._get_serializer

    def _get_response_for_code(self, serializer, status_code, media_types=None, direction="response"):
        if status_code >= "400" and isinstance(serializer, OpenApiResponse) and serializer.response is None:
            body = UNPROCESSABLE_BODY if status_code == "422" else ErrorSerializer
            serializer = OpenApiResponse(body, description=serializer.description, examples=serializer.examples)
        return super()._get_response_for_code(serializer, status_code, media_types, direction)

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        if JSON in operation.get("requestBody", {}).get("content", {}):
            self._add(responses, "400", error(MALFORMED_JSON))
            if self._parses_json():  # a view that reads the raw body takes it whatever its type
                self._add(responses, "415", error(UNSUPPORTED_MEDIA_TYPE))
            self._add(responses, "422", unprocessable(INVALID_BODY))
        if self.view.get_authenticators():
            self._add(responses, "401", error(UNAUTHORIZED), describe=False)  # views say who may call
        if not self.path.startswith("/health/"):
            self._add(responses, "403", error(BANNED))
        self._add(responses, "503", error(UNAVAILABLE))
        responses["503"]["headers"] = {**UNAVAILABLE_RETRY_AFTER, **responses["503"].get("headers", {})}
        for response in responses.values():
            response["headers"] = {**TIMESTAMP_HEADER, **response.get("headers", {})}
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _parses_json(self) -> bool:
        # Views that read the raw body (parser_classes = []) parse it as JSON whatever its
        # Content-Type (signalserver.tunnel.Call.json): never 415.
        return any(parser.media_type == JSON for parser in self.view.get_parsers())

    def _add(self, responses: dict, status: str, generic: OpenApiResponse, *, describe: bool = True) -> None:
        """Document that `status` can also be the generic error: as it is when the view does not
        declare it, and beside the view's own body when that is a different one."""
        documented = self._get_response_for_code(generic, status)
        declared = responses.get(status)
        if declared is None:
            responses[status] = documented
            return
        own = declared.get("content", {}).get(JSON, {}).get("schema")
        other = documented["content"][JSON]["schema"]
        if own is None or _covers(other, own):
            declared["content"] = documented["content"]
        elif not _covers(own, other):
            # anyOf, not oneOf: a loosely declared body (no required properties) matches both.
            alternatives = own["anyOf"] if "anyOf" in own else [own]
            declared["content"] = {JSON: {"schema": {"anyOf": [*alternatives, other]}}}
        if describe and generic.description not in declared["description"]:
            declared["description"] = "; or: ".join(filter(None, [declared["description"], generic.description]))


def _covers(schema: dict, other: dict) -> bool:
    """Whether every body `other` allows is one `schema` allows (as far as these bodies go)."""
    if schema == other or other in schema.get("anyOf", []):
        return True
    union = schema.get("$ref", "").endswith("/Unprocessable")
    return union and other.get("$ref", "").rsplit("/", 1)[-1] in ("Error", "ValidationError")
