"""/api/v1/: the core routes, then each app's."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from crmhub.api import views

app_name = "api"

router = DefaultRouter()
router.register("customers", views.CustomerViewSet, basename="customer")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    path(
        "customers/<str:customer_pk>/source-records/",
        views.CustomerSourceRecordsViewSet.as_view({"get": "list"}),
        name="customer-source-records",
    ),
    path(
        "customers/<str:customer_pk>/interactions/",
        views.CustomerInteractionsViewSet.as_view({"get": "list"}),
        name="customer-interactions",
    ),
    path("changes/", views.ChangeFeedView.as_view(), name="changes"),
    path("", include("accounts.api.urls")),
    path("", include("imports.api.urls")),
    path("", include("dedup.api.urls")),
    path("", include(router.urls)),
]
