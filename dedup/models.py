"""Duplicate detection: candidate pairs of golden records waiting for a decision."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from dedup.choices import CandidateStatus

__all__ = ["MatchCandidate"]


class MatchCandidate(models.Model):
    """Two golden records that may be the same person, with the matcher's score and
    per-field explanation. ``left_id < right_id`` keeps each pair unique."""

    left = models.ForeignKey("crmhub.Customer", verbose_name=_("left"), on_delete=models.CASCADE, related_name="+")
    right = models.ForeignKey("crmhub.Customer", verbose_name=_("right"), on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(_("score"))
    rule = models.CharField(_("rule"), max_length=100, blank=True)
    explanation = models.JSONField(_("explanation"), default=list, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=CandidateStatus.choices, default=CandidateStatus.PENDING, db_index=True
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("assignee"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("decided by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["-score", "id"]
        verbose_name = _("match candidate")
        verbose_name_plural = _("match candidates")
        constraints = [
            models.UniqueConstraint(fields=["left", "right"], name="dedup_matchcandidate_unique_pair"),
            models.CheckConstraint(condition=models.Q(left__lt=models.F("right")), name="dedup_matchcandidate_ordered"),
        ]

    def __str__(self) -> str:
        return f"{self.left_id}~{self.right_id} ({self.score:.2f})"
