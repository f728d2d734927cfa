"""Browser routes of the accounts app."""

from __future__ import annotations

from django.urls import path

from accounts import views

app_name = "accounts"
urlpatterns = [
    path("policies/", views.policy_matrix, name="policy-matrix"),
    path("customers/<int:pk>/reveal/", views.customer_reveal, name="customer-reveal"),
    path("export/", views.customer_export, name="customer-export"),
    path("exports/", views.export_request_list, name="export-requests"),
    path("exports/<int:pk>/decide/", views.export_request_decide, name="export-decide"),
    path("exports/<int:pk>/download/", views.export_request_download, name="export-download"),
    path("audit/", views.audit_log, name="audit-log"),
    path("tokens/", views.token_list, name="tokens"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("sources/<slug:code>/permissions/", views.source_permissions, name="source-permissions"),
]
