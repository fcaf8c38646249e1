"""DRF fields for Signal's wire shapes: base64 flavours and case-insensitive enums."""

from rest_framework import serializers

from signalserver.wire import b64decode, b64decode_url, b64encode


def validated(serializer_class, data) -> dict:
    """`data` checked by the serializer (its ValidationError is a 422), as it validated it."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class Base64Field(serializers.Field):
    """Bytes carried as base64 (padded or not). `length`: exact size; `max_length`: upper bound."""

    default_error_messages = {
        "invalid": "must be base64",
        "length": "must be {length} bytes",
        "max_length": "must be at most {max_length} bytes",
        "empty": "must not be empty",
    }

    def __init__(self, *, length=None, max_length=None, url_safe=False, allow_empty=False, **kwargs):
        self.length, self.max_bytes, self.url_safe, self.allow_empty = length, max_length, url_safe, allow_empty
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        # Bound the work before decoding: 4 base64 characters per 3 bytes, plus padding slack.
        limit = self.length or self.max_bytes
        if limit is not None and len(data) > (limit + 2) // 3 * 4 + 4:
            self.fail("max_length", max_length=limit) if self.max_bytes else self.fail("length", length=limit)
        try:
            value = b64decode_url(data) if self.url_safe else b64decode(data)
        except ValueError:
            self.fail("invalid")
        if not value and not self.allow_empty:
            self.fail("empty")
        if self.length is not None and len(value) != self.length and not (self.allow_empty and not value):
            self.fail("length", length=self.length)
        if self.max_bytes is not None and len(value) > self.max_bytes:
            self.fail("max_length", max_length=self.max_bytes)
        return value

    def to_representation(self, value):
        return b64encode(bytes(value))


class CaseInsensitiveChoiceField(serializers.ChoiceField):
    """Signal's JSON layer matches enum names case-insensitively."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            for choice in self.choices:
                if choice.lower() == data.lower():
                    return choice
        self.fail("invalid_choice", input=data)
