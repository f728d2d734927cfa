"""Browser views of the core domain: thin, reading through selectors."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.history import present_customer_history
from accounts.policy import Access, policy_for, present_customer, present_values
from crmhub import selectors
from crmhub.choices import ChangeChannel
from crmhub.editing import StaleVersionError, customer_update, customer_value_restore
from crmhub.forms import CustomerEditForm
from crmhub.health import check_worker_roundtrip, health_report
from crmhub.models import Customer

LIST_FIELDS = ["full_name", "mobile", "email", "member_no", "company", "city"]


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    ok, report = health_report()
    if request.GET.get("deep") == "1" and ok:
        # Opt-in: a probe task through the broker to a worker and back into the database.
        report["worker_roundtrip"] = check_worker_roundtrip(timeout=5.0)
    return JsonResponse(report, status=200 if ok else 503)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "crmhub/home.html", {"counts": selectors.home_counts(user=request.user)})


@login_required
def customer_list(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    qs = selectors.customer_search(user=request.user, q=q)
    if not q:
        qs = qs.order_by("-id")  # with a query the search's own ranking stands (exact identity hits first)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    policy = policy_for(request.user)
    columns = [policy.fields[n] for n in policy.visible_fields(LIST_FIELDS)]
    names = [f.name for f in columns]
    rows = []
    for customer in page:
        values = present_customer(request.user, customer, names)
        customer.search_match = selectors.search_rank_label(getattr(customer, "search_rank", None))
        rows.append((customer, [values.get(n) for n in names]))
    template = "crmhub/_customer_table.html" if request.headers.get("HX-Request") else "crmhub/customer_list.html"
    context = {"q": q, "page": page, "columns": columns, "rows": rows, "limit": selectors.SEARCH_LIMIT}
    return render(request, template, context)


@login_required
def customer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    customer = selectors.customer_get(user=request.user, pk=pk)
    if customer.pk != pk:
        return redirect(customer)  # an old id of a merged customer resolves to its survivor
    kinds = request.GET.getlist("kind")
    page = request.GET.get("page")
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "timeline":
        timeline = selectors.customer_timeline(customer=customer, kinds=kinds, page=page)
        return render(request, "crmhub/_timeline.html", {"customer": customer, "timeline": timeline, "kinds": kinds})
    return _render_detail(request, customer, kinds=kinds, page=page)


def _render_detail(  # noqa: PLR0913
    request: HttpRequest,
    customer: Customer,
    *,
    kinds: list[str] | None = None,
    page: str | None = None,
    form: CustomerEditForm | None = None,
    conflict: dict | None = None,
    status: int = 200,
) -> HttpResponse:
    """The 360° page: golden record (with the edit form for editors), data-quality flags, source
    records, the interaction timeline, tags and segments, history with restore, merges."""
    policy = policy_for(request.user)
    values = present_customer(request.user, customer)
    fields = [(policy.fields[name], value, policy(name)) for name, value in values.items()]
    records = selectors.customer_source_records(customer=customer)
    presented_records = [(r, present_values(request.user, r.normalized)) for r in records]
    flags = [
        f
        for f in selectors.customer_quality_flags(customer=customer, records=records)
        if f["field"] not in policy.fields or policy(f["field"]) > Access.HIDDEN
    ]
    summary = selectors.customer_summary(customer=customer)
    timeline = selectors.customer_timeline(customer=customer, kinds=kinds, page=page, per_kind=summary["per_kind"])
    form = form or CustomerEditForm(user=request.user, customer=customer)
    history = present_customer_history(request.user, customer, limit=None)
    context = {
        "customer": customer,
        "title": values.get("full_name") or f"#{customer.pk}",
        "fields": fields,
        "records": presented_records,
        "flags": flags,
        "timeline": timeline,
        "kinds": kinds or [],
        "summary": summary,
        "tags": values.get("tags") or [],
        "history": history[:HISTORY_ON_PAGE],
        "history_more": len(history) > HISTORY_ON_PAGE,
        "may_restore": {n for n in form.editable},
        "merges": selectors.customer_merges(customer=customer, refs=[e["ref"] for e in history if e["ref"]]),
        "form": form,
        "conflict": conflict,
        "field_defs": policy.fields,
        # Once per page, not once per masked field or history entry.
        "may_reveal": request.user.has_perm("accounts.reveal_values"),
        "reveal_url": reverse("accounts:customer-reveal", args=[customer.pk]),
        "restore_url": reverse("customer-restore", args=[customer.pk]),
    }
    return render(request, "crmhub/customer_detail.html", context, status=status)


HISTORY_ON_PAGE = 20


@login_required
@require_POST
def customer_edit(request: HttpRequest, pk: int) -> HttpResponse:
    customer = selectors.customer_get(user=request.user, pk=pk)
    form = CustomerEditForm(request.POST, user=request.user, customer=customer)
    if not form.editable:
        raise PermissionDenied(_("You may not edit this customer."))
    if not form.is_valid():
        messages.error(request, _("The form was incomplete; nothing was saved."))
        return _render_detail(request, customer, form=form, status=400)
    values = form.changed_values()
    try:
        customer_update(
            customer_id=customer.pk,
            values=values,
            expected_version=form.cleaned_data["version"],
            acting_user=request.user,
            channel=ChangeChannel.WEB,
        )
    except StaleVersionError:
        return _stale(request, customer.pk, attempted=values)
    except ValidationError as exc:
        for name, errors in getattr(exc, "message_dict", {"__all__": exc.messages}).items():
            form.add_error(f"f_{name}" if f"f_{name}" in form.fields else None, errors)
        messages.error(request, _("Some values were not valid; nothing was saved."))
        return _render_detail(request, customer, form=form, status=400)
    if values:
        messages.success(request, _("Saved."))
    else:
        messages.info(request, _("Nothing changed."))
    return redirect(customer)


@login_required
@require_POST
def customer_restore(request: HttpRequest, pk: int) -> HttpResponse:
    customer = selectors.customer_get(user=request.user, pk=pk)
    try:
        history_id = int(request.POST["history_id"])
        version = int(request.POST["version"])
        field = request.POST["field"]
    except (KeyError, ValueError):
        messages.error(request, _("The restore request was incomplete; nothing was changed."))
        return redirect(customer)
    try:
        customer_value_restore(
            customer_id=customer.pk,
            history_id=history_id,
            field=field,
            expected_version=version,
            acting_user=request.user,
        )
    except StaleVersionError:
        return _stale(request, customer.pk, attempted={})
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(customer)
    label = policy_for(request.user).fields[field].label
    messages.success(request, _("%(field)s restored.") % {"field": label})
    return redirect(customer)


def _stale(request: HttpRequest, pk: int, *, attempted: dict) -> HttpResponse:
    """Someone changed the customer meanwhile: say so and show the fresh values (and what the
    user tried to save, so that nothing typed is lost)."""
    customer = selectors.customer_get(user=request.user, pk=pk)
    messages.error(
        request,
        _(
            "Someone else changed this customer while you were looking at it. Nothing was saved: "
            "the page now shows the current values; apply your change again if it is still needed."
        ),
    )
    policy = policy_for(request.user)
    conflict = {"attempted": [(policy.fields[n].label, v) for n, v in attempted.items() if n in policy.fields]}
    return _render_detail(request, customer, conflict=conflict, status=409)
