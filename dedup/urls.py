"""Browser routes of the dedup app."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from dedup import survivorship_views, views

app_name = "dedup"
urlpatterns: list[URLPattern | URLResolver] = [
    path("review/", views.review_queue, name="review-queue"),
    path("review/decide/", views.item_decide, name="item-decide"),
    path("review/assign/", views.items_assign, name="items-assign"),
    path("review/bulk/", views.items_bulk, name="items-bulk"),
    path("candidates/<int:pk>/compare/", views.compare, name="compare"),
    path("candidates/<int:pk>/approve/", views.candidate_decide, {"decision": "approve"}, name="candidate-approve"),
    path("candidates/<int:pk>/reject/", views.candidate_decide, {"decision": "reject"}, name="candidate-reject"),
    path("survivorship/", survivorship_views.survivorship_rules, name="survivorship-rules"),
]
