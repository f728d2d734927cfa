"""API routes of the imports app, mounted under /api/v1/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path
from rest_framework.routers import SimpleRouter

from imports.api.connectors import ConnectorViewSet, PushView, WebhookView
from imports.api.views import ImportRunViewSet

router = SimpleRouter()
router.register("imports", ImportRunViewSet, basename="import-run")
router.register("connectors", ConnectorViewSet, basename="connector")

urlpatterns: list[URLPattern | URLResolver] = [
    *router.urls,
    path("sources/<str:code>/records/", PushView.as_view(), name="source-push"),
    path("sources/<str:code>/webhook/", WebhookView.as_view(), name="source-webhook"),
]
