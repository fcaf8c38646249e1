"""Attachments are deleted ATTACHMENT_RETENTION_DAYS after their upload, unfinished uploads after
ATTACHMENT_ABANDONED_HOURS, by the purge that Celery beat runs hourly (and the embedded run when a
device connects): rows, objects, parts and tails, in a real S3 store and in a local folder."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from media.models import Upload
from media.services import purge_attachments
from media.store import S3Store, object_name
from media.store import backend
from signalserver import purges

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024


def new_upload(key: str, length: int) -> Upload:
    upload = Upload(key=key, length=length, created=timezone.now())
    backend().start(upload)
    upload.save()
    return upload


def stored(upload, data: bytes, store) -> None:
    """`data` written into `upload` the way media.tus writes a request's bytes: whole parts, then
    the rest as the last part or kept."""
    buffer = bytearray()
    for start in range(0, len(data), store.part_bytes):
        buffer += data[start : start + store.part_bytes]
        if len(buffer) == store.part_bytes:
            store.write(upload, buffer)
    if len(data) == upload.length:
        store.write(upload, buffer, last=True)
        store.complete(upload)
        upload.completed = timezone.now().date()
    else:
        store.keep(upload, buffer)
    upload.save()


def age(upload, *, days: int = 0, hours: int = 0) -> None:
    Upload.objects.filter(pk=upload.pk).update(
        completed=(upload.completed - timedelta(days=days)) if upload.completed else None,
        created=upload.created - timedelta(hours=hours),
    )


def keys(s3_server, bucket) -> set[str]:
    return {item["Key"] for item in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_old_attachments_and_abandoned_uploads_leave_the_s3_store(s3_media, s3_server, settings):
    s3 = S3Store()
    old, recent, abandoned, unfinished = (new_upload(f"{name:A<20}", 9 * MiB if name == "abandoned" else 100) for name in ("old", "recent", "abandoned", "unfinished"))
    stored(old, b"o" * 100, s3)
    stored(recent, b"r" * 100, s3)
    stored(abandoned, os.urandom(8 * MiB + 5), s3)  # a part and a tail
    stored(unfinished, b"u" * 10, s3)
    age(old, days=settings.ATTACHMENT_RETENTION_DAYS)
    age(recent, days=settings.ATTACHMENT_RETENTION_DAYS - 1)
    age(abandoned, hours=settings.ATTACHMENT_ABANDONED_HOURS + 1)
    age(unfinished, hours=settings.ATTACHMENT_ABANDONED_HOURS - 1)

    assert purge_attachments() == 2
    assert set(Upload.objects.values_list("pk", flat=True)) == {recent.pk, unfinished.pk}
    assert keys(s3_server, s3_media) == {object_name(recent.key), f"uploads/{unfinished.key}.tail"}
    in_progress = s3_server.client().list_multipart_uploads(Bucket=s3_media).get("Uploads", [])
    assert [item["UploadId"] for item in in_progress] == [unfinished.multipart_id]


def test_multipart_uploads_no_upload_names_are_aborted_once_abandoned(s3_media, s3_server, settings):
    s3_server.client().create_multipart_upload(Bucket=s3_media, Key="attachments/orphan")
    assert purge_attachments() == 0  # begun just now
    settings.ATTACHMENT_ABANDONED_HOURS = 0
    assert purge_attachments() == 1
    assert s3_server.client().list_multipart_uploads(Bucket=s3_media).get("Uploads", []) == []


def test_on_a_local_store_the_files_go_too_and_the_embedded_run_purges_without_beat(local_media, settings, monkeypatch):
    from media.store import LocalStore

    local = LocalStore()
    old, abandoned = new_upload("o" * 20, 50), new_upload("a" * 20, 50)
    stored(old, b"x" * 50, local)
    stored(abandoned, b"y" * 20, local)
    age(old, days=settings.ATTACHMENT_RETENTION_DAYS)
    age(abandoned, hours=settings.ATTACHMENT_ABANDONED_HOURS + 1)
    assert sorted(p.name for p in local_media.rglob("*") if p.is_file()) == ["aaaaaaaaaaaaaaaaaaaa", "oooooooooooooooooooo"]

    settings.CELERY_TASK_ALWAYS_EAGER = True
    monkeypatch.setattr(purges, "_last_run", -1e9)
    purges.run_if_due()
    assert not Upload.objects.exists()
    assert [p for p in local_media.rglob("*") if p.is_file()] == []
