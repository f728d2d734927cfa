from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class RunStatus(models.TextChoices):
    PENDING = "pending", _("Queued")
    RUNNING = "running", _("Running")
    PREVIEWED = "previewed", _("Dry run ready")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    ROLLED_BACK = "rolled_back", _("Rolled back")

    @classmethod
    def terminal(cls) -> set[str]:
        return {cls.PREVIEWED, cls.COMPLETED, cls.FAILED, cls.CANCELLED, cls.ROLLED_BACK}


class RunKind(models.TextChoices):
    FILE = "file", _("File upload")
    CONNECTOR = "connector", _("Connector sync")
    PUSH = "push", _("Push API")


class ChangeAction(models.TextChoices):
    CREATED = "created", _("Created")
    UPDATED = "updated", _("Updated")


class IssueKind(models.TextChoices):
    ERROR = "error", _("Not stored")
    INVALID = "invalid", _("Stored with flagged values")
