"""Browser views of the core domain: thin, reading through selectors."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.policy import policy_for, present_customer, present_values
from crmhub import selectors
from crmhub.health import check_worker_roundtrip, health_report

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
    qs = selectors.customer_search(user=request.user, q=q).order_by("-id")
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    policy = policy_for(request.user)
    columns = [policy.fields[n] for n in policy.visible_fields(LIST_FIELDS)]
    names = [f.name for f in columns]
    rows = []
    for customer in page:
        values = present_customer(request.user, customer, names)
        rows.append((customer, [values.get(n) for n in names]))
    template = "crmhub/_customer_table.html" if request.headers.get("HX-Request") else "crmhub/customer_list.html"
    return render(request, template, {"q": q, "page": page, "columns": columns, "rows": rows})


@login_required
def customer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    customer = selectors.customer_get(user=request.user, pk=pk)
    if customer.pk != pk:
        return redirect(customer)  # an old id of a merged customer resolves to its survivor
    policy = policy_for(request.user)
    values = present_customer(request.user, customer)
    fields = [(policy.fields[name], value, policy(name)) for name, value in values.items()]
    related = selectors.customer_detail_related(customer=customer)
    records = [(r, present_values(request.user, r.normalized)) for r in related["source_records"]]
    return render(
        request,
        "crmhub/customer_detail.html",
        {
            "customer": customer,
            "fields": fields,
            "records": records,
            "interactions": related["interactions"],
            "field_defs": policy.fields,
        },
    )
