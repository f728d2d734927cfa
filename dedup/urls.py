"""Browser routes of the dedup app."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from dedup import survivorship_views, views

app_name = "dedup"
urlpatterns: list[URLPattern | URLResolver] = [
    path("review/", views.review_queue, name="review-queue"),
    path("candidates/<int:pk>/approve/", views.candidate_decide, {"decision": "approve"}, name="candidate-approve"),
    path("candidates/<int:pk>/reject/", views.candidate_decide, {"decision": "reject"}, name="candidate-reject"),
    path("survivorship/", survivorship_views.survivorship_rules, name="survivorship-rules"),
]
