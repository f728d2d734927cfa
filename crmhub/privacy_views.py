"""Browser views of data-subject requests (PIPL): admins (or holders of
``crmhub.handle_privacy_requests``) only; every step recorded by crmhub.privacy.

Identifiers travel by POST only, so that a mobile number or an ID number never lands in a
URL (and so in server and proxy logs)."""

from __future__ import annotations

from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from crmhub import privacy
from crmhub.choices import PrivacyRequestKind
from crmhub.models import PrivacyRequest


class SubjectForm(forms.Form):
    mobile = forms.CharField(label=_("Mobile"), required=False, max_length=40)
    email = forms.CharField(label=_("Email"), required=False, max_length=254)
    id_number = forms.CharField(label=_("ID number"), required=False, max_length=40)


class EraseForm(SubjectForm):
    mode = forms.ChoiceField(
        label=_("Action"),
        choices=[(PrivacyRequestKind.ERASE, _("Erase")), (PrivacyRequestKind.ANONYMIZE, _("Anonymize"))],
    )
    reason = forms.CharField(
        label=_("Request reference"),
        max_length=200,
        help_text=_("The ticket or letter number; do not write personal data here."),
    )
    confirm = forms.BooleanField(label=_("I understand this cannot be undone"))


def privacy_handler(view):  # noqa: ANN001, ANN201
    @wraps(view)
    @login_required
    @never_cache
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:  # noqa: ANN002, ANN003
        if not privacy.user_may_handle_privacy(request.user):
            raise Http404("Not found")  # the page does not exist for anyone else
        return view(request, *args, **kwargs)

    return wrapper


def _find(request: HttpRequest, form: forms.Form) -> privacy.Subject | None:
    try:
        return privacy.privacy_subject_find(
            user=request.user,
            mobile=form.cleaned_data["mobile"],
            email=form.cleaned_data["email"],
            id_number=form.cleaned_data["id_number"],
        )
    except privacy.PrivacyInputError as exc:
        form.add_error(None, str(exc))
        return None


@require_http_methods(["GET", "POST"])
@privacy_handler
def search(request: HttpRequest) -> HttpResponse:
    form = SubjectForm(request.POST or None)
    subject = report = None
    if request.method == "POST" and form.is_valid():
        subject = _find(request, form)
        if subject is not None:
            privacy.privacy_request_log(
                user=request.user, subject=subject, kind=PrivacyRequestKind.SEARCH, request=request
            )
            report = privacy.privacy_report(user=request.user, subject=subject)
    erase_form = EraseForm(initial=form.cleaned_data if form.is_bound and form.is_valid() else None)
    return render(
        request,
        "privacy/search.html",
        {
            "form": form,
            "subject": subject,
            "report": report,
            "erase_form": erase_form,
            "recent": PrivacyRequest.objects.select_related("acting_user")[:20],
        },
    )


@require_POST
@privacy_handler
def export(request: HttpRequest) -> HttpResponse:
    form = SubjectForm(request.POST)
    fmt = request.POST.get("format", "json")
    if fmt not in ("json", "xlsx") or not form.is_valid():
        messages.error(request, _("Choose JSON or Excel and give an identifier."))
        return redirect("privacy:search")
    subject = _find(request, form)
    if subject is None:
        messages.error(request, "; ".join(str(e) for e in form.non_field_errors()))
        return redirect("privacy:search")
    privacy.privacy_request_log(
        user=request.user, subject=subject, kind=PrivacyRequestKind.EXPORT, request=request, reason=fmt
    )
    report = privacy.privacy_report(user=request.user, subject=subject)
    if fmt == "json":
        body, content_type = privacy.privacy_report_json(report), "application/json"
    else:
        body = privacy.privacy_report_xlsx(report)
        content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="data-subject-report.{fmt}"'
    return response


@require_POST
@privacy_handler
def erase(request: HttpRequest) -> HttpResponse:
    form = EraseForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Give an identifier, choose the action, state the reference and confirm."))
        return redirect("privacy:search")
    subject = _find(request, form)
    if subject is None:
        messages.error(request, "; ".join(str(e) for e in form.non_field_errors()))
        return redirect("privacy:search")
    try:
        row = privacy.privacy_erase(
            user=request.user,
            subject=subject,
            mode=form.cleaned_data["mode"],
            reason=form.cleaned_data["reason"],
            request=request,
        )
    except privacy.PrivacyInputError as exc:
        messages.error(request, str(exc))
        return redirect("privacy:search")
    messages.success(
        request,
        _("Request #%(id)s done: %(n)s golden records, %(r)s source records.")
        % {"id": row.pk, "n": row.counts.get("customers", 0), "r": row.counts.get("source_records", 0)},
    )
    return redirect("privacy:search")
