from __future__ import annotations

from django.http import HttpRequest


def navigation(request: HttpRequest) -> dict:
    """The pending-review count shown in the navigation of every page."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from dedup.choices import CandidateStatus
    from dedup.models import MatchCandidate

    from crmhub.quality import quality_may_view

    return {
        "nav_pending_reviews": MatchCandidate.objects.filter(status=CandidateStatus.PENDING).count(),
        "nav_quality": quality_may_view(user),
    }
