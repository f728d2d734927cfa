"""Celery tasks of duplicate detection: thin wrappers around the services.

A run is split so that any worker can take any piece: ``dedup_run_start`` prepares the
parts (blocking and learning), one ``dedup_run_score_part`` per part scores its pairs, and
the part that completes the set hands over to one ``dedup_run_finish``, which clusters and
cuts the clusters into merge parts; one ``dedup_run_merge_part`` per chunk of clusters
merges them (clusters are disjoint, so the workers do not contend), and the merge part that
completes the set hands over to one ``dedup_run_complete`` (the review queue). Each hand-over
is a compare-and-swap on the run row, not a Celery chord, so it needs no result backend and
survives a worker being killed mid-way (tasks are acked late; a merge part is merged and
marked done in one transaction).
"""

from __future__ import annotations

from celery import shared_task
from django.db import transaction
from django.db.models import F


@shared_task(name="dedup.run_start", acks_late=True)
def dedup_run_start(run_id: int) -> None:
    from dedup import services
    from dedup.models import DedupRun, DedupRunPart

    if not services.dedup_run_claim(run_id):
        return
    run = DedupRun.objects.select_related("rule").get(pk=run_id)
    try:
        services.dedup_run_prepare(run=run)
    except Exception as exc:
        services.dedup_run_fail(run_id, exc)
        raise
    part_ids = list(DedupRunPart.objects.filter(run=run).order_by("number").values_list("pk", flat=True))
    if not part_ids:
        _hand_over(run_id)
        return
    for part_id in part_ids:
        transaction.on_commit(lambda part_id=part_id: dedup_run_score_part.delay(part_id))


@shared_task(name="dedup.run_score_part", acks_late=True)
def dedup_run_score_part(part_id: int) -> None:
    from dedup import services
    from dedup.choices import RunStatus
    from dedup.models import DedupRunPart

    part = DedupRunPart.objects.select_related("run", "run__rule").filter(pk=part_id).first()
    if part is None or part.run.status != RunStatus.RUNNING:
        return
    try:
        services.dedup_run_score_part(part=part)
    except Exception as exc:
        services.dedup_run_fail(part.run_id, exc)
        raise
    _hand_over(part.run_id)


def _advance_when_parts_done(run_id: int, *, status: str, to: str, then) -> None:  # noqa: ANN001
    """Move the run from ``status`` to ``to`` once every part is done, and queue ``then``:
    a compare-and-swap on the run row, so exactly one of the parts finishing last wins."""
    from dedup.models import DedupRun

    claimed = DedupRun.objects.filter(pk=run_id, status=status, parts_done__gte=F("parts_total")).update(status=to)
    if claimed:
        transaction.on_commit(lambda: then.delay(run_id))


def _hand_over(run_id: int) -> None:
    from dedup.choices import RunStatus

    _advance_when_parts_done(run_id, status=RunStatus.RUNNING, to=RunStatus.CLUSTERING, then=dedup_run_finish)


@shared_task(name="dedup.run_finish", acks_late=True)
def dedup_run_finish(run_id: int) -> None:
    from dedup import services
    from dedup.choices import RunStatus
    from dedup.models import DedupRun

    run = DedupRun.objects.select_related("rule", "created_by").filter(pk=run_id, status=RunStatus.CLUSTERING).first()
    if run is None:
        return
    try:
        part_ids = services.dedup_run_merge_parts_create(run=run)
    except Exception as exc:
        services.dedup_run_fail(run_id, exc)
        raise
    if not part_ids:
        _hand_over_merged(run_id)
        return
    for part_id in part_ids:
        transaction.on_commit(lambda part_id=part_id: dedup_run_merge_part.delay(part_id))


@shared_task(name="dedup.run_merge_part", acks_late=True)
def dedup_run_merge_part(part_id: int) -> None:
    from dedup import services
    from dedup.choices import PartStage, RunStatus
    from dedup.models import DedupRunPart

    part = (
        DedupRunPart.objects.select_related("run", "run__rule", "run__created_by")
        .filter(pk=part_id, stage=PartStage.MERGE)
        .first()
    )
    if part is None or part.run.status != RunStatus.MERGING:
        return
    try:
        services.dedup_run_merge_part(part=part)
    except Exception as exc:
        services.dedup_run_fail(part.run_id, exc)
        raise
    _hand_over_merged(part.run_id)


def _hand_over_merged(run_id: int) -> None:
    from dedup.choices import RunStatus

    _advance_when_parts_done(run_id, status=RunStatus.MERGING, to=RunStatus.WRITING, then=dedup_run_complete)


@shared_task(name="dedup.run_complete", acks_late=True)
def dedup_run_complete(run_id: int) -> None:
    from dedup import services
    from dedup.choices import RunStatus
    from dedup.models import DedupRun

    run = DedupRun.objects.select_related("rule", "created_by").filter(pk=run_id, status=RunStatus.WRITING).first()
    if run is None:
        return
    try:
        services.dedup_run_complete_merged(run=run)
    except Exception as exc:
        services.dedup_run_fail(run_id, exc)
        raise
