"""Operators see how pushes fare, per day and platform (counts only, never a token)."""

from django.contrib import admin

from push.models import PushDay
from signalserver.admin import ReadOnlyAdmin


@admin.register(PushDay)
class PushDayAdmin(ReadOnlyAdmin):
    list_display = ("day", "platform", "sent", "failed", "invalidated")
    list_filter = ("platform",)
    fields = readonly_fields = list_display
