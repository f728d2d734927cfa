"""Getting data in: import runs (file uploads, connector syncs, pushes)."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from imports.choices import RunKind, RunStatus

__all__ = ["ImportRun"]


class ImportRun(models.Model):
    """One run of records into crmhub, tracked like a job: status, progress, counts, log.

    Counts are of source records: ``created`` = new (source, source_key) pairs, ``invalid``
    = rows stored with at least one value flagged, ``errors`` = rows that could not be
    stored (e.g. no key).
    """

    source = models.ForeignKey("crmhub.Source", verbose_name=_("source"), on_delete=models.PROTECT, related_name="runs")
    kind = models.CharField(_("kind"), max_length=16, choices=RunKind.choices, default=RunKind.FILE)
    status = models.CharField(_("status"), max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING, db_index=True)
    dry_run = models.BooleanField(_("dry run"), default=False)
    file = models.FileField(_("file"), upload_to="imports/%Y/%m/", blank=True)
    original_filename = models.CharField(_("file name"), max_length=255, blank=True)
    options = models.JSONField(_("options"), default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("created by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    rows_total = models.PositiveIntegerField(_("rows in total"), null=True, blank=True)
    rows_done = models.PositiveIntegerField(_("rows done"), default=0)
    created = models.PositiveIntegerField(_("created"), default=0)
    updated = models.PositiveIntegerField(_("updated"), default=0)
    unchanged = models.PositiveIntegerField(_("unchanged"), default=0)
    invalid = models.PositiveIntegerField(_("invalid"), default=0)
    errors = models.PositiveIntegerField(_("errors"), default=0)
    message = models.TextField(_("message"), blank=True)
    log = models.JSONField(_("log"), default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("import run")
        verbose_name_plural = _("import runs")

    def __str__(self) -> str:
        return f"#{self.pk} {self.source_id} {self.status}"

    def get_absolute_url(self) -> str:
        return reverse("imports:run-detail", args=[self.pk])

    @property
    def is_terminal(self) -> bool:
        return self.status in RunStatus.terminal()

    @property
    def progress_percent(self) -> int:
        if not self.rows_total:
            return 100 if self.is_terminal else 0
        return min(100, int(100 * self.rows_done / self.rows_total))

    def summary(self) -> dict:
        """The JSON object the command line and the API report."""
        return {
            "run": self.pk,
            "status": self.status,
            "rows": self.rows_done,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "invalid": self.invalid,
            "errors": self.errors,
        }
