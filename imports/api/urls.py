"""API routes of the imports app, mounted under /api/v1/."""
from __future__ import annotations

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
