"""API routes of the dedup app, mounted under /api/v1/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path
from rest_framework.routers import SimpleRouter

from dedup.api import survivorship, views

router = SimpleRouter()
router.register("candidates", views.CandidateViewSet, basename="candidate")
router.register("merges", views.MergeViewSet, basename="merge")

urlpatterns: list[URLPattern | URLResolver] = [
    path("", include(router.urls)),
    path("survivorship-rules/", survivorship.SurvivorshipRuleList.as_view(), name="survivorship-rule-list"),
    path(
        "survivorship-rules/<str:field>/",
        survivorship.SurvivorshipRuleDetail.as_view(),
        name="survivorship-rule-detail",
    ),
]
