"""Audit receivers.

Django offers no hook for logins, failed logins and logouts other than its
``user_logged_in`` / ``user_login_failed`` / ``user_logged_out`` signals, and group
membership or group permissions edited in the admin change only through m2m signals. These
receivers therefore do one thing only: append an AuditEvent. They write no other model
and enqueue nothing (see docs/STYLE: signals are otherwise avoided).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed
from django.dispatch import receiver

from accounts.models import AuditEventKind


def _record(**kwargs) -> None:  # noqa: ANN003
    from accounts.services import audit_event_record

    audit_event_record(**kwargs)


@receiver(user_logged_in, dispatch_uid="accounts_audit_login")
def audit_login(sender, request, user, **kwargs) -> None:  # noqa: ANN001, ANN003
    _record(kind=AuditEventKind.LOGIN, user=user, request=request, object_type="user", object_id=user.pk)


@receiver(user_logged_out, dispatch_uid="accounts_audit_logout")
def audit_logout(sender, request, user, **kwargs) -> None:  # noqa: ANN001, ANN003
    if user is not None:
        _record(kind=AuditEventKind.LOGOUT, user=user, request=request, object_type="user", object_id=user.pk)


@receiver(user_login_failed, dispatch_uid="accounts_audit_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs) -> None:  # noqa: ANN001, ANN003
    # Only the username: Django has already cleansed the password out of ``credentials``.
    username = str(credentials.get("username", ""))[:150]
    _record(kind=AuditEventKind.LOGIN_FAILED, username=username, request=request, object_type="user")


def _acting_user():  # noqa: ANN202
    from simple_history.models import HistoricalRecords

    request = getattr(HistoricalRecords.context, "request", None)
    user = getattr(request, "user", None)
    return (user if user is not None and user.is_authenticated else None), request


@receiver(m2m_changed, sender=get_user_model().groups.through, dispatch_uid="accounts_audit_user_groups")
def audit_user_groups(sender, instance, action, reverse, model, pk_set, **kwargs) -> None:  # noqa: ANN001, ANN003
    if action not in ("post_add", "post_remove", "pre_clear") or (action != "pre_clear" and not pk_set):
        return
    actor, request = _acting_user()
    if reverse:  # group.user_set.add(...)
        users = list(get_user_model().objects.filter(pk__in=pk_set or []).values_list("username", flat=True))
        details = {"group": instance.name, "users": users}
        object_type, object_id = "group", instance.pk
    else:
        groups = (
            list(Group.objects.filter(pk__in=pk_set).values_list("name", flat=True))
            if pk_set
            else list(instance.groups.values_list("name", flat=True))
        )
        details = {"user": instance.get_username(), "groups": groups}
        object_type, object_id = "user", instance.pk
    details["action"] = {"post_add": "add", "post_remove": "remove", "pre_clear": "clear"}[action]
    _record(
        kind=AuditEventKind.PERMISSION_CHANGE,
        user=actor,
        request=request,
        object_type=object_type,
        object_id=object_id,
        details=details,
    )


@receiver(m2m_changed, sender=Group.permissions.through, dispatch_uid="accounts_audit_group_permissions")
def audit_group_permissions(sender, instance, action, reverse, model, pk_set, **kwargs) -> None:  # noqa: ANN001, ANN003
    if action not in ("post_add", "post_remove", "pre_clear") or reverse or (action != "pre_clear" and not pk_set):
        return
    from django.contrib.auth.models import Permission

    actor, request = _acting_user()
    perms = Permission.objects.filter(pk__in=pk_set) if pk_set else instance.permissions.all()
    names = sorted(f"{p.content_type.app_label}.{p.codename}" for p in perms.select_related("content_type"))
    _record(
        kind=AuditEventKind.PERMISSION_CHANGE,
        user=actor,
        request=request,
        object_type="group",
        object_id=instance.pk,
        details={
            "group": instance.name,
            "permissions": names,
            "action": {"post_add": "add", "post_remove": "remove", "pre_clear": "clear"}[action],
        },
    )
