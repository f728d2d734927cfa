"""Admin of access control: read-only views of what the application writes.

Field policies are edited on the policy matrix page (which logs each change), tokens on the
token page (which shows a new key once), and the audit log is append-only: here nothing can
be added, changed or deleted. Customer and SourceRecord are deliberately not registered in
the admin (it would show raw personal values and bypass masking; see accounts.channels).
"""

from __future__ import annotations

from django.contrib import admin

from accounts.models import ApiToken, AuditEvent, ExportRequest, FieldPolicy, UserProfile


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "kind", "username", "ip_address", "object_type", "object_id", "field"]
    list_filter = ["kind"]
    search_fields = ["username", "object_id"]
    date_hierarchy = "at"

    def get_actions(self, request):  # noqa: ANN001, ANN201
        return {}  # no "delete selected"


@admin.register(FieldPolicy)
class FieldPolicyAdmin(ReadOnlyAdmin):
    list_display = ["role", "field", "access"]
    list_filter = ["role", "access"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["name", "user", "key_prefix", "scopes", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["revoked_at"]
    exclude = ["key_hash"]


@admin.register(ExportRequest)
class ExportRequestAdmin(ReadOnlyAdmin):
    list_display = ["pk", "requested_by", "requested_at", "format", "row_count", "status", "decided_by"]
    list_filter = ["status"]
    exclude = ["file"]


@admin.register(UserProfile)
class UserProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "region"]
    search_fields = ["user__username", "team", "region"]
