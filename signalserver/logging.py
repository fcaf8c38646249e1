"""Structured logging: one JSON object per line, with a filter that scrubs sensitive values.

The filter is the last line of defence (docs/architecture.md §8): code should not log numbers, credentials,
keys or message bodies in the first place, but if it does, they do not reach the output.
"""

import json
import logging
import re
from datetime import UTC, datetime

REDACTED = "[redacted]"

# Field names whose values are never logged, whatever they hold.
SENSITIVE_NAMES = re.compile(
    r"(pass|secret|token|key|auth|number|e164|phone|code|body|content|message_body|signature|captcha|challenge|cookie)",
    re.IGNORECASE,
)
SENSITIVE_PATTERNS = [
    re.compile(r"\+\d{6,15}"),  # E.164 numbers
    re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._-]+"),  # Authorization values
    re.compile(r"[A-Za-z0-9+/_-]{22,}={0,2}"),  # base64 blobs: keys, signatures, tokens, ciphertext
    re.compile(r"\b[0-9a-fA-F]{32,}\b"),  # hex secrets: hashes, salts, registration locks
    re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),  # ACIs, PNIs, guids
]
# Extra fields that only ever hold values we produce (route patterns, not paths) or check (request
# ids, signalserver.request_ids): not scrubbed.
SAFE_FIELDS = {"route", "status", "duration_ms", "request_id"}
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def scrub(value):
    if isinstance(value, str):
        for pattern in SENSITIVE_PATTERNS:
            value = pattern.sub(REDACTED, value)
        return value
    if isinstance(value, dict):
        return {k: REDACTED if SENSITIVE_NAMES.search(str(k)) else scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    # Anything else (bytes, a request, a model instance) would be written as its repr, which
    # can name a path, an account or a key: Django's request logger passes the request itself.
    return REDACTED


class RedactingFilter(logging.Filter):
    """Rewrites each record so that its message and extra fields carry no sensitive values."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        for name in list(vars(record)):
            if name in _STANDARD_ATTRS or name in SAFE_FIELDS:
                continue
            value = getattr(record, name)
            setattr(record, name, REDACTED if SENSITIVE_NAMES.search(name) else scrub(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str)


class SkipUnavailableResponses(logging.Filter):
    """Drops Django's line for a 503 response (its message is the request's path, which carries
    identifiers): an outage answers every request with 503, and is logged once, without paths,
    where it is detected (`signalserver.errors.log_unavailable`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "status_code", None) != 503


class Throttle(logging.Filter):
    """Passes a line at most once per `seconds` for each of its message templates: for libraries
    that log every failed attempt (psycopg-pool's reconnections during a database outage)."""

    def __init__(self, seconds: float = 10.0):
        super().__init__()
        self.seconds = seconds
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        if record.created - self._last.get(key, float("-inf")) < self.seconds:
            return False
        self._last[key] = record.created
        return True
