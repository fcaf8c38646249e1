"""Attachment uploads: one row per object key, from the tus creation request until the
attachment is purged. Nothing here names who uploaded or for whom: the key is random, and the
upload is authorised by a token that names only the key and the largest length (media.tokens)."""

from django.db import models


class Upload(models.Model):
    key = models.CharField(max_length=20, primary_key=True)  # 15 random bytes, URL-safe base64
    length = models.BigIntegerField()  # Upload-Length, as declared at creation
    offset = models.BigIntegerField(default=0)  # bytes received and stored
    # In an S3 store: the multipart upload, the ETags of its parts so far, and how many bytes
    # after the last part wait in a separate object until they fill the next one.
    multipart_id = models.CharField(max_length=1024, blank=True, default="")
    parts = models.JSONField(default=list, blank=True)
    tail = models.IntegerField(default=0)
    # Who may write now (one request at a time), until when.
    writer = models.CharField(max_length=32, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField()  # to the hour: when an unfinished upload counts as abandoned
    completed = models.DateField(null=True, blank=True)  # to the day: when retention ends

    class Meta:
        indexes = [models.Index(fields=["completed"]), models.Index(fields=["created"])]

    def __str__(self) -> str:
        return f"upload of {self.length} bytes"


class UploadDay(models.Model):
    """Uploads completed per day, for operators: counts and bytes only."""

    day = models.DateField(unique=True)
    uploads = models.PositiveIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return str(self.day)
