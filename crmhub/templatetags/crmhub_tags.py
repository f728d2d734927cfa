"""Display helpers for customer values (already filtered and masked by accounts.policy)."""

from __future__ import annotations

from datetime import date, datetime

from django import template
from django.utils import dateformat, formats
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import template_localtime
from django.utils.translation import gettext as _

from crmhub.choices import Gender

register = template.Library()


@register.filter
def field_value(value, field=None):  # noqa: ANN001, ANN201
    """A person-readable form of one dictionary value: choices by label, yes/no, lists joined."""
    if value is None or value == "" or value == []:
        return ""
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, (list, tuple)):
        return "、".join(str(v) for v in value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if getattr(field, "name", None) == "gender" and value in Gender.values:
        return Gender(value).label
    return value


@register.filter
def field_label(name: str, fields) -> str:  # noqa: ANN001
    """The dictionary label of ``name`` (``fields``: name -> FieldDefinition), else the name."""
    field = fields.get(name) if fields else None
    return field.label if field is not None else name


@register.filter
def match_comparison_label(code: str) -> str:
    """A matcher comparison (name, mobile, ...) in the reader's language; unknown codes as they are."""
    from dedup.choices import MATCH_COMPARISON_LABELS

    return str(MATCH_COMPARISON_LABELS[code]) if code in MATCH_COMPARISON_LABELS else code


@register.filter
def match_level_label(code: str) -> str:
    """A matcher comparison level (exact, sound_alike, ...) in the reader's language."""
    from dedup.choices import MATCH_LEVEL_LABELS

    return str(MATCH_LEVEL_LABELS[code]) if code in MATCH_LEVEL_LABELS else code


@register.filter
def channel_label(value: str) -> str:
    """The label of a change channel (web, api, import, connector, merge, ...)."""
    from crmhub.choices import ChangeChannel

    return str(ChangeChannel(value).label) if value in ChangeChannel.values else value


@register.filter
def ref_url(ref: str) -> str:
    """Where a history reference leads: an import run's page, a merge on the customer page."""
    from django.urls import reverse

    kind, _sep, number = (ref or "").partition(":")
    if not number.isdigit():
        return ""
    if kind == "import_run":
        return reverse("imports:run-detail", args=[int(number)])
    if kind == "merge":
        return f"#merge-{number}"
    return ""


_TIMELINE_ITEM = (
    '<li class="kind-{kind}" data-kind="{kind}"><time datetime="{iso}">{when}</time>\n'
    '    <span class="badge">{label}</span> {title}{amount}\n'
    '    {status} <span class="muted">{source}</span></li>\n'
)


@register.simple_tag
def timeline_items(items) -> SafeString:  # noqa: ANN001
    """The timeline's rows, built here rather than by template tags: 50 rows of a dozen lookups
    and two date filters each were the largest part of the customer page's CPU time."""
    from crmhub.choices import InteractionKind

    labels = dict(InteractionKind.choices)
    rows = []
    for i in items:
        at = template_localtime(i.occurred_at)
        rows.append(
            format_html(
                _TIMELINE_ITEM,
                kind=i.kind,
                iso=dateformat.format(at, "c"),
                when=dateformat.format(at, "Y-m-d H:i"),
                label=labels.get(i.kind, i.kind),
                title=i.title,
                amount=format_html(" · {} {}", formats.localize(i.amount), i.currency) if i.amount is not None else "",
                status=format_html('<span class="muted">({})</span>', i.status) if i.status else "",
                source=i.source.name if i.source_id is not None else "",
            )
        )
    return mark_safe("".join(rows))  # noqa: S308 - every row is format_html's, values escaped
