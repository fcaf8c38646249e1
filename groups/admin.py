"""Operator view of groups: ids, versions and counts, never the encrypted content or who is in a
group. A moderator deletes an abusive group (recorded in the operator log)."""

from django.contrib import admin

from groups import services
from groups.models import Group
from signalserver.models import record_operator_action
from signalserver.wire import b64decode, b64decode_url


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ("group", "version", "member_count", "pending_count", "requesting_count", "banned_count", "created", "changed")
    fields = readonly_fields = list_display
    search_fields = ("group_id",)  # an exact group id in base64, see get_search_results
    show_full_result_count = False
    actions = ["delete_groups"]

    @admin.display(description="group id")
    def group(self, group):
        return str(group)

    def get_search_results(self, request, queryset, search_term):
        """Only an exact group id (base64, either alphabet): no browsing by fragments."""
        term = search_term.strip()
        if not term:
            return queryset, False
        for decode in (b64decode_url, b64decode):
            try:
                return queryset.filter(group_id=decode(term)), False
            except ValueError:
                continue
        return queryset.none(), False

    @admin.action(description="Delete the selected groups and their history", permissions=["moderate"])
    def delete_groups(self, request, queryset):
        groups = list(queryset)
        for group in groups:
            self._delete(request, group)
        self.message_user(request, f"Deleted {len(groups)} group(s).")

    def delete_model(self, request, obj):
        self._delete(request, obj)

    def _delete(self, request, group):
        record_operator_action(request.user, "delete group", group, f"version {group.version}, {group.member_count} member(s)")
        services.delete_group(group=group)

    def has_moderate_permission(self, request):
        return request.user.has_perm("groups.moderate_group")

    def has_delete_permission(self, request, obj=None):
        return self.has_moderate_permission(request)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # it would bypass services.delete_group and the log
        return actions

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
