from __future__ import annotations

from django.urls import path

from crmhub import quality_views as views

app_name = "quality"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("data.json", views.chart_data, name="chart-data"),
    path("run/", views.run_now, name="run"),
    path("records/", views.records, name="records"),
    path("export.xlsx", views.export_xlsx, name="export"),
    path("alerts/", views.alerts, name="alerts"),
]
