"""Browser views of connectors: the monitoring list, create/edit, test connection, run now,
pause/resume, schedule, and webhook secrets. Thin: parse, call a service, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from imports.choices import RunKind
from imports.connectors import push, selectors, services
from imports.connectors.forms import ConnectorForm, ScheduleForm, WebhookForm
from imports.models import ImportRun


def _require_manager(request: HttpRequest) -> None:
    if not services.user_may_manage_connectors(request.user):
        raise PermissionDenied(_("Connectors need the admin or steward role."))


@login_required
def connector_list(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    connectors = list(selectors.connector_list(user=request.user))
    rows = [
        {"c": c, "schedule": services.schedule_describe(c), "credentials": services.connector_masked_secret(c)}
        for c in connectors
    ]
    return render(
        request,
        "imports/connector_list.html",
        {
            "rows": rows,
            "alerts": selectors.open_alerts(user=request.user)[:50],
            "webhook_form": WebhookForm(),
        },
    )


@login_required
def connector_create(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    form = ConnectorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            connector = services.connector_create(
                source=data["source"],
                name=data["name"],
                kind=data["kind"],
                config=form.config(),
                secret=data["secret"],
                mapping=form.mapping_dict(),
                max_failures=data["max_failures"],
                user=request.user,
            )
        except services.ConnectorRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("Connector %(name)s created.") % {"name": connector.name})
            return redirect(connector)
    return render(request, "imports/connector_form.html", {"form": form})


@login_required
def connector_edit(request: HttpRequest, pk: int) -> HttpResponse:
    _require_manager(request)
    connector = selectors.connector_get(user=request.user, pk=pk)
    form = ConnectorForm(request.POST or None, initial=ConnectorForm.initial_for(connector), editing=True)
    if request.method == "POST" and form.is_valid():
        try:
            services.connector_update(
                connector=connector,
                config=form.config(),
                secret=form.cleaned_data["secret"],
                mapping=form.mapping_dict(),
                max_failures=form.cleaned_data["max_failures"],
            )
        except services.ConnectorRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("Connector saved."))
            return redirect(connector)
    return render(request, "imports/connector_form.html", {"form": form, "connector": connector})


@login_required
def connector_detail(request: HttpRequest, pk: int) -> HttpResponse:
    _require_manager(request)
    connector = selectors.connector_get(user=request.user, pk=pk)
    runs = ImportRun.objects.filter(kind=RunKind.CONNECTOR, options__connector=connector.pk).order_by("-id")[:20]
    task = connector.schedule
    schedule_form = ScheduleForm(
        initial={
            "every_minutes": task.interval.every if task and task.interval_id else None,
            "cron": services.schedule_describe(connector)[5:] if task and task.crontab_id else "",
        }
    )
    return render(
        request,
        "imports/connector_detail.html",
        {
            "connector": connector,
            "runs": runs,
            "credentials": services.connector_masked_secret(connector),
            "schedule": services.schedule_describe(connector),
            "schedule_form": schedule_form,
            "alerts": selectors.open_alerts(user=request.user).filter(subject=f"connector:{connector.pk}"),
        },
    )


@login_required
def connector_test(request: HttpRequest, pk: int) -> HttpResponse:
    _require_manager(request)
    connector = selectors.connector_get(user=request.user, pk=pk)
    result = services.connector_test(connector=connector, user=request.user)
    template = (
        "imports/connector_test.html" if request.headers.get("HX-Request") else "imports/connector_test_page.html"
    )
    return render(request, template, {"connector": connector, "result": result})


@login_required
@require_POST
def connector_sync(request: HttpRequest, pk: int) -> HttpResponse:
    _require_manager(request)
    connector = selectors.connector_get(user=request.user, pk=pk)
    try:
        run = services.connector_sync_request(connector=connector, user=request.user)
    except services.ConnectorRefused as exc:
        messages.error(request, str(exc))
        return redirect(connector)
    messages.success(request, _("Queued sync run #%(id)s.") % {"id": run.pk})
    return redirect(run)


@login_required
@require_POST
def connector_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    _require_manager(request)
    connector = selectors.connector_get(user=request.user, pk=pk)
    connector = services.connector_set_enabled(connector=connector, enabled=not connector.is_enabled)
    messages.success(request, _("Connector resumed.") if connector.is_enabled else _("Connector paused."))
    return redirect(connector)


@login_required
@require_POST
def connector_reset(request: HttpRequest, pk: int) -> HttpResponse:
    """Forget the cursor: the next sync reads everything again (unchanged rows stay unchanged)."""
    _require_manager(request)
    connector = selectors.connector_get(user=request.user, pk=pk)
    services.connector_update(connector=connector, reset_cursor=True)
    messages.success(request, _("The next sync reads the source from the beginning."))
    return redirect(connector)


@login_required
@require_POST
def connector_schedule(request: HttpRequest, pk: int) -> HttpResponse:
    _require_manager(request)
    connector = selectors.connector_get(user=request.user, pk=pk)
    form = ScheduleForm(request.POST)
    if form.is_valid():
        try:
            services.connector_schedule_set(
                connector=connector,
                every_minutes=form.cleaned_data["every_minutes"],
                cron=form.cleaned_data["cron"] or "",
            )
        except services.ConnectorRefused as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Schedule saved."))
    else:
        messages.error(request, _("The schedule is not valid."))
    return redirect(connector)


@login_required
@require_POST
def webhook_secret(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    form = WebhookForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a source."))
        return redirect("imports:connector-list")
    source = form.cleaned_data["source"]
    secret = push.source_webhook_rotate(source=source)
    return render(request, "imports/webhook_secret.html", {"source": source, "secret": secret})
