"""Duplicate detection: match rules, runs, candidate pairs and reversible merges."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from dedup.choices import (
    CandidateStatus,
    MergeOrigin,
    MergeStatus,
    OverridePolicy,
    PartStage,
    RunStatus,
    SurvivorshipStrategy,
    SurvivorshipTieBreak,
)

__all__ = ["DedupRun", "DedupRunPart", "FieldOverride", "MatchCandidate", "MatchRule", "Merge", "SurvivorshipRule"]


def _default_blocking_keys() -> list[str]:
    from dedup.engine import DEFAULT_CONFIG

    return list(DEFAULT_CONFIG["blocking_keys"])


def _default_comparisons() -> dict:
    from dedup.engine import DEFAULT_CONFIG

    return dict(DEFAULT_CONFIG["comparisons"])


class MatchRule(models.Model):
    """An admin-configurable way of finding duplicates: which blocking keys make candidate
    pairs, which comparisons (with their level thresholds) score them, and the score above
    which a pair is linked automatically and the band sent to review."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    is_default = models.BooleanField(
        _("default"), default=False, help_text=_("Used by runs that name no rule and by real-time matching.")
    )
    blocking_keys = models.JSONField(_("blocking keys"), default=_default_blocking_keys)
    comparisons = models.JSONField(
        _("comparisons"),
        default=_default_comparisons,
        help_text=_('Comparison name → level thresholds, e.g. {"name": {"high": 0.92, "low": 0.8}}.'),
    )
    auto_threshold = models.FloatField(
        _("auto-link threshold"), default=0.9999, help_text=_("Match probability at or above which records merge.")
    )
    review_threshold = models.FloatField(
        _("review threshold"), default=0.98, help_text=_("Match probability from which a pair goes to review.")
    )
    max_block_size = models.PositiveIntegerField(_("largest block"), default=10)
    max_cluster_size = models.PositiveIntegerField(_("largest cluster"), default=20)
    learn_parameters = models.BooleanField(
        _("learn m/u from the data"), default=True, help_text=_("Otherwise the comparisons' default m values are used.")
    )
    parameters = models.JSONField(
        _("learnt parameters"),
        default=dict,
        blank=True,
        editable=False,
        help_text=_("m/u/prior of the last completed run; real-time matching uses them."),
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["-is_default", "name"]
        verbose_name = _("match rule")
        verbose_name_plural = _("match rules")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from dedup.engine import RuleConfigError

        try:
            self.config()
        except (RuleConfigError, TypeError, ValueError) as exc:
            raise ValidationError(str(exc)) from exc

    def config_dict(self) -> dict:
        return {
            "blocking_keys": self.blocking_keys,
            "comparisons": self.comparisons,
            "auto_threshold": self.auto_threshold,
            "review_threshold": self.review_threshold,
            "max_block": self.max_block_size,
            "max_cluster": self.max_cluster_size,
            "learn": self.learn_parameters,
        }

    def config(self):  # noqa: ANN201
        from dedup.engine import RuleConfig

        return RuleConfig.from_dict(self.config_dict())


class DedupRun(models.Model):
    """One batch run of a rule over the golden records: a job row with status, progress,
    counts and the m/u parameters it learnt."""

    rule = models.ForeignKey(MatchRule, verbose_name=_("rule"), on_delete=models.PROTECT, related_name="runs")
    source_code = models.CharField(_("source"), max_length=64, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    parts_total = models.PositiveIntegerField(_("parts"), default=0)
    parts_done = models.PositiveIntegerField(_("parts done"), default=0)
    records = models.PositiveIntegerField(_("records"), default=0)
    pairs = models.PositiveIntegerField(_("pairs compared"), default=0)
    candidates = models.PositiveIntegerField(_("candidates"), default=0)
    auto_merged = models.PositiveIntegerField(_("merged automatically"), default=0)
    for_review = models.PositiveIntegerField(_("for review"), default=0)
    clusters = models.PositiveIntegerField(_("clusters"), default=0)
    parameters = models.JSONField(_("learnt parameters"), default=dict, blank=True)
    stats = models.JSONField(_("statistics"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("started by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("dedup run")
        verbose_name_plural = _("dedup runs")

    def __str__(self) -> str:
        return f"dedup_run:{self.pk}"

    @property
    def seconds(self) -> float:
        if self.started_at and self.finished_at:
            return round((self.finished_at - self.started_at).total_seconds(), 2)
        return 0.0

    @property
    def progress(self) -> float:
        return round(self.parts_done / self.parts_total, 3) if self.parts_total else 0.0


class DedupRunPart(models.Model):
    """A slice of a run's candidate pairs with the features they need, for any worker to
    score. Payloads hold personal values, so they are deleted when the run ends."""

    run = models.ForeignKey(DedupRun, verbose_name=_("run"), on_delete=models.CASCADE, related_name="parts")
    number = models.PositiveIntegerField(_("number"))
    pairs = models.PositiveIntegerField(_("pairs"), default=0)
    payload = models.BinaryField(_("payload"), blank=True, default=b"")
    result = models.BinaryField(_("result"), blank=True, default=b"")
    done = models.BooleanField(_("done"), default=False)
    stage = models.CharField(_("stage"), max_length=8, choices=PartStage.choices, default=PartStage.SCORE)

    class Meta:
        ordering = ["run", "number"]
        verbose_name = _("dedup run part")
        verbose_name_plural = _("dedup run parts")
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="dedup_deduprunpart_unique_number")]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.number}"


class MatchCandidate(models.Model):
    """Two golden records that may be the same person, with the matcher's score and
    per-field explanation. ``left_id < right_id`` keeps each pair unique."""

    # No index of its own: the unique (left, right) pair index serves lookups by left.
    left = models.ForeignKey(
        "crmhub.Customer", verbose_name=_("left"), on_delete=models.CASCADE, related_name="+", db_index=False
    )
    right = models.ForeignKey("crmhub.Customer", verbose_name=_("right"), on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(_("score"))
    rule = models.CharField(_("rule"), max_length=100, blank=True)
    explanation = models.JSONField(_("explanation"), default=list, blank=True)
    reason = models.CharField(_("reason"), max_length=32, blank=True)
    run = models.ForeignKey(
        DedupRun, verbose_name=_("run"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        _("status"), max_length=16, choices=CandidateStatus.choices, default=CandidateStatus.PENDING
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("assignee"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("decided by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    note = models.TextField(_("note"), blank=True)
    merge = models.ForeignKey(
        "dedup.Merge", verbose_name=_("merge"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    # The review cluster of a pending candidate (dedup.clusters): its component's key (smallest
    # candidate id), best score and oldest proposal, so the queue pages through an index.
    cluster = models.BigIntegerField(_("cluster"), null=True, blank=True, editable=False)
    cluster_score = models.FloatField(_("cluster's best score"), null=True, blank=True, editable=False)
    cluster_created = models.DateTimeField(_("cluster's oldest proposal"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-score", "id"]
        verbose_name = _("match candidate")
        verbose_name_plural = _("match candidates")
        indexes = [
            # The review queue's pages (best first / lowest first; oldest / newest) and a cluster's
            # members; partial: decided candidates stay out of them.
            models.Index(
                models.F("cluster_score").desc(),
                "cluster",
                name="dedup_mc_queue_score",
                condition=models.Q(status="pending"),
            ),
            models.Index(
                fields=["cluster_created", "cluster"], name="dedup_mc_queue_age", condition=models.Q(status="pending")
            ),
            models.Index(fields=["cluster"], name="dedup_mc_queue_cluster", condition=models.Q(status="pending")),
            # A batch run inserts up to ~0.5M candidates at 1M records and every index costs
            # on each: status without the LIKE twin ``db_index`` adds, the user columns
            # (empty on nearly every row) indexed only where set.
            models.Index(fields=["status"], name="dedup_mc_status"),
            models.Index(fields=["assignee"], name="dedup_mc_assignee", condition=models.Q(assignee__isnull=False)),
            models.Index(
                fields=["decided_by"], name="dedup_mc_decided_by", condition=models.Q(decided_by__isnull=False)
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["left", "right"], name="dedup_matchcandidate_unique_pair"),
            models.CheckConstraint(condition=models.Q(left__lt=models.F("right")), name="dedup_matchcandidate_ordered"),
        ]

    def __str__(self) -> str:
        return f"{self.left_id}~{self.right_id} ({self.score:.2f})"


class Merge(models.Model):
    """Golden records merged into a survivor, with a snapshot of every row the merge
    touched (customers' values and versions, which source records and interactions belonged
    to whom) so that it can be undone exactly."""

    survivor = models.ForeignKey(
        "crmhub.Customer", verbose_name=_("survivor"), on_delete=models.PROTECT, related_name="+"
    )
    merged_ids = models.JSONField(_("merged customers"), default=list)
    values = models.JSONField(_("chosen values"), default=dict, blank=True)
    before = models.JSONField(_("before"), default=dict)
    after = models.JSONField(_("after"), default=dict)
    origin = models.CharField(_("origin"), max_length=16, choices=MergeOrigin.choices, default=MergeOrigin.STEWARD)
    status = models.CharField(_("status"), max_length=16, choices=MergeStatus.choices, default=MergeStatus.DONE)
    run = models.ForeignKey(
        DedupRun, verbose_name=_("run"), null=True, blank=True, on_delete=models.SET_NULL, related_name="merges"
    )
    note = models.TextField(_("note"), blank=True)
    acting_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("merged by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("merged"), auto_now_add=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("undone by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    undone_at = models.DateTimeField(_("undone"), null=True, blank=True)
    undo_report = models.JSONField(_("undo report"), default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("merge")
        verbose_name_plural = _("merges")

    def __str__(self) -> str:
        return f"merge:{self.pk} → {self.survivor_id}"


class SurvivorshipRule(models.Model):
    """How the golden record chooses one field's value among the values of its linked source
    records (``dedup.survivorship``), and how long a steward's override of it holds."""

    field = models.CharField(_("field"), max_length=64, unique=True)
    strategy = models.CharField(
        _("strategy"), max_length=16, choices=SurvivorshipStrategy.choices, default=SurvivorshipStrategy.MOST_RECENT
    )
    trust_order = models.JSONField(
        _("source trust order"),
        default=list,
        blank=True,
        help_text=_("Source codes, most trusted first; sources not listed follow by their trust rank."),
    )
    tie_break = models.CharField(
        _("tie-break"), max_length=16, choices=SurvivorshipTieBreak.choices, default=SurvivorshipTieBreak.MOST_RECENT
    )
    override_policy = models.CharField(
        _("steward overrides"), max_length=16, choices=OverridePolicy.choices, default=OverridePolicy.UNTIL_NEWER
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("updated by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["field"]
        verbose_name = _("survivorship rule")
        verbose_name_plural = _("survivorship rules")

    def __str__(self) -> str:
        return f"{self.field}: {self.strategy}"


class FieldOverride(models.Model):
    """A value a person chose for one field of a golden record (a manual edit, or a merge
    choice that differs from the proposal). Recomputing leaves the field alone while the
    override holds; ``basis`` fingerprints the source values it was chosen against, so that
    only a source value that changed (or arrived) afterwards supersedes it."""

    customer = models.ForeignKey(
        "crmhub.Customer",
        verbose_name=_("customer"),
        on_delete=models.CASCADE,
        related_name="overrides",
        # Bulk deletes of customers (import rollback, erasure) use plain SQL; they must not trip on this.
        db_constraint=False,
    )
    field = models.CharField(_("field"), max_length=64)
    value = models.JSONField(_("value"), null=True, blank=True)  # secret fields sealed (accounts.crypto)
    basis = models.JSONField(_("source values seen"), default=dict, blank=True)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("set by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    set_at = models.DateTimeField(_("set"))
    channel = models.CharField(_("channel"), max_length=16, blank=True)
    ref = models.CharField(_("reference"), max_length=200, blank=True)

    class Meta:
        ordering = ["customer", "field"]
        verbose_name = _("field override")
        verbose_name_plural = _("field overrides")
        constraints = [
            models.UniqueConstraint(fields=["customer", "field"], name="dedup_fieldoverride_unique_field"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}.{self.field}"
