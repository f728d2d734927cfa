"""An admin's own rules for a data-dictionary field: a validation pattern and a list of allowed
values (``FieldDefinition.validation_regex`` / ``choices``).

They apply after the field type's cleaning, on the cleaned value, wherever values come in: file
and connector imports, pushes, and a person's edits. A value that breaks a rule is kept and
flagged with the rule it breaks, like any other invalid value (it stays out of the golden record).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from django.utils.translation import gettext as _


@dataclass(frozen=True)
class FieldRules:
    pattern: re.Pattern[str] | None
    allowed: frozenset[str] | None

    def flag(self, value: Any) -> str:  # noqa: ANN401
        """The reason ``value`` (cleaned, not blank) breaks a rule, or ''. Lists (tags) are
        checked item by item."""
        items = value if isinstance(value, list) else [value]
        for item in items:
            text = _text(item)
            if self.allowed is not None and text not in self.allowed:
                # The value itself stays out of the reason: reasons go to error reports and flags
                # unmasked, and the field may be secret.
                return _("not one of the allowed values (%(allowed)s)") % {"allowed": ", ".join(sorted(self.allowed))}
            if self.pattern is not None and self.pattern.fullmatch(text) is None:
                return _("does not match the pattern set for this field (%(pattern)s)") % {
                    "pattern": self.pattern.pattern
                }
        return ""


def _text(value: Any) -> str:  # noqa: ANN401
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def rules_from(definitions: Iterable[tuple[str, str, list]]) -> dict[str, FieldRules]:
    """The rules of the fields that have any, from (name, validation_regex, choices) rows."""
    out = {}
    for name, pattern, choices in definitions:
        if not pattern and not choices:
            continue
        out[name] = FieldRules(
            pattern=re.compile(pattern) if pattern else None,
            allowed=frozenset(_text(c) for c in choices) if choices else None,
        )
    return out


def apply_rules(values: np.ndarray, flags: np.ndarray, rules: FieldRules) -> None:
    """Flag, in place, the valid cleaned values of one column that break ``rules``; each
    distinct value is checked once."""
    at = np.flatnonzero(flags == "")
    if not len(at):
        return
    candidates = values[at]
    keys = np.fromiter((repr(v) if isinstance(v, list) else v for v in candidates), dtype=object, count=len(at))
    codes, distinct = pd.factorize(keys, use_na_sentinel=False)
    firsts = np.zeros(len(distinct), dtype=np.int64)
    firsts[codes[::-1]] = np.arange(len(codes))[::-1]
    reasons = np.empty(len(distinct), dtype=object)
    reasons[:] = [_blank_or(rules, candidates[i]) for i in firsts.tolist()]
    found = reasons.take(codes)
    broken = found != ""
    flags[at[broken]] = found[broken]


def _blank_or(rules: FieldRules, value: Any) -> str:  # noqa: ANN401
    if value is None or value == "" or value == []:
        return ""
    return rules.flag(value)


def apply_all(
    values: Mapping[str, np.ndarray], flags: Mapping[str, np.ndarray], rules: Mapping[str, FieldRules]
) -> None:
    """``apply_rules`` to every cleaned column that has rules."""
    for name, field_rules in rules.items():
        if name in values:
            apply_rules(values[name], flags[name], field_rules)
