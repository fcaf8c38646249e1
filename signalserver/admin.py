"""Operator settings in the admin (docs/architecture.md §7): limiter overrides and IP bans take effect on the
next request of every node; every change is recorded in the operator log, which nobody can edit."""

from django.contrib import admin

from signalserver import dashboard, operator_settings
from signalserver.models import IpBan, LimitOverride, OperatorAction, record_operator_action
from signalserver.ratelimit import LIMITERS


class _RecordedAdmin(admin.ModelAdmin):
    """Saves and deletions tell every process (operator_settings) and land in the operator log."""

    set_action = delete_action = ""

    def describe(self, obj) -> tuple[str, str]:
        return str(obj), ""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        operator_settings.changed()
        record_operator_action(request.user, self.set_action, *self.describe(obj))

    def delete_model(self, request, obj):
        target = self.describe(obj)
        super().delete_model(request, obj)
        operator_settings.changed()
        record_operator_action(request.user, self.delete_action, *target)

    def delete_queryset(self, request, queryset):
        targets = [self.describe(obj) for obj in queryset]
        super().delete_queryset(request, queryset)
        operator_settings.changed()
        for target in targets:
            record_operator_action(request.user, self.delete_action, *target)


@admin.register(LimitOverride)
class LimitOverrideAdmin(_RecordedAdmin):
    list_display = ("limiter", "scope", "bucket_size", "permit_seconds", "default", "created")
    list_filter = ("limiter",)
    search_fields = ("=account__aci",)
    raw_id_fields = ("account",)
    set_action, delete_action = "set limit", "remove limit override"

    def describe(self, obj):
        return f"{obj.limiter} for {self.scope(obj)}", f"{obj.bucket_size} per {obj.permit_seconds:g} s"

    @admin.display(description="for")
    def scope(self, obj):
        return f"account {obj.account_id}" if obj.account_id else "everyone"

    @admin.display(description="default")
    def default(self, obj):
        limit = LIMITERS[obj.limiter].default
        return f"{limit.bucket_size} per {limit.permit_seconds:g} s"


@admin.register(IpBan)
class IpBanAdmin(_RecordedAdmin):
    list_display = ("network", "reason", "created")
    search_fields = ("network",)
    set_action, delete_action = "ban IP range", "unban IP range"

    def describe(self, obj):
        return obj.network, obj.reason


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows operators may read and nobody may add, change or delete (records, counts)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OperatorAction)
class OperatorActionAdmin(ReadOnlyAdmin):
    list_display = ("at", "operator", "action", "target", "detail")
    list_filter = ("action",)
    search_fields = ("target",)
    date_hierarchy = "at"


def _with_dashboard(admin_urls):
    def urls():
        return dashboard.urls() + admin_urls()

    return urls


# The operator dashboard (signalserver/dashboard.py) is a page of the admin site, linked from its index.
admin.site.get_urls = _with_dashboard(admin.site.get_urls)
admin.site.index_template = "signalserver/admin_index.html"
