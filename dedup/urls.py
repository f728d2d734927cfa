"""Browser routes of the dedup app."""
from __future__ import annotations

from django.urls import URLPattern, URLResolver

app_name = "dedup"
urlpatterns: list[URLPattern | URLResolver] = []
