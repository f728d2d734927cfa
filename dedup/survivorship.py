"""Survivorship: which value the golden record keeps for each field when customers are
merged (and, later, when their source records change).

``golden_values_propose`` is what the compare-and-merge screen pre-fills and what a merge
applies when the steward chooses nothing. Each proposal says whose value it is and why, so
the screen can show the reason next to the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_lazy as _

from crmhub.models import Customer

# The fields a merge chooses a value for (tags and custom values are united, not chosen).
CHOSEN_FIELDS = tuple(n for n in Customer.CORE_FIELDS if n != "tags")


@dataclass(frozen=True)
class FieldProposal:
    field: str
    value: Any
    customer_id: int | None  # whose value it is; None when no customer has one
    rule: str  # the rule that chose it
    reason: str  # the rule, said for a person


def _blank(value: Any) -> bool:  # noqa: ANN401
    return value is None or value == "" or value == []


def golden_values_propose(customers: list[Customer], *, survivor_id: int) -> dict[str, FieldProposal]:
    """A value for each field of the merged golden record: the survivor's own where it has
    one, else the first non-blank among the others, oldest customer first."""
    by_id = {c.pk: c for c in customers}
    survivor = by_id[survivor_id]
    others = sorted((c for c in customers if c.pk != survivor_id), key=lambda c: c.pk)
    out: dict[str, FieldProposal] = {}
    for name in CHOSEN_FIELDS:
        own = getattr(survivor, name)
        if not _blank(own):
            out[name] = FieldProposal(name, own, survivor.pk, "survivor", str(_("kept from the surviving record")))
            continue
        donor = next((c for c in others if not _blank(getattr(c, name))), None)
        if donor is None:
            out[name] = FieldProposal(name, own, None, "none", str(_("no record has a value")))
        else:
            out[name] = FieldProposal(
                name, getattr(donor, name), donor.pk, "fill_blank", str(_("the survivor has none; oldest record's"))
            )
    return out
