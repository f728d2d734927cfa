"""Browser views of duplicate detection: the review queue. Thin: selectors read, services write."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from dedup import selectors, services
from dedup.choices import CandidateStatus
from dedup.permissions import can_review, can_view


def _rows(request: HttpRequest, candidates) -> list[dict]:  # noqa: ANN001
    return [
        {"candidate": c, "explanation": selectors.candidate_explanation(user=request.user, candidate=c)}
        for c in candidates
    ]


@login_required
def review_queue(request: HttpRequest) -> HttpResponse:
    if not can_view(request.user):
        raise PermissionDenied(_("Only data stewards, admins and auditors may see the review queue."))
    qs = selectors.candidate_list(user=request.user, status=CandidateStatus.PENDING)
    page = Paginator(qs, 20).get_page(request.GET.get("page"))
    return render(
        request,
        "dedup/review_queue.html",
        {"page": page, "rows": _rows(request, page), "can_review": can_review(request.user), "total": qs.count()},
    )


@login_required
@require_POST
def candidate_decide(request: HttpRequest, pk: int, decision: str) -> HttpResponse:
    if not can_review(request.user):
        raise PermissionDenied(_("Only data stewards and admins may approve or reject."))
    candidate = selectors.candidate_get(user=request.user, pk=pk)
    error = ""
    try:
        if decision == "approve":
            services.candidate_approve(candidate=candidate, acting_user=request.user)
        else:
            services.candidate_reject(candidate=candidate, acting_user=request.user)
    except ValidationError as exc:
        error = "; ".join(exc.messages)
    candidate.refresh_from_db()
    if request.headers.get("HX-Request"):
        return render(request, "dedup/_decided.html", {"candidate": candidate, "error": error})
    return redirect("dedup:review-queue")
