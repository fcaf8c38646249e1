"""Captcha assessment for verification sessions.

`settings.CAPTCHA_PROVIDER`, read on every call:

* `none`: no captcha. Sessions do not request one, and a submitted token is ignored (there is
  nothing to check it against).
* `development`: the token must equal `DEV_CAPTCHA_TOKEN` (a signalserver extension for test
  clients); refused in production mode.
* `hcaptcha`: hCaptcha's `siteverify` API.

Signal clients send `signal-hcaptcha.<sitekey>.<action>.<token>`; the provider token is what follows
the third dot (it may itself contain dots). A raw provider token is accepted too.
"""

from __future__ import annotations

import hmac
import logging
from abc import ABC, abstractmethod

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from signalserver.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

SIGNAL_TOKEN_PREFIX = "signal-"
# hCaptcha answers these when *our* secret or site key is wrong: an operator problem, so the client
# is told the provider is unavailable rather than that it failed the captcha.
HCAPTCHA_CONFIGURATION_ERRORS = frozenset({"missing-input-secret", "invalid-input-secret", "sitekey-secret-mismatch"})


def provider_token(captcha: str) -> str:
    """The provider's token inside Signal's `signal-<provider>.<sitekey>.<action>.<token>` format."""
    if captcha.startswith(SIGNAL_TOKEN_PREFIX):
        parts = captcha.split(".", 3)
        if len(parts) == 4:
            return parts[3]
    return captcha


class CaptchaProvider(ABC):
    @abstractmethod
    def assess(self, captcha: str, *, remote_ip: str | None) -> bool:
        """True when the solved captcha is valid; ServiceUnavailable when the provider cannot say."""


class DevelopmentCaptcha(CaptchaProvider):
    """Accepts exactly settings.DEV_CAPTCHA_TOKEN (compared in constant time)."""

    def __init__(self):
        if settings.PRODUCTION:
            raise ImproperlyConfigured("the development captcha provider is refused in production mode")
        if not settings.DEV_CAPTCHA_TOKEN:
            raise ImproperlyConfigured("CAPTCHA_PROVIDER=development needs DEV_CAPTCHA_TOKEN")

    def assess(self, captcha, *, remote_ip):
        return hmac.compare_digest(provider_token(captcha).encode(), settings.DEV_CAPTCHA_TOKEN.encode())


class HCaptcha(CaptchaProvider):
    """POST {HCAPTCHA_VERIFY_URL} (form: secret, response, remoteip, sitekey) → {"success": bool}."""

    def __init__(self):
        if not settings.HCAPTCHA_SECRET:
            raise ImproperlyConfigured("CAPTCHA_PROVIDER=hcaptcha needs HCAPTCHA_SECRET")

    def assess(self, captcha, *, remote_ip):
        form = {"secret": settings.HCAPTCHA_SECRET, "response": provider_token(captcha)}
        if remote_ip:
            form["remoteip"] = remote_ip
        if settings.HCAPTCHA_SITE_KEY:
            form["sitekey"] = settings.HCAPTCHA_SITE_KEY
        try:
            response = httpx.post(settings.HCAPTCHA_VERIFY_URL, data=form, timeout=settings.PROVIDER_TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:
            logger.warning("hcaptcha unreachable: %s", type(exc).__name__)
            raise ServiceUnavailable("captcha provider unavailable") from None
        try:
            result = response.json() if response.status_code == 200 else None
        except ValueError:
            result = None
        if not isinstance(result, dict) or not isinstance(result.get("success"), bool):
            logger.warning("hcaptcha answered status %s without a verdict", response.status_code)
            raise ServiceUnavailable("captcha provider unavailable")
        codes = result.get("error-codes")
        misconfigured = HCAPTCHA_CONFIGURATION_ERRORS.intersection(
            code for code in (codes if isinstance(codes, list) else []) if isinstance(code, str)
        )
        if not result["success"] and misconfigured:
            logger.error("hcaptcha refused our configuration: %s", ", ".join(sorted(misconfigured)))
            raise ServiceUnavailable("captcha provider unavailable")
        return result["success"]


PROVIDERS: dict[str, type[CaptchaProvider] | None] = {
    "none": None,
    "development": DevelopmentCaptcha,
    "hcaptcha": HCaptcha,
}


def get_captcha_provider() -> CaptchaProvider | None:
    """The provider named by settings.CAPTCHA_PROVIDER (read now), or None when captchas are off."""
    try:
        provider = PROVIDERS[settings.CAPTCHA_PROVIDER]
    except KeyError:
        raise ImproperlyConfigured(
            f"CAPTCHA_PROVIDER must be one of {', '.join(PROVIDERS)}, not {settings.CAPTCHA_PROVIDER!r}"
        ) from None
    return provider() if provider else None
