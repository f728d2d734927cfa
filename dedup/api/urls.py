"""API routes of the dedup app, mounted under /api/v1/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path
from rest_framework.routers import SimpleRouter

from dedup.api import views

router = SimpleRouter()
router.register("candidates", views.CandidateViewSet, basename="candidate")
router.register("merges", views.MergeViewSet, basename="merge")

urlpatterns: list[URLPattern | URLResolver] = [path("", include(router.urls))]
