"""API routes of the imports app, mounted under /api/v1/."""
from __future__ import annotations

from django.urls import URLPattern, URLResolver
from rest_framework.routers import SimpleRouter

from imports.api.views import ImportRunViewSet

router = SimpleRouter()
router.register("imports", ImportRunViewSet, basename="import-run")

urlpatterns: list[URLPattern | URLResolver] = [*router.urls]
