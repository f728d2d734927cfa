from __future__ import annotations

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from crmhub.models import FieldDefinition, Source, WorkerHeartbeat


@admin.register(Source)
class SourceAdmin(SimpleHistoryAdmin):
    list_display = ["code", "name", "kind", "trust_rank", "is_active", "updated_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name"]


@admin.register(FieldDefinition)
class FieldDefinitionAdmin(SimpleHistoryAdmin):
    list_display = ["name", "label_zh", "label_en", "field_type", "sensitivity", "mask_style", "is_identity_key",
                    "is_core", "is_active", "sort_order"]
    list_filter = ["field_type", "sensitivity", "is_identity_key", "is_core", "is_active"]
    list_editable = ["sensitivity", "mask_style", "sort_order"]
    search_fields = ["name", "label_zh", "label_en"]
    readonly_fields = ["is_core"]

    def get_readonly_fields(self, request, obj=None):  # noqa: ANN001, ANN201
        # A core field's name and type are columns of Customer: they cannot change.
        if obj is not None and obj.is_core:
            return ["name", "field_type", "is_core"]
        return ["is_core"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["hostname", "pid", "started_at", "last_seen"]
