"""The pending-review count in the main navigation, for those who review."""

from __future__ import annotations

from django.http import HttpRequest


def review_count(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from dedup.permissions import can_view

    if not can_view(user):
        return {}
    from dedup.selectors import pending_count

    # Lazy: evaluated only when a template shows it (one indexed COUNT, bounded).
    return {"nav_review": True, "nav_pending_reviews": _Lazy(pending_count)}


class _Lazy:
    def __init__(self, func) -> None:  # noqa: ANN001
        self.func = func
        self.value: int | None = None

    def __str__(self) -> str:
        if self.value is None:
            self.value = self.func()
        from dedup.selectors import PENDING_COUNT_LIMIT

        # A backlog past the limit is not counted to the end on every page view.
        return f"{PENDING_COUNT_LIMIT}+" if self.value > PENDING_COUNT_LIMIT else str(self.value)
