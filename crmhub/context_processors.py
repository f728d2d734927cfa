from __future__ import annotations

from django.http import HttpRequest


def navigation(request: HttpRequest) -> dict:
    """The pending-review count shown in the navigation of every page."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from crmhub.quality import quality_may_view
    from dedup.choices import CandidateStatus
    from dedup.models import MatchCandidate

    return {
        "nav_pending_reviews": MatchCandidate.objects.filter(status=CandidateStatus.PENDING).count(),
        "nav_quality": quality_may_view(user),
    }
