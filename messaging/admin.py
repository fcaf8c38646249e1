"""Moderation of spam reports. Reports hold no message content, only who reported
which sender's message and when."""

from django.contrib import admin

from accounts import services
from accounts.models import Account
from messaging.models import SpamReport
from signalserver.models import record_operator_action


@admin.register(SpamReport)
class SpamReportAdmin(admin.ModelAdmin):
    list_display = ("source_aci", "created", "status")
    list_filter = ("status",)
    search_fields = ("=source_aci",)
    fields = readonly_fields = ("source_aci", "reporter_aci", "message_guid", "created", "status")
    actions = ["dismiss", "ban_senders"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Dismiss the selected reports", permissions=["change"])
    def dismiss(self, request, queryset):
        reports = list(queryset.filter(status=SpamReport.Status.OPEN))
        for report in reports:
            record_operator_action(request.user, "dismiss spam report", report.source_aci)
        count = SpamReport.objects.filter(pk__in=[r.pk for r in reports]).update(status=SpamReport.Status.DISMISSED)
        self.message_user(request, f"{count} report(s) dismissed")

    @admin.action(description="Ban the reported senders (and close their reports)", permissions=["ban"])
    def ban_senders(self, request, queryset):
        sources = set(queryset.values_list("source_aci", flat=True))
        for account in Account.objects.filter(aci__in=sources, banned=False):
            services.set_account_banned(account=account, banned=True)
            record_operator_action(request.user, "ban account", account.aci, "spam report")
        closed = SpamReport.objects.filter(source_aci__in=sources, status=SpamReport.Status.OPEN).update(
            status=SpamReport.Status.ACTIONED
        )
        self.message_user(request, f"Banned {len(sources)} sender(s); {closed} report(s) closed.")

    def has_ban_permission(self, request):
        return request.user.has_perm("accounts.ban_account")
