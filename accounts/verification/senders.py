"""Delivery of verification codes by SMS or voice call (Signal's verification API).

One interface, `VerificationSender`, and three backends chosen by `settings.VERIFICATION_SENDER`,
read on every call so an operator's (or a test's) change takes effect without a restart:

* `console`: logs that a code was sent; the code itself only when `DEBUG` is on. For development.
* `development`: like `console`, but every code is `DEV_VERIFICATION_CODE`, so a test client can
  register without reading logs. Refuses to work in production mode.
* `twilio`: Twilio's REST API (Programmable Messaging for SMS, Programmable Voice for calls).

No backend ever logs the phone number (docs/architecture.md §8). Provider failures are raised as
`SenderRejected`, which the error mapper turns into Signal's 440 body.
"""

from __future__ import annotations

import logging
import secrets
from abc import ABC, abstractmethod
from xml.sax.saxutils import escape

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from signalserver.errors import SenderRejected

logger = logging.getLogger(__name__)

SMS = "sms"
VOICE = "voice"
TRANSPORTS = (SMS, VOICE)
CODE_DIGITS = 6

# Twilio error codes meaning "this is not a number we can reach": invalid 'To' number (21211),
# not a mobile number (21614), number does not appear valid (21217).
TWILIO_INVALID_NUMBER_CODES = frozenset({21211, 21614, 21217})


class VerificationSender(ABC):
    """Sends a verification code to a phone number over one transport."""

    def make_code(self) -> str:
        """A fresh code: CODE_DIGITS random decimal digits."""
        return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"

    @abstractmethod
    def send(self, number: str, code: str, transport: str, client: str, language: str | None) -> None:
        """Deliver `code` to `number`; raise SenderRejected when the provider refuses.

        `client` is the platform label Signal clients send (`ios`, `android-…`) and `language` the first
        tag of `Accept-Language`; backends may use them to choose the message text."""


class ConsoleSender(VerificationSender):
    """Logs instead of sending; the code appears in the log only when DEBUG is on."""

    def send(self, number, code, transport, client, language):
        if settings.DEBUG:
            logger.info("verification code %s sent by %s (console sender)", code, transport)
        else:
            logger.info("verification code sent by %s (console sender; codes are shown only with DEBUG)", transport)


class DevelopmentSender(ConsoleSender):
    """Every code is settings.DEV_VERIFICATION_CODE (a signalserver extension for test clients)."""

    def __init__(self):
        if settings.PRODUCTION:
            raise ImproperlyConfigured("the development verification sender is refused in production mode")
        if not settings.DEV_VERIFICATION_CODE:
            raise ImproperlyConfigured("VERIFICATION_SENDER=development needs DEV_VERIFICATION_CODE")

    def make_code(self) -> str:
        return settings.DEV_VERIFICATION_CODE


class TwilioSender(VerificationSender):
    """Twilio REST API: `Messages.json` for SMS, `Calls.json` with inline TwiML for voice."""

    def __init__(self):
        if not (settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN):
            raise ImproperlyConfigured("VERIFICATION_SENDER=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        if not (settings.TWILIO_FROM_NUMBER or settings.TWILIO_MESSAGING_SERVICE_SID):
            raise ImproperlyConfigured("VERIFICATION_SENDER=twilio needs TWILIO_FROM_NUMBER or a messaging service")

    def send(self, number, code, transport, client, language):
        if transport == SMS:
            form = {"To": number, "Body": sms_text(code)}
            if settings.TWILIO_MESSAGING_SERVICE_SID:
                form["MessagingServiceSid"] = settings.TWILIO_MESSAGING_SERVICE_SID
            else:
                form["From"] = settings.TWILIO_FROM_NUMBER
            self._post("Messages.json", form)
        elif transport == VOICE:
            if not settings.TWILIO_FROM_NUMBER:
                # Calls need a caller id; a messaging service cannot place them.
                raise ImproperlyConfigured("voice verification with Twilio needs TWILIO_FROM_NUMBER")
            self._post("Calls.json", {"To": number, "From": settings.TWILIO_FROM_NUMBER, "Twiml": voice_twiml(code)})
        else:
            raise ValueError(f"unknown transport {transport!r}")

    def _post(self, resource: str, form: dict) -> None:
        sid = settings.TWILIO_ACCOUNT_SID
        url = f"{settings.TWILIO_API_BASE.rstrip('/')}/2010-04-01/Accounts/{sid}/{resource}"
        try:
            response = httpx.post(
                url, data=form, auth=(sid, settings.TWILIO_AUTH_TOKEN), timeout=settings.PROVIDER_TIMEOUT_SECONDS
            )
        except httpx.HTTPError as exc:
            # The exception text may hold the URL; the class name is enough to diagnose.
            logger.warning("twilio unreachable: %s", type(exc).__name__)
            raise SenderRejected(SenderRejected.PROVIDER_UNAVAILABLE, permanent=False) from None
        if response.is_success:
            return
        raise twilio_failure(response.status_code, _twilio_error_code(response))


def twilio_failure(status: int, error_code: int | None) -> SenderRejected:
    """Map a failed Twilio answer to the 440 body: transient for 5xx/429 and for our own credentials
    being refused (401: an operator problem, not the user's), permanent for the other 4xx."""
    # Twilio's error message would repeat the number, so only the status and code are logged.
    if status >= 500 or status in (401, 429):
        level = logging.ERROR if status == 401 else logging.WARNING
        logger.log(level, "twilio unavailable: status %s, error code %s", status, error_code)
        return SenderRejected(SenderRejected.PROVIDER_UNAVAILABLE, permanent=False)
    logger.info("twilio refused delivery: status %s, error code %s", status, error_code)
    if error_code in TWILIO_INVALID_NUMBER_CODES:
        return SenderRejected(SenderRejected.ILLEGAL_ARGUMENT, permanent=True)
    return SenderRejected(SenderRejected.PROVIDER_REJECTED, permanent=True)


def _twilio_error_code(response: httpx.Response) -> int | None:
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None


def sms_text(code: str) -> str:
    """The SMS body. One English text for every client: we have no app hash for Android's SMS
    Retriever and no translations, so `client` and `language` do not change it."""
    return f"Your verification code: {code}"


def voice_twiml(code: str) -> str:
    """TwiML that reads the code digit by digit (spaced, so it is not read as one number)."""
    return f"<Response><Say>{escape(' '.join(code))}</Say></Response>"


BACKENDS: dict[str, type[VerificationSender]] = {
    "console": ConsoleSender,
    "development": DevelopmentSender,
    "twilio": TwilioSender,
}


def get_sender() -> VerificationSender:
    """The backend named by settings.VERIFICATION_SENDER (read now, not at import)."""
    try:
        backend = BACKENDS[settings.VERIFICATION_SENDER]
    except KeyError:
        raise ImproperlyConfigured(
            f"VERIFICATION_SENDER must be one of {', '.join(BACKENDS)}, not {settings.VERIFICATION_SENDER!r}"
        ) from None
    return backend()
