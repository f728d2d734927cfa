"""Access control: field-level policies per role, and the security audit log."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

__all__ = ["AuditEvent", "FieldPolicy", "UserProfile"]


class AccessLevel(models.IntegerChoices):
    HIDDEN = 0, _("Hidden")
    MASKED = 1, _("Masked")
    VISIBLE = 2, _("Visible")
    EDITABLE = 3, _("Editable")


class FieldPolicy(models.Model):
    """What one role may do with one data-dictionary field; overrides the default matrix."""

    role = models.CharField(
        _("role"), max_length=64, help_text=_("A group name: admin, steward, sales, support, auditor, api_client or your own.")
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
        settings.AUTH_USER_MODEL, verbose_name=_("user"), null=True, blank=True, on_delete=models.SET_NULL,
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
