"""Operator views of accounts and devices: searchable by ACI, never showing secrets or key bytes."""

from django.contrib import admin

from accounts import services
from accounts.models import Account, Device
from keys.selectors import key_summary
from signalserver import ratelimit
from signalserver.models import record_operator_action


def push_platform(device) -> str:
    """How the device is woken: by APNs (Apple), FCM (Android) or nothing (it keeps a socket)."""
    if device.apn_id:
        return "APNs"
    if device.gcm_id:
        return "FCM"
    return "socket only"


class DeviceInline(admin.TabularInline):
    model = Device
    fields = readonly_fields = (
        "device_id",
        "registration_id",
        "pni_registration_id",
        "fetches_messages",
        "capabilities",
        "user_agent",
        "platform",
        "prekeys",
        "created",
        "last_seen",
    )
    extra = 0
    can_delete = False
    show_change_link = True

    @admin.display(description="prekeys")
    def prekeys(self, device):
        return key_summary(device)

    @admin.display(description="platform")
    def platform(self, device):
        return push_platform(device)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("aci", "has_number", "device_count", "banned", "created")
    list_filter = ("banned",)
    search_fields = ("=aci",)  # exact ACI only: no browsing by number fragments
    fields = readonly_fields = (
        "aci",
        "pni",
        "has_number",
        "discoverable_by_phone_number",
        "unrestricted_unidentified_access",
        "registration_lock",
        "banned",
        "created",
    )
    inlines = [DeviceInline]
    show_full_result_count = False
    actions = ["ban", "unban", "reset_rate_limits", "delete_accounts"]

    @admin.action(description="Ban the selected accounts (refuse their requests, close their sockets)", permissions=["ban"])
    def ban(self, request, queryset):
        self._set_banned(request, queryset, True)

    @admin.action(description="Unban the selected accounts", permissions=["ban"])
    def unban(self, request, queryset):
        self._set_banned(request, queryset, False)

    def _set_banned(self, request, queryset, banned: bool):
        accounts = list(queryset.filter(banned=not banned))
        for account in accounts:
            services.set_account_banned(account=account, banned=banned)
            record_operator_action(request.user, "ban account" if banned else "unban account", account.aci)
        self.message_user(request, f"{'Banned' if banned else 'Unbanned'} {len(accounts)} account(s).")

    @admin.action(description="Reset the selected accounts' rate limits (full buckets)", permissions=["ban"])
    def reset_rate_limits(self, request, queryset):
        for account in queryset:
            emptied = ratelimit.reset_account(account)
            record_operator_action(request.user, "reset rate limits", account.aci, f"{emptied} bucket(s)")
        self.message_user(request, f"Reset the rate limits of {len(queryset)} account(s).")

    def has_ban_permission(self, request):
        return request.user.has_perm("accounts.ban_account")

    @admin.action(description="Delete the selected accounts and everything they own", permissions=["delete"])
    def delete_accounts(self, request, queryset):
        for account in queryset:
            services.delete_account(account=account)
            record_operator_action(request.user, "delete account", account.aci)
        self.message_user(request, f"Deleted {len(queryset)} account(s).")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # it would bypass services.delete_account
        return actions

    def delete_model(self, request, obj):
        services.delete_account(account=obj)
        record_operator_action(request.user, "delete account", obj.aci)

    def get_queryset(self, request):
        from django.db.models import Count

        return super().get_queryset(request).annotate(_device_count=Count("devices"))

    @admin.display(description="devices", ordering="_device_count")
    def device_count(self, account):
        return account._device_count

    @admin.display(boolean=True, description="number")
    def has_number(self, account):
        return account.number is not None

    @admin.display(boolean=True)
    def registration_lock(self, account):
        return account.has_registration_lock

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "device_id", "user_agent", "created", "last_seen")
    list_filter = ("device_id", "fetches_messages")
    search_fields = ("=account__aci",)
    fields = readonly_fields = (
        "account",
        "device_id",
        "registration_id",
        "pni_registration_id",
        "fetches_messages",
        "capabilities",
        "user_agent",
        "push",
        "prekeys",
        "created",
        "last_seen",
    )
    list_select_related = ("account",)

    @admin.display(description="push")
    def push(self, device):
        """The platform and the day its token was set (never the token)."""
        platform = push_platform(device)
        if platform == "socket only" or device.push_token_set_at is None:
            return platform
        return f"{platform}, token set on {device.push_token_set_at:%Y-%m-%d}"

    @admin.display(description="prekeys")
    def prekeys(self, device):
        return key_summary(device)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
