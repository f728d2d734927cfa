from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def pct(value) -> str:  # noqa: ANN001
    """0.9234 -> '92.3 %'; empty for a figure that could not be computed."""
    if value is None or value == "":
        return "–"
    return f"{float(value) * 100:.1f} %"


@register.filter
def hours(value) -> str:  # noqa: ANN001
    if value is None:
        return "–"
    return f"{float(value):.1f} h"


@register.filter
def get(mapping, key):  # noqa: ANN001, ANN201
    return mapping.get(key) if mapping else None
