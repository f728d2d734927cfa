"""Admin of duplicate detection: match rules are configured here."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from dedup.models import DedupRun, MatchCandidate, MatchRule, Merge


@admin.register(MatchRule)
class MatchRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "is_default", "auto_threshold", "review_threshold", "updated_at"]
    list_filter = ["is_active", "is_default"]
    readonly_fields = ["parameters", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description", "is_active", "is_default"]}),
        (_("Matching"), {"fields": ["blocking_keys", "comparisons", "learn_parameters"]}),
        (_("Decisions"), {"fields": ["auto_threshold", "review_threshold", "max_block_size", "max_cluster_size"]}),
        (_("Learnt"), {"fields": ["parameters", "updated_at"]}),
    ]


@admin.register(DedupRun)
class DedupRunAdmin(admin.ModelAdmin):
    list_display = ["id", "rule", "status", "records", "pairs", "auto_merged", "for_review", "created_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in DedupRun._meta.fields]

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False


@admin.register(MatchCandidate)
class MatchCandidateAdmin(admin.ModelAdmin):
    # Values of the customers are never shown here: only ids, scores and decisions.
    list_display = ["id", "left_id", "right_id", "score", "rule", "status", "decided_at"]
    list_filter = ["status", "rule"]
    fields = ["left_id", "right_id", "score", "rule", "reason", "status", "decided_by", "decided_at", "note"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False


@admin.register(Merge)
class MergeAdmin(admin.ModelAdmin):
    list_display = ["id", "survivor_id", "origin", "status", "acting_user", "created_at", "undone_at"]
    list_filter = ["origin", "status"]
    fields = [
        "survivor_id",
        "merged_ids",
        "origin",
        "status",
        "note",
        "acting_user",
        "created_at",
        "undone_by",
        "undone_at",
        "undo_report",
    ]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False
