"""Browser views of the imports app: upload, mapping, dry-run preview, run progress,
cancel, commit, rollback and the error report. Thin: parse, call a service, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.policy import policy_for, present_values
from crmhub.models import FieldDefinition
from crmhub.services import source_get_or_create
from imports import reports, selectors, services
from imports.forms import UploadForm
from imports.readers import sample_rows

TOKEN_SALT = "imports.mapping"


def _require_importer(request: HttpRequest) -> None:
    if not services.user_may_import(request.user):
        raise PermissionDenied(_("Importing needs the steward or admin role."))


@login_required
def run_list(request: HttpRequest) -> HttpResponse:
    _require_importer(request)
    page = Paginator(selectors.import_run_list(user=request.user), 50).get_page(request.GET.get("page"))
    return render(request, "imports/run_list.html", {"page": page})


@login_required
def upload(request: HttpRequest) -> HttpResponse:
    _require_importer(request)
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        source = data["source"] or source_get_or_create(code=data["new_source"])[0]
        uploaded = data["file"]
        staged = None
        try:
            staged = services.upload_stage(fileobj=uploaded, filename=uploaded.name)
            layout = services.upload_inspect(name=staged, filename=uploaded.name)
            template = data["template"] or services.mapping_template_matching(source=source, headers=layout.headers)
            if template is not None:
                plan = services.plan_resolve(source=source, layout=layout, template_name=template.name)
                run = services.import_run_create(
                    source=source,
                    staged_name=staged,
                    filename=uploaded.name,
                    layout=layout,
                    plan=plan,
                    user=request.user,
                    dry_run=data["dry_run"],
                )
                messages.success(
                    request, _("Queued run #%(id)s with template %(t)s.") % {"id": run.pk, "t": template.name}
                )
                return redirect(run)
        except services.ImportRefused as exc:
            if staged:
                services.upload_discard(name=staged)
            form.add_error(None, str(exc))
        else:
            token = signing.dumps(
                {"staged": staged, "filename": uploaded.name, "source": source.code, "dry_run": data["dry_run"]},
                salt=TOKEN_SALT,
            )
            return redirect("imports:mapping", token=token)
    return render(request, "imports/upload.html", {"form": form})


@login_required
def mapping(request: HttpRequest, token: str) -> HttpResponse:
    _require_importer(request)
    try:
        state = signing.loads(token, salt=TOKEN_SALT, max_age=24 * 3600)
    except signing.BadSignature:
        messages.error(request, _("This mapping link has expired; upload the file again."))
        return redirect("imports:upload")
    source, _created = source_get_or_create(code=state["source"])
    params = request.POST if request.method == "POST" else request.GET
    sheet = params.get("sheet") or None
    header_row = (
        int(params["header_row"]) - 1
        if params.get("header_row", "").isdigit() and int(params["header_row"]) > 0
        else None
    )
    error = ""
    try:
        layout = services.upload_inspect(
            name=state["staged"], filename=state["filename"], sheet=sheet, header_row=header_row
        )
    except services.ImportRefused as exc:
        messages.error(request, str(exc))
        return redirect("imports:upload")
    headers = layout.headers
    fields = list(FieldDefinition.objects.filter(is_active=True).order_by("sort_order", "name"))
    if request.method == "POST" and "create" in request.POST:
        chosen = {h: request.POST.get(f"map-{i}", "") for i, h in enumerate(headers)}
        plan = services.MappingPlan(
            mapping={h: f for h, f in chosen.items() if f},
            key_columns=[headers[int(i)] for i in request.POST.getlist("key") if i.isdigit() and int(i) < len(headers)],
            dayfirst=bool(request.POST.get("dayfirst")),
        )
        try:
            name = request.POST.get("template_name", "").strip()
            if name:
                plan.template = services.mapping_template_save(
                    source=source,
                    name=name[:100],
                    headers=headers,
                    mapping=plan.mapping,
                    key_columns=plan.key_columns,
                    dayfirst=plan.dayfirst,
                    user=request.user,
                )
            run = services.import_run_create(
                source=source,
                staged_name=state["staged"],
                filename=state["filename"],
                layout=layout,
                plan=plan,
                user=request.user,
                dry_run=bool(request.POST.get("dry_run")),
            )
        except services.ImportRefused as exc:
            error = str(exc)
        else:
            return redirect(run)
        suggestion = plan
    else:
        suggestion = services.mapping_suggest(headers=headers)
    samples = sample_rows(services.default_storage.path(state["staged"]), layout, n=3)
    column_fields = dict(suggestion.mapping)
    shown = [reports.present_error_row(request.user, row, column_fields) for row in samples]
    columns = [
        {
            "index": i,
            "header": h,
            "field": suggestion.mapping.get(h, ""),
            "score": suggestion.scores.get(h),
            "is_key": h in suggestion.key_columns,
            "samples": [row.get(h, "") for row in shown],
        }
        for i, h in enumerate(headers)
    ]
    return render(
        request,
        "imports/mapping.html",
        {
            "columns": columns,
            "fields": fields,
            "layout": layout,
            "source": source,
            "state": state,
            "error": error,
            "dayfirst": suggestion.dayfirst,
            "header_row": layout.header_row + 1,
        },
    )


def _presented_samples(run, user) -> dict:  # noqa: ANN001
    samples = run.samples or {}
    policy = policy_for(user)
    label = {name: f.label for name, f in policy.fields.items()}
    return {
        "created": [
            dict(s, values={label.get(k, k): v for k, v in present_values(user, s.get("values", {})).items()})
            for s in samples.get("created", [])
        ],
        "updated": [
            dict(
                s,
                diff=[
                    (label.get(k, k), present_values(user, s["before"]).get(k), present_values(user, s["after"]).get(k))
                    for k in s.get("before", {})
                    if k in present_values(user, s["after"])
                ],
            )
            for s in samples.get("updated", [])
        ],
        "unchanged": samples.get("unchanged", []),
        "rejected": samples.get("rejected", []),
    }


@login_required
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    _require_importer(request)
    run = selectors.import_run_get(user=request.user, pk=pk)
    context = {"run": run, "samples": _presented_samples(run, request.user)}
    if request.headers.get("HX-Request"):
        return render(request, "imports/_run_status.html", context)
    return render(request, "imports/run_detail.html", context)


def _act(request: HttpRequest, pk: int, fn, done: str) -> HttpResponse:  # noqa: ANN001
    _require_importer(request)
    run = selectors.import_run_get(user=request.user, pk=pk)
    try:
        result = fn(run=run, user=request.user)
    except services.ImportRefused as exc:
        messages.error(request, str(exc))
        return redirect(run)
    messages.success(request, done % {"id": result.pk})
    return redirect(result)


@login_required
@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, services.import_run_cancel, _("Run #%(id)s: cancel requested."))


@login_required
@require_POST
def run_commit(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, services.import_run_commit_preview, _("Committing: run #%(id)s queued."))


@login_required
def run_rollback(request: HttpRequest, pk: int) -> HttpResponse:
    _require_importer(request)
    run = selectors.import_run_get(user=request.user, pk=pk)
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        return _act(request, pk, services.import_run_request_rollback, _("Run #%(id)s: rollback queued."))
    return render(request, "imports/rollback_confirm.html", {"run": run})


@login_required
def run_report(request: HttpRequest, pk: int) -> HttpResponse:
    _require_importer(request)
    run = selectors.import_run_get(user=request.user, pk=pk)
    if request.GET.get("format") == "xlsx":
        body, ctype, ext = (
            reports.error_report_xlsx(run, request.user),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
        )
    else:
        body, ctype, ext = reports.error_report_csv(run, request.user), "text/csv; charset=utf-8", "csv"
    response = HttpResponse(body, content_type=ctype)
    response["Content-Disposition"] = f'attachment; filename="import-run-{run.pk}-errors.{ext}"'
    return response
