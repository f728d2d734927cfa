from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from imports.models import ImportRun


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text=_("CSV/TSV/TXT, XLSX or XLS"))
    source = serializers.RegexField(
        r"^[a-z0-9][a-z0-9_\-]*$", max_length=64, help_text=_("Source code; created on first use")
    )
    template = serializers.CharField(required=False, allow_blank=True, default="")
    key = serializers.CharField(
        required=False, allow_blank=True, default="", help_text=_("Key column(s), comma-separated")
    )
    dry_run = serializers.BooleanField(required=False, default=False)
    sheet = serializers.CharField(required=False, allow_blank=True, default="")
    dayfirst = serializers.BooleanField(required=False, default=False)


class ImportRunSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="code", read_only=True)
    progress = serializers.SerializerMethodField()
    rows = serializers.IntegerField(source="rows_done", read_only=True)

    class Meta:
        model = ImportRun
        fields = [
            "id",
            "source",
            "status",
            "dry_run",
            "original_filename",
            "created_at",
            "started_at",
            "finished_at",
            "rows",
            "rows_total",
            "progress",
            "created",
            "updated",
            "unchanged",
            "invalid",
            "errors",
            "message",
            "preview_of",
        ]
        read_only_fields = fields

    def get_progress(self, run: ImportRun) -> dict:
        return {
            "percent": run.progress_percent,
            "rows_done": run.rows_done,
            "rows_total": run.rows_total,
            "rows_per_second": round(run.rows_per_second, 1),
            "eta_seconds": run.eta_seconds,
        }
