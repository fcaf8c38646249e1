"""Moderation of spam reports (spec §4.9). Reports hold no message content, only who reported
which sender's message and when."""

from django.contrib import admin

from messaging.models import SpamReport


@admin.register(SpamReport)
class SpamReportAdmin(admin.ModelAdmin):
    list_display = ("source_aci", "created", "status")
    list_filter = ("status",)
    search_fields = ("=source_aci",)
    fields = readonly_fields = ("source_aci", "reporter_aci", "message_guid", "created", "status")
    actions = ["dismiss"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Dismiss the selected reports", permissions=["change"])
    def dismiss(self, request, queryset):
        count = queryset.filter(status=SpamReport.Status.OPEN).update(status=SpamReport.Status.DISMISSED)
        self.message_user(request, f"{count} report(s) dismissed")
