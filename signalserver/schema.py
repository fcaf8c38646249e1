"""OpenAPI descriptions of our authentication scheme and custom fields (drf-spectacular)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension

# Starts the description of every endpoint that is ours, not Signal's (spec "What we add").
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
