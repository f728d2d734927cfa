"""Browser routes of the imports app."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from imports import views
from imports.connectors import views as connector_views

app_name = "imports"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.run_list, name="run-list"),
    path("new/", views.upload, name="upload"),
    path("map/<str:token>/", views.mapping, name="mapping"),
    path("runs/<int:pk>/", views.run_detail, name="run-detail"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/commit/", views.run_commit, name="run-commit"),
    path("runs/<int:pk>/rollback/", views.run_rollback, name="run-rollback"),
    path("runs/<int:pk>/errors/", views.run_report, name="run-report"),
    path("connectors/", connector_views.connector_list, name="connector-list"),
    path("connectors/new/", connector_views.connector_create, name="connector-create"),
    path("connectors/webhook-secret/", connector_views.webhook_secret, name="webhook-secret"),
    path("connectors/<int:pk>/", connector_views.connector_detail, name="connector-detail"),
    path("connectors/<int:pk>/edit/", connector_views.connector_edit, name="connector-edit"),
    path("connectors/<int:pk>/test/", connector_views.connector_test, name="connector-test"),
    path("connectors/<int:pk>/sync/", connector_views.connector_sync, name="connector-sync"),
    path("connectors/<int:pk>/toggle/", connector_views.connector_toggle, name="connector-toggle"),
    path("connectors/<int:pk>/reset/", connector_views.connector_reset, name="connector-reset"),
    path("connectors/<int:pk>/schedule/", connector_views.connector_schedule, name="connector-schedule"),
]
