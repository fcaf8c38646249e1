"""Spam reports and the report token that makes them checkable (Envelope field 17).

Signal records a hash of every identified message so that a later report can be checked. We put
a keyed MAC of (message guid, sender ACI) into each identified envelope as `report_spam_token`
instead: the recipient echoes it when reporting, and the server verifies it without having stored
anything per message.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account, DeletedAccount
from messaging.models import SpamReport
from signalserver.crypto import server_key

REPORT_TOKEN_BYTES = 16


def _key() -> bytes:
    return server_key("report token")


def report_token(guid: uuid.UUID, source_aci: uuid.UUID) -> bytes:
    """The token proving that the message `guid` was sent by `source_aci`."""
    message = guid.bytes + str(source_aci).encode()
    return hmac.new(_key(), message, hashlib.sha256).digest()[:REPORT_TOKEN_BYTES]


def report_spam(*, reporter_aci: uuid.UUID, source: str, message_guid: str, token: bytes | None) -> bool:
    """Record a report when its token checks out; returns whether it was recorded. The caller
    answers 202 either way, so a reporter learns nothing about the source or the message."""
    try:
        guid = uuid.UUID(message_guid)
    except ValueError:
        return False
    source_aci = _source_aci(source)
    if source_aci is None or source_aci == reporter_aci or not token:
        return False
    if not hmac.compare_digest(token, report_token(guid, source_aci)):
        return False
    try:
        with transaction.atomic():
            SpamReport.objects.create(source_aci=source_aci, reporter_aci=reporter_aci, message_guid=guid)
    except IntegrityError:
        return False  # reported already
    return True


def _source_aci(source: str) -> uuid.UUID | None:
    """An ACI, or an E.164 number resolved to its (possibly recently deleted) account."""
    if source.startswith("+"):
        aci = Account.objects.filter(number=source).values_list("aci", flat=True).first()
        return aci or DeletedAccount.objects.filter(number=source).values_list("aci", flat=True).first()
    try:
        return uuid.UUID(source)
    except ValueError:
        return None


def purge_reviewed_spam_reports() -> int:
    """Delete reports an operator reviewed (dismissed or actioned) SPAM_REPORT_RETENTION_DAYS ago
    or more; open ones stay until reviewed. How many went."""
    cutoff = timezone.now().date() - timedelta(days=settings.SPAM_REPORT_RETENTION_DAYS)
    return SpamReport.objects.exclude(status=SpamReport.Status.OPEN).filter(created__lt=cutoff).delete()[0]
