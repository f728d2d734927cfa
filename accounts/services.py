"""Write operations of access control. Each writes its AuditEvent in the same transaction
(the Zulip ``do_*`` pattern): a policy change, a reveal or an export without its audit row
cannot happen."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import (
    AccessLevel,
    ApiToken,
    ApiTokenScope,
    AuditEvent,
    AuditEventKind,
    ExportRequest,
    ExportStatus,
    FieldPolicy,
)
from accounts.policy import DEFAULT_MATRIX, NO_ROLE, Access, field_access, policy_for
from accounts.roles import Role, user_roles

#
# Audit log
#


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    # Behind a proxy, SECURE_PROXY_SSL_HEADER is set; the address is the proxy's unless the
    # deployment rewrites REMOTE_ADDR (documented in docs/security.md).
    return request.META.get("REMOTE_ADDR") or None


def audit_event_record(
    *,
    kind: str,
    user=None,  # noqa: ANN001
    username: str = "",
    request: HttpRequest | None = None,
    object_type: str = "",
    object_id: Any = "",
    field: str = "",
    reason: str = "",
    details: dict | None = None,
) -> AuditEvent:
    """Append one event. Never pass personal values in ``details`` or ``reason`` texts
    written by the system: names of fields and ids only."""
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    event = AuditEvent(
        kind=kind,
        user=user,
        username=(username or (user.get_username() if user is not None else ""))[:150],
        ip_address=client_ip(request),
        object_type=object_type[:64],
        object_id=str(object_id)[:64],
        field=field[:64],
        reason=reason,
        details=details or {},
    )
    event.save()
    return event


#
# Field policies (the matrix editor)
#


def default_access(role: str, sensitivity: str) -> Access:
    return DEFAULT_MATRIX.get(role, NO_ROLE)[sensitivity]


@transaction.atomic
def field_policy_set(*, actor, changes: dict[tuple[str, str], int | None], request: HttpRequest | None = None) -> int:  # noqa: ANN001
    """Apply matrix cells ``(role, field name) -> access`` (None: back to the default).

    Only admins may. Each changed cell writes one POLICY_CHANGE event with before and after;
    unchanged cells write nothing. Returns the number of changed cells.
    """
    from django.contrib.auth.models import Group

    from crmhub.models import FieldDefinition

    if Role.ADMIN not in user_roles(actor):
        raise PermissionDenied(_("Only administrators may change field policies."))
    fields = {f.name: f for f in FieldDefinition.objects.filter(name__in={name for _role, name in changes})}
    known_roles = set(Group.objects.values_list("name", flat=True))
    existing = {
        (p.role, p.field.name): p
        for p in FieldPolicy.objects.select_related("field").filter(field__in=fields.values(), role__in=known_roles)
    }
    changed = 0
    for (role, name), access in sorted(changes.items()):
        if role not in known_roles:
            raise ValidationError(_("Unknown role %(role)s.") % {"role": role})
        if name not in fields:
            raise ValidationError(_("Unknown field %(field)s.") % {"field": name})
        if access is not None and access not in AccessLevel.values:
            raise ValidationError(_("Unknown access level %(access)s.") % {"access": access})
        field = fields[name]
        current = existing.get((role, name))
        before = current.access if current is not None else None
        if before == access:
            continue
        if access is None:
            current.delete()
        elif current is None:
            policy = FieldPolicy(role=role, field=field, access=access)
            policy.full_clean()
            policy.save()
        else:
            current.access = access
            current.save(update_fields=["access"])
        default = default_access(role, field.sensitivity)
        audit_event_record(
            kind=AuditEventKind.POLICY_CHANGE,
            user=actor,
            request=request,
            object_type="field_policy",
            object_id=f"{role}:{name}",
            field=name,
            details={
                "role": role,
                "before": {
                    "override": _level_name(before),
                    "effective": _level_name(before if before is not None else default),
                },
                "after": {
                    "override": _level_name(access),
                    "effective": _level_name(access if access is not None else default),
                },
            },
        )
        changed += 1
    return changed


def _level_name(level: int | None) -> str | None:
    return None if level is None else Access(level).name.lower()


def field_policy_matrix() -> dict[str, Any]:
    """Rows of the matrix editor: every data-dictionary field (custom ones included) and, per
    role, the override (or None) and the default it falls back to."""
    from django.contrib.auth.models import Group

    from crmhub.models import FieldDefinition

    roles = list(Group.objects.order_by("name").values_list("name", flat=True))
    order = {r: i for i, r in enumerate(Role.values)}
    roles.sort(key=lambda r: (order.get(r, len(order)), r))
    overrides = {(p.role, p.field_id): p.access for p in FieldPolicy.objects.all()}
    rows = []
    for field in FieldDefinition.objects.filter(is_active=True).order_by("sort_order", "name"):
        cells = [
            {
                "role": role,
                "override": overrides.get((role, field.pk)),
                "default": default_access(role, field.sensitivity),
            }
            for role in roles
        ]
        rows.append({"field": field, "cells": cells})
    return {"roles": roles, "rows": rows}


#
# Reveal
#


class RevealLimitExceeded(PermissionDenied):
    pass


def customer_value_reveal(*, user, customer, field_name: str, reason: str, request: HttpRequest | None = None) -> Any:  # noqa: ANN001
    """The plain value of one masked field, for a user allowed to reveal, with a reason.

    Logged as REVEAL (user, customer, field, reason; never the value) and limited to
    CRMHUB_REVEAL_LIMIT_PER_HOUR reveals per user per hour. A refused attempt is logged
    too (REVEAL_DENIED, with why), after the refused transaction has rolled back.
    """
    try:
        return _customer_value_reveal(
            user=user, customer=customer, field_name=field_name, reason=reason, request=request
        )
    except PermissionDenied as exc:
        audit_event_record(
            kind=AuditEventKind.REVEAL_DENIED,
            user=user,
            request=request,
            object_type="customer",
            object_id=customer.pk,
            field=field_name[:64],
            reason=(reason or "").strip()[:500],
            details={"why": "limit" if isinstance(exc, RevealLimitExceeded) else "permission"},
        )
        raise


@transaction.atomic
def _customer_value_reveal(*, user, customer, field_name: str, reason: str, request: HttpRequest | None) -> Any:  # noqa: ANN001
    reason = (reason or "").strip()
    if len(reason) < 3:
        raise ValidationError(_("State a reason for revealing this value (at least 3 characters)."))
    if len(reason) > 500:
        raise ValidationError(_("The reason is too long (500 characters at most)."))
    policy = policy_for(user)
    if field_name not in policy.fields:
        raise ValidationError(_("Unknown field %(field)s.") % {"field": field_name})
    access = policy(field_name)
    if access == Access.HIDDEN:
        raise PermissionDenied(_("You may not see this field."))
    if access >= Access.VISIBLE:
        return customer.get_value(field_name)  # nothing to reveal, nothing to log
    if not user.has_perm("accounts.reveal_values"):
        raise PermissionDenied(_("Your role may not reveal masked values."))
    # Serialise the reveals of one user so that two parallel requests cannot both pass the limit.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    limit = settings.CRMHUB_REVEAL_LIMIT_PER_HOUR
    since = timezone.now() - timedelta(hours=1)
    if AuditEvent.objects.filter(kind=AuditEventKind.REVEAL, user=user, at__gte=since).count() >= limit:
        raise RevealLimitExceeded(
            _("You have revealed %(limit)d values in the last hour, the most allowed. Try again later.")
            % {"limit": limit}
        )
    audit_event_record(
        kind=AuditEventKind.REVEAL,
        user=user,
        request=request,
        object_type="customer",
        object_id=customer.pk,
        field=field_name,
        reason=reason,
    )
    return customer.get_value(field_name)


#
# Object permissions (django-guardian)
#


@transaction.atomic
def object_permission_grant(*, actor, grantee, obj, action: str, request: HttpRequest | None = None) -> None:  # noqa: ANN001
    """Give ``grantee`` (a user or a group) ``action`` (view/change/delete) on ``obj``."""
    _object_permission_change(actor=actor, grantee=grantee, obj=obj, action=action, grant=True, request=request)


@transaction.atomic
def object_permission_revoke(*, actor, grantee, obj, action: str, request: HttpRequest | None = None) -> None:  # noqa: ANN001
    _object_permission_change(actor=actor, grantee=grantee, obj=obj, action=action, grant=False, request=request)


def _object_permission_change(*, actor, grantee, obj, action: str, grant: bool, request) -> None:  # noqa: ANN001
    from django.contrib.auth.models import Group
    from guardian.shortcuts import assign_perm, remove_perm

    from accounts.permissions import permission_codename

    if Role.ADMIN not in user_roles(actor):
        raise PermissionDenied(_("Only administrators may grant or revoke permissions."))
    perm = permission_codename(type(obj), action)
    (assign_perm if grant else remove_perm)(perm, grantee, obj)
    kind = "group" if isinstance(grantee, Group) else "user"
    audit_event_record(
        kind=AuditEventKind.PERMISSION_CHANGE,
        user=actor,
        request=request,
        object_type=obj._meta.label_lower,
        object_id=obj.pk,
        details={"action": "grant" if grant else "revoke", "permission": perm, kind: str(grantee)},
    )


#
# API tokens
#

TOKEN_PREFIX = "crm_"


def hash_token_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def api_token_create(
    *,
    user,  # noqa: ANN001
    name: str,
    scopes: Iterable[str],
    sources: Iterable = (),
    expires_at=None,  # noqa: ANN001
    actor=None,  # noqa: ANN001
    request: HttpRequest | None = None,
) -> tuple[ApiToken, str]:
    """A new token and its key (shown once; only its hash is kept)."""
    scopes = sorted(set(scopes))
    unknown = set(scopes) - set(ApiTokenScope.values)
    if not scopes or unknown:
        raise ValidationError(
            _("Choose at least one scope among %(scopes)s.") % {"scopes": ", ".join(ApiTokenScope.values)}
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError(_("The expiry must be in the future."))
    key = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name.strip()[:100] or "token",
        user=user,
        key_prefix=key[:12],
        key_hash=hash_token_key(key),
        scopes=scopes,
        expires_at=expires_at,
        created_by=actor or user,
    )
    token.full_clean()
    token.save()
    token.sources.set(list(sources))
    audit_event_record(
        kind=AuditEventKind.TOKEN_CREATED,
        user=actor or user,
        request=request,
        object_type="api_token",
        object_id=token.pk,
        details={
            "name": token.name,
            "owner": user.get_username(),
            "scopes": scopes,
            "sources": sorted(s.code for s in token.sources.all()),
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return token, key


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor, request: HttpRequest | None = None) -> bool:  # noqa: ANN001
    """Revoke ``token``; False if it was already revoked."""
    if Role.ADMIN not in user_roles(actor) and token.user_id != actor.pk:
        raise PermissionDenied(_("You may only revoke your own tokens."))
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if updated:
        audit_event_record(
            kind=AuditEventKind.TOKEN_REVOKED,
            user=actor,
            request=request,
            object_type="api_token",
            object_id=token.pk,
            details={"name": token.name, "owner": token.user.get_username()},
        )
    return bool(updated)


def api_token_for_password_exchange(*, user, request: HttpRequest | None = None) -> str:  # noqa: ANN001
    """POST /api/v1/auth/token/: a new key with the scopes of the user's roles, expiring after
    CRMHUB_API_TOKEN_DAYS days."""
    roles = user_roles(user)
    scopes = [ApiTokenScope.READ]
    if roles & {Role.ADMIN, Role.STEWARD, Role.API_CLIENT}:
        scopes += [ApiTokenScope.WRITE, ApiTokenScope.PUSH]
    expires = timezone.now() + timedelta(days=settings.CRMHUB_API_TOKEN_DAYS)
    _token, key = api_token_create(
        user=user, name="password exchange", scopes=scopes, expires_at=expires, request=request
    )
    return key


TOKEN_USE_LOG_INTERVAL = timedelta(minutes=10)


def api_token_touch(*, token: ApiToken, request: HttpRequest | None = None) -> None:
    """Note a token's use: last_used_at, and a TOKEN_USE event at most once per token per
    10 minutes (a busy client would otherwise flood the log)."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < TOKEN_USE_LOG_INTERVAL:
        return
    # Compare-and-swap: of parallel requests, only one logs.
    claimed = ApiToken.objects.filter(pk=token.pk, last_used_at=token.last_used_at).update(last_used_at=now)
    token.last_used_at = now
    if claimed:
        audit_event_record(
            kind=AuditEventKind.TOKEN_USE,
            user=token.user,
            request=request,
            object_type="api_token",
            object_id=token.pk,
            details={"name": token.name, "path": request.path[:200] if request else ""},
        )


def legacy_token_touch(*, token, request: HttpRequest | None = None) -> None:  # noqa: ANN001
    """The same throttled TOKEN_USE event for a legacy (rest_framework.authtoken) token."""
    since = timezone.now() - TOKEN_USE_LOG_INTERVAL
    recent = AuditEvent.objects.filter(
        kind=AuditEventKind.TOKEN_USE, object_type="legacy_token", object_id=str(token.user_id), at__gte=since
    ).exists()
    if not recent:
        audit_event_record(
            kind=AuditEventKind.TOKEN_USE,
            user=token.user,
            request=request,
            object_type="legacy_token",
            object_id=token.user_id,
            details={"path": request.path[:200] if request else ""},
        )


#
# Exports
#


def user_may_export(user) -> bool:  # noqa: ANN001
    return user.is_authenticated and user.has_perm("accounts.export_customers")


@transaction.atomic
def export_request_create(
    *,
    user,
    fmt: str,
    filters: dict,
    row_count: int,
    reason: str = "",  # noqa: ANN001
    request: HttpRequest | None = None,
) -> ExportRequest:
    export = ExportRequest(requested_by=user, format=fmt, filters=filters, row_count=row_count, reason=reason[:1000])
    export.full_clean()
    export.save()
    audit_event_record(
        kind=AuditEventKind.EXPORT_REQUESTED,
        user=user,
        request=request,
        object_type="export_request",
        object_id=export.pk,
        details={"filter": filters, "rows": row_count, "format": fmt},
    )
    return export


@transaction.atomic
def export_request_decide(
    *,
    export: ExportRequest,
    actor,
    approve: bool,
    message: str = "",  # noqa: ANN001
    request: HttpRequest | None = None,
) -> ExportRequest:
    """An admin approves (the file is then generated by a worker) or rejects a request."""
    from accounts.tasks import export_request_generate_task

    if not actor.has_perm("accounts.approve_exports"):
        raise PermissionDenied(_("Only administrators may approve exports."))
    if export.requested_by_id == actor.pk and not actor.is_superuser:
        raise PermissionDenied(_("You cannot approve your own export."))
    new_status = ExportStatus.APPROVED if approve else ExportStatus.REJECTED
    claimed = ExportRequest.objects.filter(pk=export.pk, status=ExportStatus.REQUESTED).update(
        status=new_status, decided_by=actor, decided_at=timezone.now(), message=message[:1000]
    )
    if not claimed:
        raise ValidationError(_("This export was already decided."))
    export.refresh_from_db()
    audit_event_record(
        kind=AuditEventKind.EXPORT_DECIDED,
        user=actor,
        request=request,
        object_type="export_request",
        object_id=export.pk,
        details={
            "decision": new_status,
            "requested_by": export.requested_by.get_username(),
            "rows": export.row_count,
            "filter": export.filters,
        },
    )
    if approve:
        transaction.on_commit(lambda: export_request_generate_task.delay(export.pk))
    return export


def export_request_generate(*, export_id: int) -> None:
    """Write an approved export's file, masked per the requester's policy (the worker's job)."""
    from django.core.files.base import ContentFile

    from accounts.exports import customer_export_queryset, write_csv_bytes, write_xlsx_bytes

    export = ExportRequest.objects.select_related("requested_by").get(pk=export_id)
    if export.status != ExportStatus.APPROVED:
        return
    user = export.requested_by
    try:
        qs = customer_export_queryset(user=user, filters=export.filters)
        data = (write_xlsx_bytes if export.format == "xlsx" else write_csv_bytes)(user=user, qs=qs)
        export.file.save(f"export-{export.pk}.{export.format}", ContentFile(data), save=False)
        export.status = ExportStatus.READY
        export.generated_at = timezone.now()
        export.save(update_fields=["file", "status", "generated_at"])
    except Exception as exc:  # recorded on the row; the message names no personal value
        export.status = ExportStatus.FAILED
        export.message = f"{type(exc).__name__}: the export could not be written"
        export.save(update_fields=["status", "message"])
        raise


@transaction.atomic
def export_request_download(*, export: ExportRequest, user, request: HttpRequest | None = None) -> bytes:  # noqa: ANN001
    """The file of a ready export, for its requester only; every download is logged."""
    if export.requested_by_id != user.pk:
        raise PermissionDenied(_("Only the person who requested this export may download it."))
    if export.status not in (ExportStatus.READY, ExportStatus.DOWNLOADED):
        raise ValidationError(
            _("This export is not ready (status: %(status)s).") % {"status": export.get_status_display()}
        )
    with export.file.open("rb") as fh:
        data = fh.read()
    ExportRequest.objects.filter(pk=export.pk).update(status=ExportStatus.DOWNLOADED, downloaded_at=timezone.now())
    audit_event_record(
        kind=AuditEventKind.EXPORT,
        user=user,
        request=request,
        object_type="export_request",
        object_id=export.pk,
        details={"filter": export.filters, "rows": export.row_count, "format": export.format, "approved": True},
    )
    return data


def exports_expire(*, generated_before=None, note: str = "") -> int:  # noqa: ANN001
    """Remove the files of exports generated before ``generated_before`` (default: the
    retention period, CRMHUB_EXPORT_RETENTION_HOURS, ago): a file of personal data is not
    kept longer than its requester needs it. The request rows stay, marked expired."""
    cutoff = generated_before or timezone.now() - timedelta(hours=settings.CRMHUB_EXPORT_RETENTION_HOURS)
    expired = 0
    rows = ExportRequest.objects.filter(
        status__in=[ExportStatus.READY, ExportStatus.DOWNLOADED], generated_at__lt=cutoff
    ).exclude(file="")
    for export in rows.iterator():
        export.file.delete(save=False)  # a file already gone is fine: the storage ignores it
        export.status = ExportStatus.EXPIRED
        export.message = note or _("The file was removed after the retention period.")
        export.save(update_fields=["file", "status", "message"])
        audit_event_record(
            kind=AuditEventKind.EXPORT_EXPIRED,
            object_type="export_request",
            object_id=export.pk,
            details={"reason": "privacy request" if note else "retention"},
        )
        expired += 1
    return expired


def export_log(*, user, fmt: str, filters: dict, row_count: int, request: HttpRequest | None = None) -> None:  # noqa: ANN001
    audit_event_record(
        kind=AuditEventKind.EXPORT,
        user=user,
        request=request,
        object_type="customer_list",
        details={"filter": filters, "rows": row_count, "format": fmt},
    )


__all__ = [
    "RevealLimitExceeded",
    "api_token_create",
    "api_token_for_password_exchange",
    "api_token_revoke",
    "api_token_touch",
    "audit_event_record",
    "exports_expire",
    "customer_value_reveal",
    "export_request_create",
    "export_request_decide",
    "export_request_download",
    "export_request_generate",
    "field_access",
    "field_policy_matrix",
    "field_policy_set",
    "object_permission_grant",
    "object_permission_revoke",
]
