"""Browser views of duplicate detection: the review queue and the compare-and-merge screen.
Thin: selectors read, services write."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.policy import may_edit
from crmhub.choices import CustomerStatus
from crmhub.models import Customer
from dedup import selectors, services
from dedup.choices import CandidateStatus
from dedup.permissions import can_review, can_view

PAGE_SIZE = 20


def _require_view(user) -> None:  # noqa: ANN001
    if not can_view(user):
        raise PermissionDenied(_("Only data stewards, admins and auditors may see the review queue."))


def _require_review(user) -> None:  # noqa: ANN001
    if not can_review(user):
        raise PermissionDenied(_("Only data stewards and admins may approve, reject or assign."))


def _ids(text: str) -> list[int]:
    """``"3,5,9"`` → [3, 5, 9]; anything else is refused."""
    try:
        return sorted({int(x) for x in (text or "").split(",") if x.strip()})
    except ValueError:
        raise ValidationError(_("Malformed list of ids.")) from None


def _versions(text: str) -> dict[int, int]:
    """``"12:3,14:1"`` (customer:version as the page showed them) → {12: 3, 14: 1}."""
    out = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        try:
            cid, version = part.split(":")
            out[int(cid)] = int(version)
        except ValueError:
            raise ValidationError(_("Malformed versions.")) from None
    return out


def _queue_context(request: HttpRequest) -> dict:
    try:
        filters = selectors.ReviewFilters.from_params(request.GET)
        error = ""
    except ValueError as exc:
        filters, error = selectors.ReviewFilters(), str(exc)
    sort = request.GET.get("sort", "-score")
    items = selectors.review_items(user=request.user, filters=filters, sort=sort)
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    loaded = selectors.review_items_load(list(page.object_list))
    rows = [
        {
            "item": item,
            "summary": selectors.item_summary(user=request.user, item=item),
            "explanation": selectors.candidate_explanation(user=request.user, candidate=item.candidates[0])
            if len(item.candidates) == 1
            else [],
        }
        for item in loaded
    ]
    query = request.GET.copy()
    query.pop("page", None)
    sort_query = request.GET.copy()
    for key in ("page", "sort"):
        sort_query.pop(key, None)
    return {
        "page": page,
        "rows": rows,
        "filters": filters,
        "filter_error": error,
        "sort": sort if sort in selectors.SORTS else "-score",
        "query": query.urlencode(),
        "sort_query": sort_query.urlencode(),
        "total_items": len(items),
        "more_items": items.more_than_counted,
        "count_limit": selectors.QUEUE_COUNT_LIMIT,
        "can_review": can_review(request.user),
        "reviewers": selectors.reviewers() if can_review(request.user) else [],
        "sources": selectors.queue_sources(),
        "rules": selectors.queue_rules(),
        "bands": selectors.SCORE_BANDS,
        "ages": selectors.AGES,
        "next": request.get_full_path(),
    }


@login_required
def review_queue(request: HttpRequest) -> HttpResponse:
    _require_view(request.user)
    context = _queue_context(request)
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "queue":
        return render(request, "dedup/_queue.html", context)
    return render(request, "dedup/review_queue.html", context)


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or ""
    return target if target.startswith("/dedup/") else reverse("dedup:review-queue")


@login_required
@require_POST
def item_decide(request: HttpRequest) -> HttpResponse:
    """Approve (merge with survivorship's values, into the oldest customer) or reject one queue
    item, checked against the versions the queue showed."""
    _require_review(request.user)
    decision = request.POST.get("decision")
    if decision not in ("approve", "reject"):
        return HttpResponseBadRequest(_("Unknown decision."))
    try:
        ids = _ids(request.POST.get("candidates", ""))
        versions = _versions(request.POST.get("versions", ""))
    except ValidationError as exc:
        return HttpResponseBadRequest("; ".join(exc.messages))
    return _decide(request, ids, versions, decision)


def _decide(request: HttpRequest, ids: list[int], versions: dict[int, int], decision: str) -> HttpResponse:
    candidates = selectors.review_candidates_get(user=request.user, ids=ids)
    if not candidates or len(candidates) != len(ids):
        return HttpResponseBadRequest(_("No such candidate."))
    (result,) = services.review_items_decide(
        items=[{"candidates": ids, "versions": versions}], decision=decision, acting_user=request.user
    )
    candidates = selectors.review_candidates_get(user=request.user, ids=ids)
    context = {"key": ids[0], "candidates": candidates, "result": result, "decision": decision}
    if request.headers.get("HX-Request"):
        return render(request, "dedup/_decided.html", context, status=200 if result["ok"] else 409)
    if result["ok"]:
        messages.success(request, _("Merged.") if decision == "approve" else _("Kept apart."))
    else:
        messages.error(request, result["error"])
    return redirect(_safe_next(request))


# The per-candidate routes (links, forms without JavaScript) decide a single pair.
@login_required
@require_POST
def candidate_decide(request: HttpRequest, pk: int, decision: str) -> HttpResponse:
    _require_review(request.user)
    candidate = selectors.candidate_get(user=request.user, pk=pk)
    try:
        versions = _versions(request.POST.get("versions", ""))
    except ValidationError as exc:
        return HttpResponseBadRequest("; ".join(exc.messages))
    return _decide(request, [candidate.pk], versions, decision)


@login_required
@require_POST
def items_assign(request: HttpRequest) -> HttpResponse:
    """Assign the selected items (or one) to me, to a steward, or to nobody."""
    _require_review(request.user)
    target = request.POST.get("assignee", "me")
    if target == "me":
        assignee = request.user
    elif target == "none":
        assignee = None
    else:
        assignee = get_user_model().objects.filter(pk=target if str(target).isdigit() else 0).first()
        if assignee is None:
            return HttpResponseBadRequest(_("No such user."))
    ids = []
    try:
        for value in request.POST.getlist("items") or [request.POST.get("candidates", "")]:
            ids += _ids(value)
    except ValidationError as exc:
        return HttpResponseBadRequest("; ".join(exc.messages))
    reachable = [c.pk for c in selectors.review_candidates_get(user=request.user, ids=ids)]
    try:
        count = services.candidates_assign(candidate_ids=reachable, assignee=assignee, acting_user=request.user)
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
        return redirect(_safe_next(request))
    who = assignee.get_username() if assignee else _("nobody")
    messages.success(request, _("%(count)d candidate(s) assigned to %(who)s.") % {"count": count, "who": who})
    return redirect(_safe_next(request))


def _bulk_items(request: HttpRequest) -> list[dict]:
    items = []
    for value in request.POST.getlist("items"):
        ids = _ids(value)
        if ids:
            items.append({"candidates": ids, "versions": _versions(request.POST.get(f"versions-{ids[0]}", ""))})
    return items


@login_required
@require_POST
def items_bulk(request: HttpRequest) -> HttpResponse:
    """Bulk approve/reject: first a confirmation page saying what will happen to each item
    (shown with the versions it was read at), then, on ``confirm``, the decisions."""
    _require_review(request.user)
    decision = request.POST.get("decision")
    if decision not in ("approve", "reject"):
        return HttpResponseBadRequest(_("Unknown decision."))
    try:
        items = _bulk_items(request)
    except ValidationError as exc:
        return HttpResponseBadRequest("; ".join(exc.messages))
    if not items:
        messages.error(request, _("Select at least one item first (x selects the focused one)."))
        return redirect(_safe_next(request))
    if request.POST.get("confirm") != "yes":
        rows = []
        for item in items:
            candidates = selectors.review_candidates_get(user=request.user, ids=item["candidates"])
            review_item = selectors.ReviewItem(
                candidate_ids=[c.pk for c in candidates],
                customer_ids=sorted({i for c in candidates for i in (c.left_id, c.right_id)}),
                score=max((c.score for c in candidates), default=0.0),
                created_at=None,
            )
            selectors.review_items_load([review_item])
            rows.append(
                {
                    "item": review_item,
                    "summary": selectors.item_summary(user=request.user, item=review_item),
                    "decided": [c for c in candidates if c.status != CandidateStatus.PENDING],
                    "versions": request.POST.get(f"versions-{item['candidates'][0]}", ""),
                }
            )
        return render(
            request, "dedup/bulk_confirm.html", {"rows": rows, "decision": decision, "next": _safe_next(request)}
        )
    results = services.review_items_decide(
        items=items, decision=decision, acting_user=request.user, note=request.POST.get("note", "")[:2000]
    )
    done = sum(1 for r in results if r["ok"])
    if done:
        messages.success(
            request,
            (_("%(count)d item(s) merged.") if decision == "approve" else _("%(count)d item(s) kept apart."))
            % {"count": done},
        )
    for r in results:
        if not r["ok"]:
            messages.error(request, _("Item %(ids)s: %(error)s") % {"ids": r["candidates"], "error": r["error"]})
    return redirect(_safe_next(request))


#
# Compare and merge
#


def _compare_context(request: HttpRequest, item: selectors.ReviewItem, survivor: int | None, form: dict) -> dict:
    customers = list(Customer.objects.filter(pk__in=item.customer_ids).order_by("pk"))
    active = [c for c in customers if c.status == CustomerStatus.ACTIVE]
    ids = [c.pk for c in active]
    if survivor not in ids:
        survivor = ids[0] if ids else None
    view = (
        selectors.compare_view(user=request.user, customers=active, candidates=item.candidates, survivor_id=survivor)
        if len(active) >= 2
        else {"rows": []}
    )
    post = form.get("post")
    for row in view["rows"]:
        default = str(row["proposal"].customer_id) if row.get("proposal") and row["proposal"].customer_id else ""
        row["selected"] = post.get(f"choice-{row['field']}", "") if post is not None else default
        row["override"] = post.get(f"override-{row['field']}", "") if post is not None else ""
        row["error"] = form.get("errors", {}).get(row["field"], "")
        for cell in row["cells"]:
            cell["checked"] = row["selected"] == str(cell["customer"])
    explanations = [
        {"candidate": c, "rows": selectors.candidate_explanation(user=request.user, candidate=c)}
        for c in item.candidates
    ]
    return {
        "item": item,
        "customers": active,
        "inactive": [c for c in customers if c.status != CustomerStatus.ACTIVE],
        "survivor": survivor,
        "rows": view["rows"],
        "records": selectors.source_records_of(ids),
        "explanations": explanations,
        "versions": ",".join(f"{c.pk}:{c.version}" for c in active),
        "pending": all(c.status == CandidateStatus.PENDING for c in item.candidates),
        "decided": [c for c in item.candidates if c.status != CandidateStatus.PENDING],
        "can_review": can_review(request.user),
        "form": form,
    }


def _chosen_values(request: HttpRequest, rows: list[dict], customers: dict[int, Customer]) -> tuple[dict, dict]:
    """The values the steward chose that differ from survivorship's proposal (only those are
    sent as explicit choices), and per-field errors of typed overrides."""
    from crmhub.editing import field_value_clean  # the same cleaning as a manual edit of the customer page

    values, errors = {}, {}
    for row in rows:
        name = row["field"]
        if not row["editable"] or not may_edit(request.user, name):
            continue
        choice = request.POST.get(f"choice-{name}", "")
        proposal = row["proposal"]
        if choice == "override":
            text = request.POST.get(f"override-{name}", "")
            try:
                cleaned = field_value_clean(name, text)
            except ValidationError as exc:
                errors[name] = "; ".join(exc.messages)
                continue
            if proposal is None or cleaned != proposal.value:
                values[name] = cleaned
        elif choice.isdigit() and int(choice) in customers:
            if proposal is None or int(choice) != proposal.customer_id:
                value = customers[int(choice)].get_value(name)
                if proposal is None or value != proposal.value:
                    values[name] = value
    return values, errors


@login_required
def compare(request: HttpRequest, pk: int) -> HttpResponse:
    """Compare-and-merge for a candidate and the cluster it belongs to."""
    _require_view(request.user)
    candidate = selectors.candidate_get(user=request.user, pk=pk)
    if request.method == "POST":
        return _compare_post(request, candidate)
    item = selectors.cluster_of(user=request.user, candidate=candidate)
    survivor = request.GET.get("survivor")
    context = _compare_context(request, item, int(survivor) if (survivor or "").isdigit() else None, {})
    template = "dedup/_compare_form.html" if request.headers.get("HX-Request") else "dedup/compare.html"
    return render(request, template, context)


def _compare_post(request: HttpRequest, candidate) -> HttpResponse:  # noqa: ANN001
    _require_review(request.user)
    try:
        ids = _ids(request.POST.get("candidates", ""))
        versions = _versions(request.POST.get("versions", ""))
    except ValidationError as exc:
        return HttpResponseBadRequest("; ".join(exc.messages))
    candidates = selectors.review_candidates_get(user=request.user, ids=ids)
    if candidate.pk not in ids or len(candidates) != len(ids):
        return HttpResponseBadRequest(_("No such candidate."))
    item = selectors.ReviewItem(
        candidate_ids=ids,
        customer_ids=sorted({i for c in candidates for i in (c.left_id, c.right_id)}),
        score=max(c.score for c in candidates),
        created_at=None,
    )
    selectors.review_items_load([item])
    decision = request.POST.get("decision")
    survivor = request.POST.get("survivor", "")
    survivor_id = int(survivor) if survivor.isdigit() else None
    note = request.POST.get("note", "")[:2000]
    form = {"note": note, "post": request.POST}

    def fresh(message: str, status: int) -> HttpResponse:
        # A fresh view: the cluster as it is now, current values and versions.
        messages.error(request, message)
        current = selectors.cluster_of(user=request.user, candidate=candidates[0])
        context = _compare_context(request, current, survivor_id, {"note": note})
        return render(request, "dedup/compare.html", context, status=status)

    try:
        if decision == "reject":
            reject_ids = _ids(request.POST.get("reject", "")) or ids
            if not set(reject_ids) <= set(ids):
                return HttpResponseBadRequest(_("No such candidate."))
            services.cluster_reject(candidate_ids=reject_ids, acting_user=request.user, note=note)
            if set(reject_ids) != set(ids):
                messages.success(request, _("Kept apart; that pair will not be proposed again."))
                return redirect("dedup:compare", pk=min(set(ids) - set(reject_ids)))
            messages.success(request, _("Kept apart; this pair will not be proposed again."))
            return redirect("dedup:review-queue")
        if decision != "merge":
            return HttpResponseBadRequest(_("Unknown decision."))
        context = _compare_context(request, item, survivor_id, form)
        customers = {c.pk: c for c in context["customers"]}
        shown = {c: v for c, v in versions.items() if c in customers}
        if set(shown) != set(customers):
            return fresh(_("The records changed since you opened this page; here they are as they are now."), 409)
        values, errors = _chosen_values(request, context["rows"], customers)
        if errors:
            context = _compare_context(request, item, survivor_id, {**form, "errors": errors})
            return render(request, "dedup/compare.html", context, status=400)
        merge = services.cluster_approve(
            candidate_ids=ids,
            acting_user=request.user,
            survivor=context["survivor"],
            values=values,
            note=note,
            expected_versions=shown,
        )
    except services.StaleVersionError:
        return fresh(
            _(
                "Someone changed one of these customers while you were comparing them. Nothing was merged; "
                "below are the current values — check your choices and merge again."
            ),
            409,
        )
    except services.CandidateDecidedError as exc:
        return fresh(_("Someone else decided this meanwhile: %(error)s") % {"error": "; ".join(exc.messages)}, 409)
    except ValidationError as exc:
        return fresh("; ".join(exc.messages), 409)
    messages.success(
        request,
        _("Merged into customer #%(id)d.") % {"id": merge.survivor_id},
    )
    return redirect(reverse("customer-detail", args=[merge.survivor_id]))
