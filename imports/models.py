"""Getting data in: import runs (file uploads, connector syncs, pushes)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from accounts.crypto import EncryptedTextField
from imports.choices import ChangeAction, IssueKind, RunKind, RunStatus

__all__ = [
    "Connector",
    "ImportRun",
    "ImportRunChange",
    "ImportRunIssue",
    "MappingTemplate",
    "PushRequest",
    "SourceWebhook",
    "WebhookDelivery",
]


class ImportRun(models.Model):
    """One run of records into crmhub, tracked like a job: status, progress, counts, log.

    Counts are of source records: ``created`` = new (source, source_key) pairs, ``invalid``
    = rows stored with at least one value flagged, ``errors`` = rows that could not be
    stored (e.g. no key).
    """

    source = models.ForeignKey("crmhub.Source", verbose_name=_("source"), on_delete=models.PROTECT, related_name="runs")
    kind = models.CharField(_("kind"), max_length=16, choices=RunKind.choices, default=RunKind.FILE)
    status = models.CharField(
        _("status"), max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING, db_index=True
    )
    dry_run = models.BooleanField(_("dry run"), default=False)
    file = models.FileField(_("file"), upload_to="imports/%Y/%m/", blank=True)
    original_filename = models.CharField(_("file name"), max_length=255, blank=True)
    options = models.JSONField(_("options"), default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
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
    template = models.ForeignKey(
        "imports.MappingTemplate",
        verbose_name=_("mapping template"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
    )
    preview_of = models.ForeignKey(
        "self",
        verbose_name=_("commit of dry run"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="commits",
        help_text=_("The dry run this run commits."),
    )
    cancel_requested = models.BooleanField(_("cancel requested"), default=False)
    samples = models.JSONField(_("dry-run samples"), default=dict, blank=True)
    rolled_back_at = models.DateTimeField(_("rolled back"), null=True, blank=True)
    rolled_back_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("rolled back by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

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

    @property
    def rows_per_second(self) -> float:
        if not self.started_at or not self.rows_done:
            return 0.0
        from django.utils import timezone

        elapsed = ((self.finished_at or timezone.now()) - self.started_at).total_seconds()
        return self.rows_done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> int | None:
        rate = self.rows_per_second
        if self.is_terminal or not rate or not self.rows_total:
            return None
        return max(0, int((self.rows_total - self.rows_done) / rate))

    @property
    def mapping(self) -> dict[str, str]:
        return self.options.get("mapping", {})

    @property
    def can_rollback(self) -> bool:
        return not self.dry_run and self.status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)

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


class MappingTemplate(models.Model):
    """A saved mapping of a file layout to the data dictionary, for one source.

    A later file of the source whose headers give the same ``header_signature`` uses it
    without asking."""

    source = models.ForeignKey(
        "crmhub.Source", verbose_name=_("source"), on_delete=models.CASCADE, related_name="mapping_templates"
    )
    name = models.CharField(_("name"), max_length=100)
    headers = models.JSONField(_("headers"), default=list)
    header_signature = models.CharField(_("header signature"), max_length=64, db_index=True)
    mapping = models.JSONField(_("mapping"), default=dict, help_text=_("Column header → data-dictionary field."))
    key_columns = models.JSONField(_("key columns"), default=list)
    dayfirst = models.BooleanField(_("day first in dates"), default=False, help_text=_("05-01-2024 is 5 January."))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["source", "name"]
        verbose_name = _("mapping template")
        verbose_name_plural = _("mapping templates")
        constraints = [
            models.UniqueConstraint(fields=["source", "name"], name="imports_mappingtemplate_unique_source_name"),
        ]

    def __str__(self) -> str:
        return self.name


class ImportRunChange(models.Model):
    """What a committed run did to one source record, so that the run can be rolled back:
    created (the record, and the golden customer made for it) or updated (the values before)."""

    run = models.ForeignKey(ImportRun, verbose_name=_("run"), on_delete=models.CASCADE, related_name="changes")
    action = models.CharField(_("action"), max_length=8, choices=ChangeAction.choices)
    source_record = models.ForeignKey(
        "crmhub.SourceRecord",
        verbose_name=_("source record"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    customer = models.ForeignKey(
        "crmhub.Customer",
        verbose_name=_("customer created"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    before = models.JSONField(_("values before"), null=True, blank=True)

    class Meta:
        ordering = ["run", "id"]
        verbose_name = _("import run change")
        verbose_name_plural = _("import run changes")

    def __str__(self) -> str:
        return f"{self.run_id} {self.action} {self.source_record_id}"


class ImportRunIssue(models.Model):
    """A row of a run that could not be stored (error) or was stored with flagged values
    (invalid): the original row (secret values sealed) and the reasons; the error report."""

    run = models.ForeignKey(ImportRun, verbose_name=_("run"), on_delete=models.CASCADE, related_name="issues")
    row_number = models.PositiveIntegerField(_("row"))
    kind = models.CharField(_("kind"), max_length=8, choices=IssueKind.choices)
    source_key = models.CharField(_("source key"), max_length=255, blank=True)
    raw = models.JSONField(_("original row"), default=dict)
    reasons = models.JSONField(_("reasons"), default=dict, help_text=_("Column (or '' for the row) → reason."))

    class Meta:
        ordering = ["run", "row_number"]
        verbose_name = _("import run issue")
        verbose_name_plural = _("import run issues")

    def __str__(self) -> str:
        return f"{self.run_id} row {self.row_number}"


#
# Connectors
#


class Connector(models.Model):
    """A pull connector (SQL database, REST endpoint) feeding one source through the import pipeline.

    ``config`` holds the kind's non-secret settings; ``secret`` (encrypted at rest) holds the
    credentials: the SQL URL, or the REST auth header value. ``cursor`` is the incremental
    position saved in the same transaction as the page written before it moved.
    """

    source = models.ForeignKey(
        "crmhub.Source", verbose_name=_("source"), on_delete=models.PROTECT, related_name="connectors"
    )
    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=16)
    config = models.JSONField(_("settings"), default=dict, blank=True)
    secret = EncryptedTextField(_("credentials"), blank=True)
    mapping = models.JSONField(_("mapping"), default=dict, blank=True, help_text=_("Column → data-dictionary field."))
    cursor = models.JSONField(_("cursor"), null=True, blank=True)
    is_enabled = models.BooleanField(_("enabled"), default=True)
    paused_reason = models.CharField(_("paused because"), max_length=300, blank=True)
    max_failures = models.PositiveSmallIntegerField(
        _("pause after failures"), default=3, help_text=_("Consecutive failed syncs before the connector is paused.")
    )
    consecutive_failures = models.PositiveSmallIntegerField(_("consecutive failures"), default=0)
    last_success_at = models.DateTimeField(_("last success"), null=True, blank=True)
    last_error_at = models.DateTimeField(_("last error"), null=True, blank=True)
    last_error = models.TextField(_("last error message"), blank=True)
    last_rows = models.PositiveIntegerField(_("rows in last sync"), null=True, blank=True)
    last_run = models.ForeignKey(
        ImportRun, verbose_name=_("last run"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    schedule = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        verbose_name=_("schedule"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="crmhub_connector",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("connector")
        verbose_name_plural = _("connectors")

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("imports:connector-detail", args=[self.pk])

    @property
    def lag_seconds(self) -> int | None:
        """Seconds since the data was last brought up to date (the last successful sync)."""
        if self.last_success_at is None:
            return None
        from django.utils import timezone

        return max(0, int((timezone.now() - self.last_success_at).total_seconds()))


class PushRequest(models.Model):
    """A push request's Idempotency-Key: the request's hash and the response given, so that a
    retried request gets the same answer and never writes twice."""

    source = models.ForeignKey("crmhub.Source", verbose_name=_("source"), on_delete=models.CASCADE, related_name="+")
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("client"), on_delete=models.CASCADE, related_name="+"
    )
    key = models.CharField(_("idempotency key"), max_length=200)
    request_hash = models.CharField(_("request hash"), max_length=64)
    response_status = models.PositiveSmallIntegerField(_("response status"), default=200)
    response = models.JSONField(_("response"), default=dict)
    run = models.ForeignKey(
        ImportRun, verbose_name=_("run"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("received"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("push request")
        verbose_name_plural = _("push requests")
        constraints = [
            models.UniqueConstraint(fields=["client", "source", "key"], name="imports_pushrequest_unique_client_key"),
        ]

    def __str__(self) -> str:
        return self.key


class SourceWebhook(models.Model):
    """The shared secret a source's webhook deliveries are signed with (HMAC-SHA256)."""

    source = models.OneToOneField(
        "crmhub.Source", verbose_name=_("source"), on_delete=models.CASCADE, related_name="webhook"
    )
    secret = EncryptedTextField(_("secret"))
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("source webhook")
        verbose_name_plural = _("source webhooks")

    def __str__(self) -> str:
        return str(self.source_id)


class WebhookDelivery(models.Model):
    """A signature already accepted, so that a replayed delivery is refused."""

    source = models.ForeignKey("crmhub.Source", verbose_name=_("source"), on_delete=models.CASCADE, related_name="+")
    signature = models.CharField(_("signature"), max_length=64)
    received_at = models.DateTimeField(_("received"), auto_now_add=True)
    run = models.ForeignKey(
        ImportRun, verbose_name=_("run"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.UniqueConstraint(fields=["source", "signature"], name="imports_webhookdelivery_unique_signature"),
        ]

    def __str__(self) -> str:
        return self.signature
