"""Browser views of access control: thin; the services decide and audit."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services
from accounts.exports import customer_export_queryset, stream_csv, write_xlsx_bytes
from accounts.forms import ApiTokenForm, AuditFilterForm, ExportForm, RevealForm
from accounts.history import present_customer_history
from accounts.models import AccessLevel, ApiToken, ExportRequest, ExportStatus
from accounts.policy import policy_for, value_as_text
from accounts.roles import Role, user_roles
from accounts.selectors import audit_event_list
from crmhub import selectors


def role_required(*roles: str) -> Callable:
    """Only users with one of ``roles`` (403 for the others, login for anonymous)."""

    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:  # noqa: ANN002, ANN003
            if not user_roles(request.user) & set(roles):
                raise PermissionDenied(_("Your role may not open this page."))
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


#
# Field-policy matrix
#


@role_required(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def policy_matrix(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        changes: dict[tuple[str, str], int | None] = {}
        for key, value in request.POST.items():
            if not key.startswith("cell:"):
                continue
            try:
                _prefix, role, field = key.split(":", 2)
                changes[(role, field)] = None if value == "" else int(value)
            except ValueError:
                messages.error(request, _("A cell of the form was malformed; nothing was saved."))
                return redirect("accounts:policy-matrix")
        try:
            changed = services.field_policy_set(actor=request.user, changes=changes, request=request)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, _("%(n)d policy cells changed.") % {"n": changed})
        return redirect("accounts:policy-matrix")
    from crmhub.models import Source

    matrix = services.field_policy_matrix()
    sources = Source.objects.order_by("code").only("code", "name")
    return render(request, "accounts/policy_matrix.html", {**matrix, "levels": AccessLevel.choices, "sources": sources})


#
# Reveal
#


@login_required
@require_POST
def customer_reveal(request: HttpRequest, pk: int) -> HttpResponse:
    customer = selectors.customer_get(user=request.user, pk=pk)
    form = RevealForm(request.POST)
    status, error, value = 200, "", None
    field = request.POST.get("field", "")
    if not form.is_valid():
        status, error = 400, _("State a reason for revealing this value (at least 3 characters).")
    else:
        field = form.cleaned_data["field"]
        try:
            value = services.customer_value_reveal(
                user=request.user,
                customer=customer,
                field_name=field,
                reason=form.cleaned_data["reason"],
                request=request,
            )
        except services.RevealLimitExceeded as exc:
            status, error = 429, str(exc)
        except PermissionDenied as exc:
            status, error = 403, str(exc) or _("You may not reveal this value.")
        except ValidationError as exc:
            status, error = 400, " ".join(exc.messages)
    masked = ""
    if error:
        # Keep showing what the user could already see, next to the reason for the refusal.
        policy = policy_for(request.user)
        if field in policy.fields and policy(field) > 0:
            masked = value_as_text(policy.present(field, customer.get_value(field)))
    context = {"customer": customer, "field": field, "value": value_as_text(value), "error": error, "masked": masked}
    if request.headers.get("HX-Request"):
        # htmx swaps 200 responses only; errors are shown in place as well.
        response = render(request, "accounts/_revealed.html", context)
        if status != 200:
            response["HX-Reswap"] = "innerHTML"
        return response
    return render(request, "accounts/revealed.html", context, status=status)


#
# History
#


@login_required
def customer_history(request: HttpRequest, pk: int) -> HttpResponse:
    customer = selectors.customer_get(user=request.user, pk=pk)
    if customer.pk != pk:
        return redirect("customer-history", pk=customer.pk)
    entries = present_customer_history(request.user, customer)
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    from crmhub.editing import editable_fields

    context = {
        "customer": customer,
        "page": page,
        # The same one-click restore as the customer page's recent changes, for fields the user may edit.
        "may_restore": set(editable_fields(request.user)),
        "restore_url": reverse("customer-restore", args=[customer.pk]),
    }
    return render(request, "accounts/customer_history.html", context)


#
# Exports
#


@login_required
def customer_export(request: HttpRequest) -> HttpResponse:
    if not services.user_may_export(request.user):
        raise PermissionDenied(_("Your role may not export customer lists."))
    form = ExportForm(request.GET)
    if not form.is_valid():
        messages.error(request, _("The export request was not valid."))
        return redirect("customer-list")
    fmt = form.cleaned_data["format"] or "csv"
    filters = {"q": form.cleaned_data["q"].strip()}
    qs = customer_export_queryset(user=request.user, filters=filters)
    count = qs.count()
    if count > settings.CRMHUB_EXPORT_APPROVAL_ROWS:
        export = services.export_request_create(
            user=request.user,
            fmt=fmt,
            filters=filters,
            row_count=count,
            reason=form.cleaned_data["reason"],
            request=request,
        )
        messages.info(
            request,
            _("%(n)d rows is more than %(max)d: export #%(id)d awaits an administrator's approval.")
            % {"n": count, "max": settings.CRMHUB_EXPORT_APPROVAL_ROWS, "id": export.pk},
        )
        return redirect("accounts:export-requests")
    services.export_log(user=request.user, fmt=fmt, filters=filters, row_count=count, request=request)
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    if fmt == "xlsx":
        response = HttpResponse(
            write_xlsx_bytes(user=request.user, qs=qs),
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
    else:
        response = StreamingHttpResponse(stream_csv(user=request.user, qs=qs), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="customers-{stamp}.{fmt}"'
    return response


@login_required
def export_request_list(request: HttpRequest) -> HttpResponse:
    qs = ExportRequest.objects.select_related("requested_by", "decided_by")
    approver = request.user.has_perm("accounts.approve_exports")
    if not approver:
        qs = qs.filter(requested_by=request.user)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(
        request, "accounts/export_requests.html", {"page": page, "approver": approver, "statuses": ExportStatus}
    )


@login_required
@require_POST
def export_request_decide(request: HttpRequest, pk: int) -> HttpResponse:
    export = get_object_or_404(ExportRequest, pk=pk)
    approve = request.POST.get("decision") == "approve"
    try:
        services.export_request_decide(
            export=export, actor=request.user, approve=approve, message=request.POST.get("message", ""), request=request
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            _("Export #%(id)d approved.") % {"id": pk} if approve else _("Export #%(id)d rejected.") % {"id": pk},
        )
    return redirect("accounts:export-requests")


@login_required
def export_request_download(request: HttpRequest, pk: int) -> HttpResponse:
    export = get_object_or_404(ExportRequest, pk=pk, requested_by=request.user)
    try:
        data = services.export_request_download(export=export, user=request.user, request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("accounts:export-requests")
    import io

    return FileResponse(io.BytesIO(data), as_attachment=True, filename=f"export-{export.pk}.{export.format}")


#
# Audit log
#


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    if not (user_roles(request.user) & {Role.ADMIN, Role.AUDITOR} or request.user.has_perm("accounts.view_auditevent")):
        raise PermissionDenied(_("Only auditors and administrators may read the audit log."))
    form = AuditFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    page = Paginator(audit_event_list(user=request.user, **filters), 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    template = "accounts/_audit_table.html" if request.headers.get("HX-Request") else "accounts/audit_log.html"
    return render(request, template, {"form": form, "page": page, "query": query.urlencode()})


#
# API tokens
#


@role_required(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            token, new_key = services.api_token_create(
                user=data["user"],
                name=data["name"],
                scopes=data["scopes"],
                sources=data["sources"],
                expires_at=data["expires_at"],
                actor=request.user,
                request=request,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(
                request, _("Token “%(name)s” created. Copy the key now: it is not shown again.") % {"name": token.name}
            )
            form = ApiTokenForm()
    tokens = ApiToken.objects.select_related("user").prefetch_related("sources")
    page = Paginator(tokens, 50).get_page(request.GET.get("page"))
    return render(request, "accounts/tokens.html", {"form": form, "page": page, "new_key": new_key})


@role_required(Role.ADMIN)
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk)
    if services.api_token_revoke(token=token, actor=request.user, request=request):
        messages.success(request, _("Token “%(name)s” revoked.") % {"name": token.name})
    return redirect(reverse("accounts:tokens"))


def policy_preview(user) -> dict:  # noqa: ANN001
    return dict(policy_for(user).access)


#
# Object permissions on sources
#


@role_required(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def source_permissions(request: HttpRequest, code: str) -> HttpResponse:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from accounts.forms import ObjectPermissionForm
    from accounts.selectors import object_permission_list
    from crmhub.models import Source

    source = get_object_or_404(Source, code=code)
    form = ObjectPermissionForm(request.POST or None)
    if request.method == "POST":
        if "revoke" in request.POST:
            kind, _sep, rest = request.POST["revoke"].partition(":")
            pk, _sep, action = rest.partition(":")
            if kind not in ("user", "group") or not pk.isdigit() or action not in ("view", "change", "delete"):
                messages.error(request, _("The revoke request was malformed; nothing changed."))
                return redirect("accounts:source-permissions", code=code)
            model = get_user_model() if kind == "user" else Group
            grantee = get_object_or_404(model, pk=pk)
            services.object_permission_revoke(
                actor=request.user, grantee=grantee, obj=source, action=action, request=request
            )
            messages.success(request, _("Permission revoked."))
            return redirect("accounts:source-permissions", code=code)
        if form.is_valid():
            grantee = form.cleaned_data["user"] or form.cleaned_data["group"]
            services.object_permission_grant(
                actor=request.user, grantee=grantee, obj=source, action=form.cleaned_data["action"], request=request
            )
            messages.success(request, _("Permission granted."))
            return redirect("accounts:source-permissions", code=code)
    return render(
        request,
        "accounts/source_permissions.html",
        {"source": source, "form": form, "grants": object_permission_list(obj=source)},
    )
