from __future__ import annotations

from django.http import HttpRequest


def navigation(request: HttpRequest) -> dict:
    """What the navigation shows beside the links (the review count: dedup.context_processors)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from crmhub.quality import quality_may_view

    return {
        "nav_quality": quality_may_view(user),
    }
