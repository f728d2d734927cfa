"""Reads of the imports app; each takes the acting user."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from imports.models import ImportRun, MappingTemplate
from imports.services import user_may_import


def import_run_list(*, user) -> QuerySet[ImportRun]:  # noqa: ANN001
    """Runs are visible to the roles that may import."""
    qs = ImportRun.objects.select_related("source", "created_by").order_by("-created_at", "-id")
    return qs if user_may_import(user) else qs.none()


def import_run_get(*, user, pk) -> ImportRun:  # noqa: ANN001
    try:
        pk = int(pk)
    except (TypeError, ValueError) as exc:
        raise Http404("No such import run") from exc
    run = import_run_list(user=user).filter(pk=pk).first()
    if run is None:
        raise Http404("No such import run")
    return run


def mapping_templates(*, user, source_id: int | None = None) -> QuerySet[MappingTemplate]:  # noqa: ANN001
    qs = MappingTemplate.objects.select_related("source").order_by("source__code", "name")
    if source_id:
        qs = qs.filter(source_id=source_id)
    return qs if user_may_import(user) else qs.none()
