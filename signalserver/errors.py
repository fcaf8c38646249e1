"""Domain errors and the one mapper that turns them (and DRF's own errors) into responses.

Services raise `DomainError` subclasses carrying their status, body and headers; the DRF exception
handler below and the WebSocket request dispatcher both go through `error_response`, so an error
looks the same on every transport.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
import redis.exceptions
from django.core.exceptions import PermissionDenied
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger(__name__)

# Retry-After (seconds) when PostgreSQL or Redis cannot be reached: clients come back soon after.
UNAVAILABLE_RETRY_AFTER_SECONDS = 5
# An outage is logged once, then at most once per this many seconds (a line per request would
# flood the log while every request fails the same way).
UNAVAILABLE_LOG_INTERVAL_SECONDS = 10.0

# Connection refused or lost, a pool checkout or a statement that timed out (psycopg_pool's
# PoolTimeout is a psycopg OperationalError; Django wraps both in its own).
DATABASE_UNAVAILABLE = (DatabaseOperationalError, DatabaseInterfaceError, psycopg.OperationalError, psycopg.InterfaceError)
REDIS_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class DomainError(Exception):
    """An error the client is told about: status code, JSON body (or None) and headers."""

    status = 400
    message = "Bad request"

    def __init__(self, message: str | None = None, *, body: Any = None, headers: dict | None = None):
        super().__init__(message or self.message)
        self._body = body
        self.headers = headers or {}

    def body(self) -> Any:
        if self._body is not None:
            return self._body
        return {"code": self.status, "message": str(self)}


class BadRequest(DomainError):
    status = 400


class Unauthorized(DomainError):
    status = 401
    message = "Unauthorized"


class Forbidden(DomainError):
    status = 403
    message = "Forbidden"


class NotFound(DomainError):
    status = 404
    message = "Not found"


class Conflict(DomainError):
    status = 409
    message = "Conflict"


class UnprocessableEntity(DomainError):
    status = 422
    message = "Unprocessable entity"


class InvalidSignature(UnprocessableEntity):
    message = "Invalid signature"


class RateLimited(DomainError):
    status = 429
    message = "Rate limit exceeded"

    def __init__(self, retry_after: int | None = None, *, body: Any = None, limiter: str | None = None):
        headers = {"Retry-After": str(max(0, int(retry_after)))} if retry_after is not None else {}
        super().__init__(body=body, headers=headers)
        self.retry_after = retry_after
        self.limiter = limiter  # the named limiter that refused, when one did


class ChallengeRequired(DomainError):
    """A limit that a challenge lifts: prove to be human or to hold the primary device
    with `PUT /v1/challenge`, then try again. `options`: the kinds currently allowed."""

    status = 428
    message = "Challenge required"

    def __init__(self, token: str, options: list[str], retry_after: int | None = None):
        headers = {"Retry-After": str(max(0, int(retry_after)))} if retry_after is not None else {}
        super().__init__(body={"token": token, "options": options}, headers=headers)
        self.options = options


class ServiceUnavailable(DomainError):
    """A dependency we need to answer (e.g. the captcha provider) cannot be reached."""

    status = 503
    message = "Service unavailable"

    def __init__(self, message: str | None = None, *, body: Any = None, headers: dict | None = None):
        headers = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS), **(headers or {})}
        super().__init__(message, body=body, headers=headers)


class TransportNotAllowed(DomainError):
    """Verification: the code cannot be sent over this transport (yet); try another."""

    status = 418
    message = "Transport not allowed"


class SenderRejected(DomainError):
    """Verification: the SMS/voice provider refused to deliver the code (status 440).

    `reason` is one of SENDER_REASONS; a permanent failure means retrying will not help."""

    status = 440
    message = "Verification code delivery failed"
    PROVIDER_UNAVAILABLE = "providerUnavailable"
    PROVIDER_REJECTED = "providerRejected"
    ILLEGAL_ARGUMENT = "illegalArgument"
    SENDER_REASONS = (PROVIDER_UNAVAILABLE, PROVIDER_REJECTED, ILLEGAL_ARGUMENT)

    def __init__(self, reason: str, *, permanent: bool):
        super().__init__(body={"reason": reason, "permanentFailure": permanent})
        self.reason, self.permanent = reason, permanent


class NumberNotNormalized(DomainError):
    """A number that parses but is not in its E.164 form."""

    status = 400

    def __init__(self, original: str, normalized: str):
        super().__init__(body={"originalNumber": original, "normalizedNumber": normalized})


class DeviceTransferAvailable(Conflict):
    """Registration: the number's primary can hand its data over; the client asks the user."""

    message = "Device transfer available"


class RegistrationLockRequired(DomainError):
    """Registration: the number's account has a registration lock in force. Without
    Secure Value Recovery the client cannot recover the lock, so `svr2Credentials` is null."""

    status = 423
    message = "Registration lock required"

    def __init__(self, time_remaining_ms: int):
        super().__init__(body={"timeRemaining": max(0, int(time_remaining_ms)), "svr2Credentials": None})
        self.time_remaining_ms = time_remaining_ms


class TotpRequired(DomainError):
    """Registration: the number's account has two-factor authentication; the request must carry a
    valid `totp` code (a current one-time password or a backup code; docs/api.md, "What we add")."""

    status = 441
    message = "TOTP code required"


class MissingCapability(DomainError):
    """Registration or linking without a capability every new device must have."""

    status = 499
    message = "Missing required capability"


def validation_messages(detail: Any, prefix: str = "") -> list[str]:
    """Flatten DRF's nested error detail into Signal-style `"<field> <problem>"` strings."""
    if isinstance(detail, dict):
        out: list[str] = []
        for field, sub in detail.items():
            name = field if field != "non_field_errors" else ""
            out += validation_messages(sub, f"{prefix}.{name}" if prefix and name else prefix or name)
        return out
    if isinstance(detail, list):
        out = []
        for index, sub in enumerate(detail):
            sub_prefix = f"{prefix}[{index}]" if isinstance(sub, (dict, list)) else prefix
            out += validation_messages(sub, sub_prefix)
        return out
    text = str(detail)
    return [f"{prefix} {text}".strip()]


def unavailable_dependency(exc: BaseException) -> str | None:
    """The backing service ("database" or "redis") that `exc` says cannot be reached now, or None."""
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return "database"
    if isinstance(exc, REDIS_UNAVAILABLE):
        return "redis"
    return None


_last_logged: dict[str, float] = {}


def log_unavailable(dependency: str) -> None:
    """One warning line for an outage of `dependency`, then at most one per interval."""
    now = time.monotonic()
    if now - _last_logged.get(dependency, -UNAVAILABLE_LOG_INTERVAL_SECONDS) >= UNAVAILABLE_LOG_INTERVAL_SECONDS:
        _last_logged[dependency] = now
        logger.warning("dependency unavailable", extra={"dependency": dependency})


def unavailable_response(exc: BaseException) -> tuple[int, Any, dict[str, str]] | None:
    """503 with Retry-After when `exc` is an outage of PostgreSQL or Redis (logged, throttled)."""
    dependency = unavailable_dependency(exc)
    if dependency is None:
        return None
    log_unavailable(dependency)
    retry_after = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)}
    return 503, {"code": 503, "message": "Service unavailable"}, retry_after


def error_response(exc: Exception) -> tuple[int, Any, dict[str, str]] | None:
    """(status, body, headers) for an exception the client should see, or None for a server bug."""
    if isinstance(exc, DomainError):
        return exc.status, exc.body(), exc.headers
    if (unavailable := unavailable_response(exc)) is not None:
        return unavailable
    if isinstance(exc, drf.ValidationError):
        return 422, {"errors": validation_messages(exc.detail)}, {}
    if isinstance(exc, drf.ParseError):
        return 400, {"code": 400, "message": "Malformed JSON"}, {}
    if isinstance(exc, drf.UnsupportedMediaType):
        return 415, {"code": 415, "message": "Unsupported media type"}, {}
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        return 401, {"code": 401, "message": "Unauthorized"}, {}
    if isinstance(exc, (drf.PermissionDenied, PermissionDenied)):
        return 403, {"code": 403, "message": "Forbidden"}, {}
    if isinstance(exc, (drf.NotFound, Http404)):
        return 404, {"code": 404, "message": "Not found"}, {}
    if isinstance(exc, drf.MethodNotAllowed):
        return 405, {"code": 405, "message": "Method not allowed"}, {}
    if isinstance(exc, drf.NotAcceptable):
        return 406, {"code": 406, "message": "Not acceptable"}, {}
    if isinstance(exc, drf.Throttled):
        headers = {"Retry-After": str(int(exc.wait))} if exc.wait is not None else {}
        return 429, {"code": 429, "message": "Rate limit exceeded"}, headers
    if isinstance(exc, drf.APIException):
        return exc.status_code, {"code": exc.status_code, "message": str(exc.detail)}, {}
    return None


def json_error(exc: DomainError):
    """A domain error as a plain Django response, for the few async views outside DRF."""
    from django.http import JsonResponse

    return JsonResponse(exc.body(), status=exc.status, headers=exc.headers, safe=False)


def drf_exception_handler(exc: Exception, context: dict) -> Response | None:
    mapped = error_response(exc)
    if mapped is None:
        return None  # DRF re-raises; Django logs it and answers 500
    status, body, headers = mapped
    response = Response(body, status=status, headers=headers)
    if status == 401:
        # DRF would add its own WWW-Authenticate; Signal's clients expect Basic.
        response["WWW-Authenticate"] = 'Basic realm="signal"'
    return response
