"""Browser views of data quality and alerts: thin, reading through crmhub.quality."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts.policy import policy_for, present_values
from crmhub import quality
from crmhub.choices import AlertStatus
from crmhub.models import AlertEvent, AlertRule, Source

FLAG_STATES = ("flagged", "missing", "present")


def quality_viewer(view):  # noqa: ANN001, ANN201
    @wraps(view)
    @login_required
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:  # noqa: ANN002, ANN003
        if not quality.quality_may_view(request.user):
            raise PermissionDenied(_("Data quality is for administrators, stewards and auditors."))
        return view(request, *args, **kwargs)

    return wrapper


@require_GET
@quality_viewer
def dashboard(request: HttpRequest) -> HttpResponse:
    from crmhub.privacy import user_may_handle_privacy

    return render(
        request,
        "quality/dashboard.html",
        {
            "d": quality.quality_dashboard(),
            "may_privacy": user_may_handle_privacy(request.user),
        },
    )


@require_GET
@quality_viewer
def chart_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse(quality.quality_chart_data())


@require_POST
@quality_viewer
def run_now(request: HttpRequest) -> HttpResponse:
    quality.quality_run_request()
    messages.success(request, _("A metrics run is queued; the dashboard shows it when it is done."))
    return redirect("quality:dashboard")


@require_GET
@quality_viewer
def records(request: HttpRequest) -> HttpResponse:
    source_code = request.GET.get("source", "")
    field = request.GET.get("field", "")
    state = request.GET.get("state", "")
    policy = policy_for(request.user)
    if field and field not in policy.fields:
        return HttpResponseBadRequest(_("Unknown field."))
    if state and state not in FLAG_STATES:
        return HttpResponseBadRequest(_("Unknown state: use flagged, missing or present."))
    qs = quality.quality_records(source_code=source_code, field=field, state=state)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    shown_fields = [field] if field else None
    rows = []
    for record in page:
        values = present_values(request.user, record.normalized)
        if shown_fields:
            values = {k: v for k, v in values.items() if k in shown_fields}
        labelled = [(policy.fields[k].label if k in policy.fields else k, k, v) for k, v in values.items()]
        rows.append({"record": record, "values": labelled, "flags": sorted(record.flags)})
    return render(
        request,
        "quality/records.html",
        {
            "page": page,
            "rows": rows,
            "source_code": source_code,
            "field": field,
            "state": state,
            "sources": Source.objects.order_by("code"),
            "fields": list(policy.fields.values()),
            "states": FLAG_STATES,
        },
    )


@require_GET
@quality_viewer
def export_xlsx(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(
        quality.quality_report_xlsx(),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
    response["Content-Disposition"] = 'attachment; filename="crmhub-quality.xlsx"'
    return response


@require_GET
@quality_viewer
def alerts(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", AlertStatus.OPEN)
    events = AlertEvent.objects.select_related("rule").order_by("-opened_at", "-id")
    if status in AlertStatus.values:
        events = events.filter(status=status)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "quality/alerts.html",
        {
            "page": page,
            "rules": AlertRule.objects.select_related("source"),
            "status": status,
            "statuses": AlertStatus.choices,
        },
    )
