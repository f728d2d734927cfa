"""Template helpers of access control."""

from __future__ import annotations

from typing import Any

from django import template

from accounts.policy import value_as_text

register = template.Library()


@register.filter
def field_text(value: Any) -> str:
    """A presented value as text (the same text as in exports)."""
    return value_as_text(value)


@register.filter
def access_name(level: int | None) -> str:
    from accounts.models import AccessLevel

    return "" if level is None else str(AccessLevel(level).label)
