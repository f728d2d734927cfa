"""Browser routes of the imports app."""
from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from imports import views

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
]
