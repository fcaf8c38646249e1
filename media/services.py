"""Upload forms: where and how a client uploads an encrypted attachment. The object key
is random (never derived from the content or an account); the form's token authorises exactly that
key and length (media.tokens), and the upload itself goes to the tus endpoint (media.tus)."""

from __future__ import annotations

import base64
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from media import store, tokens
from media.models import Upload
from signalserver import ratelimit
from signalserver.errors import BadRequest, DomainError

logger = logging.getLogger(__name__)

CDN_TUS = 3
PURGE_BATCH = 500


class PayloadTooLarge(DomainError):
    status = 413


def new_key() -> str:
    """15 random bytes, URL-safe base64: 20 characters."""
    return base64.urlsafe_b64encode(secrets.token_bytes(15)).decode()


def parse_upload_length(value: str | None) -> int | None:
    """`uploadLength` of the query: None when absent; 400 unless a positive integer, 413 when
    larger than the largest attachment."""
    if value is None:
        return None
    if not value.isdigit() or len(value) > 15 or int(value) <= 0:
        raise BadRequest("uploadLength must be a positive integer")
    if int(value) > settings.ATTACHMENT_MAX_BYTES:
        raise PayloadTooLarge(f"uploadLength is larger than {settings.ATTACHMENT_MAX_BYTES}")
    return int(value)


def upload_form(*, aci, upload_length: int | None, base_url: str) -> dict:
    """The form of a new upload, for the account `aci`, after its limiters: `attachmentCreate`
    (one) and, when the length is known, `attachmentCreateBytes` (that many); both or neither."""
    takes = [ratelimit.Take("attachmentCreate", str(aci), 1, aci)]
    if upload_length is not None:
        takes.append(ratelimit.Take("attachmentCreateBytes", str(aci), upload_length, aci))
    ratelimit.check_all(takes)
    key = new_key()
    token = tokens.issue(key, upload_length or settings.ATTACHMENT_MAX_BYTES)
    base = (settings.ATTACHMENTS_CDN3_URL or base_url).rstrip("/")
    return {
        "cdn": CDN_TUS,
        "key": key,
        "headers": {"Authorization": f"Bearer {token}", "Upload-Metadata": f"filename {base64.b64encode(key.encode()).decode()}"},
        "signedUploadLocation": f"{base}/attachments",
    }


def purge_attachments() -> int:
    """Delete attachments ATTACHMENT_RETENTION_DAYS after their upload completed, and uploads left
    unfinished for ATTACHMENT_ABANDONED_HOURS (with their parts in the store); how many."""
    today = timezone.now().date()
    expired = Upload.objects.filter(completed__lte=today - timedelta(days=settings.ATTACHMENT_RETENTION_DAYS))
    abandoned = Upload.objects.filter(
        completed__isnull=True, created__lt=timezone.now() - timedelta(hours=settings.ATTACHMENT_ABANDONED_HOURS)
    )
    backend, purged = store.backend(), 0
    for rows, remove in ((expired, lambda upload: store.delete_object(upload.key)), (abandoned, backend.abort)):
        while batch := list(rows[:PURGE_BATCH]):
            for upload in batch:
                remove(upload)
            Upload.objects.filter(pk__in=[upload.pk for upload in batch]).delete()
            purged += len(batch)
    purged += store.abort_orphaned_uploads(timedelta(hours=settings.ATTACHMENT_ABANDONED_HOURS))
    if purged:
        logger.info("purged attachments", extra={"count": purged})
    return purged
