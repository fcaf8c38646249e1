"""Wire helpers: Signal's base64 flavours and service identifiers."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from functools import lru_cache


def _pad(text: str) -> str:
    return text + "=" * (-len(text) % 4)


def b64decode(text: str) -> bytes:
    """Standard alphabet, padded or not. Raises ValueError on anything else."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    try:
        return base64.b64decode(_pad(text.strip()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid base64") from None


def b64decode_url(text: str) -> bytes:
    """URL-safe alphabet, padded or not. Raises ValueError on anything else."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    text = _pad(text.strip())
    if not all(c.isalnum() or c in "-_=" for c in text):
        raise ValueError("invalid base64")
    try:
        return base64.urlsafe_b64decode(text)
    except (binascii.Error, ValueError):
        raise ValueError("invalid base64") from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64encode_unpadded(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def b64encode_url(data: bytes, *, padded: bool) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if padded else text.rstrip("=")


@dataclass(frozen=True, slots=True)
class ServiceId:
    uuid: uuid.UUID
    is_pni: bool = False

    @classmethod
    def parse(cls, text: str) -> ServiceId:
        """A bare UUID is an ACI; a PNI needs the `PNI:` prefix; `ACI:` is not accepted."""
        if not isinstance(text, str):
            raise ValueError("invalid service id")
        return _parse_service_id(text)

    def __str__(self) -> str:
        return f"PNI:{self.uuid}" if self.is_pni else str(self.uuid)


@lru_cache(maxsize=4096)
def _parse_service_id(text: str) -> ServiceId:
    """Parsed once per recent text: every send names its destination (immutable results, shared)."""
    is_pni = text.startswith("PNI:")
    try:
        value = uuid.UUID(text[4:] if is_pni else text)
    except ValueError:
        raise ValueError("invalid service id") from None
    return ServiceId(value, is_pni)
