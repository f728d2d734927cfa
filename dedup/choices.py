from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


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
    MERGING = "merging", _("Merging")
    WRITING = "writing", _("Writing candidates")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")

    @classmethod
    def terminal(cls) -> set[str]:
        return {cls.COMPLETED, cls.FAILED}


class PartStage(models.TextChoices):
    """What a run part holds: pairs to score, clusters to merge, or the clustered run's state
    that completing it needs."""

    SCORE = "score", _("Scoring")
    MERGE = "merge", _("Merging")
    STATE = "state", _("Clustered run")


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


# The matcher's comparison and level codes (dedup.comparators) as shown to people. The English
# text stays the code itself; other languages translate it (a context keeps "close", "same"...
# apart from the same words elsewhere). Literal calls, so makemessages finds them.
MATCH_COMPARISON_LABELS = {
    "name": pgettext_lazy("match comparison", "name"),
    "birth_date": pgettext_lazy("match comparison", "birth_date"),
    "mobile": pgettext_lazy("match comparison", "mobile"),
    "id_number": pgettext_lazy("match comparison", "id_number"),
    "email": pgettext_lazy("match comparison", "email"),
    "gender": pgettext_lazy("match comparison", "gender"),
    "location": pgettext_lazy("match comparison", "location"),
    "wechat_unionid": pgettext_lazy("match comparison", "wechat_unionid"),
    "member_no": pgettext_lazy("match comparison", "member_no"),
}
MATCH_LEVEL_LABELS = {
    "exact": pgettext_lazy("match level", "exact"),
    "sound_alike": pgettext_lazy("match level", "sound_alike"),
    "swapped": pgettext_lazy("match level", "swapped"),
    "close": pgettext_lazy("match level", "close"),
    "similar": pgettext_lazy("match level", "similar"),
    "different": pgettext_lazy("match level", "different"),
    "day_month_swapped": pgettext_lazy("match level", "day_month_swapped"),
    "one_part": pgettext_lazy("match level", "one_part"),
    "typo": pgettext_lazy("match level", "typo"),
    "near": pgettext_lazy("match level", "near"),
    "same": pgettext_lazy("match level", "same"),
    "same_address": pgettext_lazy("match level", "same_address"),
    "same_postcode": pgettext_lazy("match level", "same_postcode"),
    "same_city": pgettext_lazy("match level", "same_city"),
    "missing": pgettext_lazy("match level", "missing"),
}
