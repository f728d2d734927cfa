"""Access control: field-level policies per role, and the security audit log."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

__all__ = ["ApiToken", "AuditEvent", "ExportRequest", "FieldPolicy", "PolicyStamp", "UserProfile"]


class AccessLevel(models.IntegerChoices):
    HIDDEN = 0, _("Hidden")
    MASKED = 1, _("Masked")
    VISIBLE = 2, _("Visible")
    EDITABLE = 3, _("Editable")


class FieldPolicy(models.Model):
    """What one role may do with one data-dictionary field; overrides the default matrix."""

    role = models.CharField(
        _("role"),
        max_length=64,
        help_text=_("A group name: admin, steward, sales, support, auditor, api_client or your own."),
    )
    field = models.ForeignKey(
        "crmhub.FieldDefinition", verbose_name=_("field"), on_delete=models.CASCADE, related_name="policies"
    )
    access = models.PositiveSmallIntegerField(_("access"), choices=AccessLevel.choices)

    history = HistoricalRecords()

    class Meta:
        ordering = ["role", "field__sort_order"]
        verbose_name = _("field policy")
        verbose_name_plural = _("field policies")
        constraints = [models.UniqueConstraint(fields=["role", "field"], name="accounts_fieldpolicy_unique_role_field")]

    def __str__(self) -> str:
        return f"{self.role} / {self.field_id}: {self.get_access_display()}"


class PolicyStamp(models.Model):
    """One row whose token changes with everything a field policy is built from (field
    definitions, field policies, groups, group membership). Every process keeps the policies it
    built under the token it read, so a change applies at once in every worker (accounts.policy)."""

    token = models.CharField(max_length=32)

    class Meta:
        verbose_name = _("policy stamp")
        verbose_name_plural = _("policy stamps")

    def __str__(self) -> str:
        return self.token


class AuditEventKind(models.TextChoices):
    LOGIN = "login", _("Login")
    LOGIN_FAILED = "login_failed", _("Failed login")
    LOGOUT = "logout", _("Logout")
    REVEAL = "reveal", _("Value revealed")
    EXPORT = "export", _("Export")
    POLICY_CHANGE = "policy_change", _("Policy changed")
    PERMISSION_CHANGE = "permission_change", _("Permission changed")
    TOKEN_USE = "token_use", _("API token used")
    TOKEN_CREATED = "token_created", _("API token created")
    TOKEN_REVOKED = "token_revoked", _("API token revoked")
    EXPORT_REQUESTED = "export_requested", _("Export requested")
    EXPORT_DECIDED = "export_decided", _("Export approved or rejected")
    REVEAL_DENIED = "reveal_denied", _("Reveal refused")
    EXPORT_EXPIRED = "export_expired", _("Export file removed")
    # Data-subject requests (crmhub.privacy): what was asked, and each step of an erasure.
    PRIVACY_SEARCH = "privacy_search", _("Data-subject search")
    PRIVACY_EXPORT = "privacy_export", _("Data-subject report")
    PRIVACY_ERASE_STARTED = "privacy_erase_started", _("Erasure started")
    PRIVACY_ERASE_CUSTOMERS = "privacy_erase_customers", _("Erasure: customers")
    PRIVACY_ERASE_RECORDS = "privacy_erase_records", _("Erasure: source records")
    PRIVACY_ERASE_HISTORY = "privacy_erase_history", _("Erasure: history")
    PRIVACY_ERASE_COPIES = "privacy_erase_copies", _("Erasure: copies")
    PRIVACY_ERASE_DONE = "privacy_erase_done", _("Erasure finished")
    PRIVACY_ANONYMIZE_STARTED = "privacy_anonymize_started", _("Anonymization started")
    PRIVACY_ANONYMIZE_CUSTOMERS = "privacy_anonymize_customers", _("Anonymization: customers")
    PRIVACY_ANONYMIZE_RECORDS = "privacy_anonymize_records", _("Anonymization: source records")
    PRIVACY_ANONYMIZE_HISTORY = "privacy_anonymize_history", _("Anonymization: history")
    PRIVACY_ANONYMIZE_COPIES = "privacy_anonymize_copies", _("Anonymization: copies")
    PRIVACY_ANONYMIZE_DONE = "privacy_anonymize_done", _("Anonymization finished")


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):  # noqa: ANN003, ANN201
        raise PermissionError("the audit log is append-only")

    def delete(self):  # noqa: ANN201
        raise PermissionError("the audit log is append-only")


class AuditEvent(models.Model):
    """One security-relevant event. Append-only through the application."""

    at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    kind = models.CharField(_("event"), max_length=32, choices=AuditEventKind.choices, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    username = models.CharField(_("username"), max_length=150, blank=True)
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    object_type = models.CharField(_("object type"), max_length=64, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    field = models.CharField(_("field"), max_length=64, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit log")
        permissions = [("reveal_values", _("Can reveal masked values, stating a reason"))]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.kind} {self.username}"

    def save(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        if self.pk is not None:
            raise PermissionError("the audit log is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise PermissionError("the audit log is append-only")


class UserProfile(models.Model):
    """Where a user works: sales users see the customers of their team and region."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="crmhub_profile"
    )
    team = models.CharField(_("team"), max_length=64, blank=True)
    region = models.CharField(_("region"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("user profile")
        verbose_name_plural = _("user profiles")

    def __str__(self) -> str:
        return f"{self.user} ({self.team or '-'}/{self.region or '-'})"


class ApiTokenScope(models.TextChoices):
    READ = "read", _("Read")
    WRITE = "write", _("Write")
    PUSH = "push", _("Push records")


class ApiTokenQuerySet(models.QuerySet):
    def usable(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    """A named API key of one user, limited to scopes and (optionally) to some sources.

    Only a SHA-256 hash of the key is stored: the key itself is shown once, when created.
    Revoking keeps the row, so that the audit log can still name the token.
    """

    name = models.CharField(_("name"), max_length=100)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="api_tokens"
    )
    key_prefix = models.CharField(_("key prefix"), max_length=12, db_index=True, editable=False)
    key_hash = models.CharField(_("key hash"), max_length=64, unique=True, editable=False)
    scopes = models.JSONField(_("scopes"), default=list)
    sources = models.ManyToManyField(
        "crmhub.Source",
        verbose_name=_("allowed sources"),
        blank=True,
        related_name="+",
        help_text=_("Empty: every source the user may reach."),
    )
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class ExportStatus(models.TextChoices):
    REQUESTED = "requested", _("Awaiting approval")
    APPROVED = "approved", _("Approved, being generated")
    REJECTED = "rejected", _("Rejected")
    READY = "ready", _("Ready to download")
    DOWNLOADED = "downloaded", _("Downloaded")
    FAILED = "failed", _("Failed")
    EXPIRED = "expired", _("Expired, file removed")


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    XLSX = "xlsx", "XLSX"


class ExportRequest(models.Model):
    """An export of a customer list too large to hand out without an admin's approval.

    requested -> approved (a Celery task writes the file, masked per the requester's
    policy) -> ready -> downloaded; or requested -> rejected.
    """

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("requested by"), on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(_("requested"), default=timezone.now)
    format = models.CharField(_("format"), max_length=8, choices=ExportFormat.choices, default=ExportFormat.CSV)
    filters = models.JSONField(_("filter"), default=dict, blank=True)
    row_count = models.PositiveIntegerField(_("rows"), default=0)
    reason = models.TextField(_("reason"), blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=ExportStatus.choices, default=ExportStatus.REQUESTED, db_index=True
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("decided by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    file = models.FileField(_("file"), upload_to="exports/%Y/%m/", blank=True)
    generated_at = models.DateTimeField(_("generated"), null=True, blank=True)
    downloaded_at = models.DateTimeField(_("downloaded"), null=True, blank=True)
    message = models.TextField(_("message"), blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        verbose_name = _("export request")
        verbose_name_plural = _("export requests")
        permissions = [
            ("export_customers", _("Can export customer lists")),
            ("approve_exports", _("Can approve large exports")),
        ]

    def __str__(self) -> str:
        return f"export #{self.pk} ({self.status})"
