"""Phone numbers: parsed and normalised with libphonenumber."""

import phonenumbers

from signalserver.errors import NumberNotNormalized, UnprocessableEntity

MAX_NUMBER_LENGTH = 32


def normalize_number(text: str) -> str:
    """The E.164 form of `text`; 422 when it is not a valid number, 400 (Signal's body) when the
    number is valid but not already written in its normalised form."""
    if not isinstance(text, str) or not text.startswith("+") or len(text) > MAX_NUMBER_LENGTH:
        raise UnprocessableEntity("number is not a valid E.164 number")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise UnprocessableEntity("number is not a valid E.164 number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise UnprocessableEntity("number is not a valid E.164 number")
    normalized = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if normalized != text:
        raise NumberNotNormalized(text, normalized)
    return normalized
