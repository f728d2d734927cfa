"""API routes of the accounts app, mounted under /api/v1/."""
from __future__ import annotations

from django.urls import path

from accounts.api.views import ObtainTokenView

urlpatterns = [
    path("auth/token/", ObtainTokenView.as_view(), name="auth-token"),
]
