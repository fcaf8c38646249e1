"""Per-device message queues (docs/architecture.md §4).

A queued message is one row per destination device holding the sealed Envelope the device will
receive. PostgreSQL is the source of truth (docs/architecture.md §4): a message exists once its row commits and
is gone once the device acknowledges it or it expires.
"""

import uuid

from django.db import models

from messaging.sealing import guid_tags, unseal


class QueuedMessageQuerySet(models.QuerySet):
    def with_guid(self, guid: uuid.UUID | str):
        return self.filter(guid_tag__in=guid_tags(uuid.UUID(str(guid))))




class QueuedMessage(models.Model):
    """One envelope waiting for one device, sealed (messaging/sealing.py): nothing of the envelope
    is readable here, not even its guid or time (docs/privacy.md)."""

    id = models.BigAutoField(primary_key=True)  # queue order
    # Removing a device (or its account) removes its queue.
    device = models.ForeignKey("accounts.Device", on_delete=models.CASCADE, related_name="+", db_index=False)
    guid_tag = models.BinaryField(max_length=16)  # keyed hash of the envelope's guid (acks by guid)
    queued_hour = models.IntegerField()  # hours since the epoch; retention counts from here
    key_id = models.SmallIntegerField()  # the queue key that sealed it
    envelope = models.BinaryField()  # sealed: flags and the serialized textsecure.Envelope

    objects = QueuedMessageQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["device", "id"], name="queue_order"),
            models.Index(fields=["guid_tag"], name="queue_guid"),
            models.Index(fields=["queued_hour"], name="queue_retention"),
        ]

    def __str__(self):
        return f"queued message {self.pk}"

    def open(self) -> tuple[bytes, bool]:
        """(envelope, story)."""
        return unseal(self.key_id, self.envelope, device_pk=self.device_id)


class TrustRoot(models.Model):
    """The sealed-sender trust root: its public key is built into clients (docs/architecture.md §6).

    The private half normally stays offline with the operator; only the development pair made by
    the embedded run keeps it here, so that `make run` can certify its own server key.
    """

    public_key = models.BinaryField(max_length=33)
    private_key = models.BinaryField(max_length=32, null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"trust root {self.pk}"


class ServerCertificate(models.Model):
    """A server key certified by the trust root; the newest one signs sender certificates."""

    key_id = models.PositiveIntegerField(unique=True)
    certificate = models.BinaryField()  # serialized ServerCertificate
    private_key = models.BinaryField(max_length=32)  # Ed25519 seed of the server key
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"server certificate {self.key_id}"


class SpamReport(models.Model):
    """A recipient's report that a message was spam, kept for moderators.

    Only reports whose token proves the message really came from `source_aci` are stored, so
    nobody can pile reports onto an account they never heard from.
    """

    class Status(models.TextChoices):
        OPEN = "open"
        DISMISSED = "dismissed"
        ACTIONED = "actioned"

    source_aci = models.UUIDField(db_index=True)
    reporter_aci = models.UUIDField()
    message_guid = models.UUIDField()
    created = models.DateField(auto_now_add=True)  # the day: retention is counted in days
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reporter_aci", "message_guid"], name="one_report_per_message_and_reporter")
        ]

    def __str__(self):
        return f"report on {self.source_aci}"
