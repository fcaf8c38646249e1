"""Operators see uploads per day and the storage attachments use: counts and sizes, never keys."""

from django.contrib import admin
from django.db.models import Count, Sum

from media.models import Upload, UploadDay
from signalserver.admin import ReadOnlyAdmin


@admin.register(UploadDay)
class UploadDayAdmin(ReadOnlyAdmin):
    list_display = ("day", "uploads", "bytes")
    fields = readonly_fields = ("day", "uploads", "bytes")

    def changelist_view(self, request, extra_context=None):
        stored = Upload.objects.filter(completed__isnull=False).aggregate(count=Count("pk"), size=Sum("length"))
        unfinished = Upload.objects.filter(completed__isnull=True).aggregate(count=Count("pk"), size=Sum("offset"))
        title = (
            f"Uploads per day. Stored: {stored['count']} attachments, {(stored['size'] or 0) / 2**20:.1f} MiB; "
            f"unfinished: {unfinished['count']} uploads, {(unfinished['size'] or 0) / 2**20:.1f} MiB"
        )
        return super().changelist_view(request, {**(extra_context or {}), "title": title})
