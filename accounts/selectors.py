"""Reads of access control."""

from __future__ import annotations

from datetime import date, datetime, time

from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import AuditEvent


def audit_event_list(
    *,
    user,
    kind: str = "",
    date_from: date | None = None,
    date_to: date | None = None,  # noqa: ANN001
    object_type: str = "",
    object_id: str = "",
    username: str = "",
) -> QuerySet[AuditEvent]:
    """Audit events filtered by kind, user (username), date range (inclusive days) and object."""
    qs = AuditEvent.objects.select_related("user").order_by("-at", "-id")
    if kind:
        qs = qs.filter(kind=kind)
    username = (username or "").strip()
    if username:
        qs = qs.filter(Q(username__iexact=username) | Q(user__username__iexact=username))
    tz = timezone.get_current_timezone()
    if date_from:
        qs = qs.filter(at__gte=datetime.combine(date_from, time.min, tzinfo=tz))
    if date_to:
        qs = qs.filter(at__lte=datetime.combine(date_to, time.max, tzinfo=tz))
    if object_type:
        qs = qs.filter(object_type=object_type)
    if object_id:
        qs = qs.filter(object_id=object_id)
    return qs


def object_permission_list(*, obj) -> list[dict]:  # noqa: ANN001
    """Who holds which object permission on ``obj``: ``[{"kind", "grantee", "action"}]``."""
    from guardian.shortcuts import get_groups_with_perms, get_users_with_perms

    suffix = f"_{obj._meta.model_name}"
    rows = []
    for user, perms in get_users_with_perms(
        obj, attach_perms=True, with_superusers=False, with_group_users=False
    ).items():
        rows += [{"kind": "user", "grantee": user, "action": p.removesuffix(suffix)} for p in sorted(perms)]
    for group, perms in get_groups_with_perms(obj, attach_perms=True).items():
        rows += [{"kind": "group", "grantee": group, "action": p.removesuffix(suffix)} for p in sorted(perms)]
    return rows
