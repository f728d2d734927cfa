from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class CandidateStatus(models.TextChoices):
    PENDING = "pending", _("Waiting for review")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Not the same person")
    AUTO_MERGED = "auto_merged", _("Merged automatically")
    SUPERSEDED = "superseded", _("Superseded")
