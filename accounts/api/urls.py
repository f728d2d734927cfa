"""API routes of the accounts app, mounted under /api/v1/."""

from __future__ import annotations

from django.urls import path

from accounts.api.views import CustomerHistoryView, CustomerRevealView, ObtainTokenView

urlpatterns = [
    path("auth/token/", ObtainTokenView.as_view(), name="auth-token"),
    path("customers/<int:pk>/reveal/", CustomerRevealView.as_view(), name="customer-reveal"),
    path("customers/<int:pk>/history/", CustomerHistoryView.as_view(), name="customer-history"),
]
