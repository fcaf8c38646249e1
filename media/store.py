"""Where attachment bytes go: Django's "media" storage (settings.STORAGES), an S3-compatible bucket
through django-storages or, on the embedded run, a local folder. Objects are named
`attachments/<key>`.

An upload arrives in pieces over several requests (media.tus) and is never held whole in memory or
in one request body: in S3 it becomes a multipart upload, a part each time PART_BYTES have
arrived; bytes that stop short of a part (a request ended or broke) wait in a small object of their
own, `uploads/<key>.tail`, until the next request fills the part. Locally the bytes are appended to
`uploads/<key>` and the file is moved into place when complete. Every call here blocks (boto3, the
file system): media.tus runs them in threads.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import cache

from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages

from media.models import Upload

# S3 parts (at least 5 MiB but the last); also the most an upload holds in memory, and how often
# its progress is saved.
PART_BYTES = 8 * 1024 * 1024


def storage():
    return storages["media"]


def object_name(key: str) -> str:
    return f"attachments/{key}"


@cache
def _is_local() -> bool:
    return isinstance(storage(), FileSystemStorage)


@cache
def _s3():
    """(boto3 client, bucket) of the S3 storage, one per process: django-storages keeps a
    connection per thread (12-15 MiB and 100 ms to make each), a low-level client is thread-safe."""
    media = storage()
    return media.connection.meta.client, media.bucket_name


def forget() -> None:
    """Look at settings.STORAGES again (tests point the media storage elsewhere)."""
    _is_local.cache_clear()
    _s3.cache_clear()


def backend() -> LocalStore | S3Store:
    return LocalStore() if _is_local() else S3Store()


class LocalStore:
    """Appends to a file under MEDIA_ROOT; whatever is written is stored (no parts, no tail)."""

    part_bytes = PART_BYTES

    def _partial(self, key: str) -> str:
        return storage().path(f"uploads/{key}")

    def start(self, upload: Upload) -> None:
        path = self._partial(upload.key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb"):
            pass

    def load_tail(self, upload: Upload) -> bytes:
        return b""

    def write(self, upload: Upload, buffer: bytearray, *, last: bool = False) -> None:
        """Store all of `buffer` (then emptied) after the upload's stored bytes."""
        with open(self._partial(upload.key), "r+b") as file:
            file.seek(upload.offset)  # over whatever a broken request left past the stored offset
            file.write(buffer)
            file.truncate()
        upload.offset += len(buffer)
        buffer.clear()

    keep = write  # the end of a request: everything received is stored

    def complete(self, upload: Upload) -> None:
        final = storage().path(object_name(upload.key))
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(self._partial(upload.key), final)

    def abort(self, upload: Upload) -> None:
        try:
            os.remove(self._partial(upload.key))
        except FileNotFoundError:
            pass


class S3Store:
    """A multipart upload per attachment; see the module's docstring. `upload.offset` is the
    bytes in its parts plus its tail (`upload.tail`); the buffer a request fills always holds the
    bytes after the last part, the tail's first."""

    part_bytes = PART_BYTES

    def __init__(self):
        self.client, self.bucket = _s3()

    def _tail(self, key: str) -> str:
        return f"uploads/{key}.tail"

    def start(self, upload: Upload) -> None:
        answer = self.client.create_multipart_upload(Bucket=self.bucket, Key=object_name(upload.key), ACL="private")
        upload.multipart_id, upload.parts, upload.tail = answer["UploadId"], [], 0

    def load_tail(self, upload: Upload) -> bytes:
        if not upload.tail:
            return b""
        data = self.client.get_object(Bucket=self.bucket, Key=self._tail(upload.key))["Body"].read()
        return data[: upload.tail]

    def write(self, upload: Upload, buffer: bytearray, *, last: bool = False) -> None:
        """Upload `buffer` as the next part (then empty it): a whole part, or when `last` what is
        left. The tail's bytes, already counted in upload.offset, are the first of it."""
        if not buffer:
            return
        if len(buffer) != PART_BYTES and not last:
            raise ValueError("only the last part may be shorter than PART_BYTES")
        answer = self.client.upload_part(
            Bucket=self.bucket, Key=object_name(upload.key), UploadId=upload.multipart_id,
            PartNumber=len(upload.parts) + 1, Body=buffer,  # a bytearray: botocore sends it uncopied
        )
        upload.parts = [*upload.parts, answer["ETag"]]
        upload.offset, upload.tail = upload.offset - upload.tail + len(buffer), 0
        buffer.clear()

    def keep(self, upload: Upload, buffer: bytearray) -> None:
        """The end of a request short of a part: store what is left as the tail."""
        if buffer and len(buffer) != upload.tail:
            self.client.put_object(Bucket=self.bucket, Key=self._tail(upload.key), Body=buffer)
            upload.offset, upload.tail = upload.offset - upload.tail + len(buffer), len(buffer)

    def complete(self, upload: Upload) -> None:
        parts = [{"PartNumber": number, "ETag": etag} for number, etag in enumerate(upload.parts, start=1)]
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=object_name(upload.key), UploadId=upload.multipart_id, MultipartUpload={"Parts": parts}
        )
        self.client.delete_object(Bucket=self.bucket, Key=self._tail(upload.key))

    def abort(self, upload: Upload) -> None:
        if upload.multipart_id:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=object_name(upload.key), UploadId=upload.multipart_id)
            except self.client.exceptions.NoSuchUpload:
                pass
        self.client.delete_object(Bucket=self.bucket, Key=self._tail(upload.key))


def delete_object(key: str) -> None:
    if _is_local():
        storage().delete(object_name(key))
    else:
        client, bucket = _s3()
        client.delete_object(Bucket=bucket, Key=object_name(key))


def download_url(key: str) -> str | None:
    """A time-limited signed URL to the object in S3; None for a local store (served by media.tus)."""
    if _is_local():
        return None
    client, bucket = _s3()
    return client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": object_name(key)}, ExpiresIn=settings.ATTACHMENT_DOWNLOAD_URL_SECONDS
    )


def local_path(key: str) -> str:
    return storage().path(object_name(key))


def abort_orphaned_uploads(older_than) -> int:
    """Multipart uploads in the S3 store that no upload row names any more (a creation that failed
    after starting one) and began longer ago than `older_than`: aborted; how many."""
    if _is_local():
        return 0
    s3 = S3Store()
    cutoff = datetime.now(UTC) - older_than
    answer = s3.client.list_multipart_uploads(Bucket=s3.bucket, Prefix="attachments/")
    stale = [item for item in answer.get("Uploads", []) if item["Initiated"] < cutoff]
    known = set(Upload.objects.filter(multipart_id__in=[item["UploadId"] for item in stale]).values_list("multipart_id", flat=True))
    aborted = 0
    for item in stale:
        if item["UploadId"] not in known:
            s3.client.abort_multipart_upload(Bucket=s3.bucket, Key=item["Key"], UploadId=item["UploadId"])
            aborted += 1
    return aborted
