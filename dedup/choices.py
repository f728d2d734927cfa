from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class CandidateStatus(models.TextChoices):
    PENDING = "pending", _("Waiting for review")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Not the same person")
    AUTO_MERGED = "auto_merged", _("Merged automatically")
    SUPERSEDED = "superseded", _("Superseded")


class RunStatus(models.TextChoices):
    PENDING = "pending", _("Queued")
    RUNNING = "running", _("Scoring")
    CLUSTERING = "clustering", _("Clustering and merging")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")

    @classmethod
    def terminal(cls) -> set[str]:
        return {cls.COMPLETED, cls.FAILED}


class MergeStatus(models.TextChoices):
    DONE = "done", _("Merged")
    UNDONE = "undone", _("Undone")


class MergeOrigin(models.TextChoices):
    STEWARD = "steward", _("Steward decision")
    AUTO = "auto", _("Automatic link")
    REALTIME = "realtime", _("Real-time match")


class SurvivorshipStrategy(models.TextChoices):
    SOURCE_TRUST = "source_trust", _("Most trusted source")
    MOST_RECENT = "most_recent", _("Most recently updated")
    MOST_COMPLETE = "most_complete", _("Most complete record")
    MOST_FREQUENT = "most_frequent", _("Most frequent value")
    LONGEST = "longest", _("Longest value")


class SurvivorshipTieBreak(models.TextChoices):
    MOST_RECENT = "most_recent", _("Most recently updated")
    SOURCE_TRUST = "source_trust", _("Most trusted source")
    OLDEST = "oldest", _("First seen")


class OverridePolicy(models.TextChoices):
    UNTIL_NEWER = "until_newer", _("Hold until a newer source value arrives")
    ALWAYS = "always", _("Always hold")
