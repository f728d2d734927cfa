from __future__ import annotations

from django.urls import path

from crmhub import privacy_views as views

app_name = "privacy"

urlpatterns = [
    path("", views.search, name="search"),
    path("export/", views.export, name="export"),
    path("erase/", views.erase, name="erase"),
]
