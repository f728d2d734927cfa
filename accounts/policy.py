"""The one place that decides what a user may see and do with each customer field.

Views, serializers, search, exports, history views and webhook payloads all ask here:
``field_access(user, name)`` gives HIDDEN, MASKED, VISIBLE or EDITABLE, and
``present_customer`` turns a golden record into the values this user may receive.

The decision comes from the user's roles and each field's sensitivity (the default
matrix below). Admin-configured per-role, per-field policies override the matrix
(``accounts.models.FieldPolicy``).
"""
from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from accounts.masking import mask
from accounts.roles import Role, user_roles
from crmhub.choices import Sensitivity


class Access(IntEnum):
    HIDDEN = 0
    MASKED = 1
    VISIBLE = 2
    EDITABLE = 3


H, M, V, E = Access.HIDDEN, Access.MASKED, Access.VISIBLE, Access.EDITABLE

# role -> sensitivity -> access, used where no explicit FieldPolicy exists.
DEFAULT_MATRIX: dict[str, dict[str, Access]] = {
    Role.ADMIN: {Sensitivity.PUBLIC: E, Sensitivity.INTERNAL: E, Sensitivity.CONFIDENTIAL: E, Sensitivity.SECRET: M},
    Role.STEWARD: {Sensitivity.PUBLIC: E, Sensitivity.INTERNAL: E, Sensitivity.CONFIDENTIAL: E, Sensitivity.SECRET: M},
    Role.SALES: {Sensitivity.PUBLIC: V, Sensitivity.INTERNAL: V, Sensitivity.CONFIDENTIAL: M, Sensitivity.SECRET: H},
    Role.SUPPORT: {Sensitivity.PUBLIC: V, Sensitivity.INTERNAL: V, Sensitivity.CONFIDENTIAL: M, Sensitivity.SECRET: M},
    Role.AUDITOR: {Sensitivity.PUBLIC: V, Sensitivity.INTERNAL: M, Sensitivity.CONFIDENTIAL: M, Sensitivity.SECRET: H},
    Role.API_CLIENT: {Sensitivity.PUBLIC: V, Sensitivity.INTERNAL: V, Sensitivity.CONFIDENTIAL: V, Sensitivity.SECRET: M},
}
NO_ROLE: dict[str, Access] = {Sensitivity.PUBLIC: V, Sensitivity.INTERNAL: H, Sensitivity.CONFIDENTIAL: H, Sensitivity.SECRET: H}


class Policy:
    """A user's resolved access to every data-dictionary field (built once per request)."""

    def __init__(self, user) -> None:  # noqa: ANN001
        from accounts.models import FieldPolicy
        from crmhub.models import FieldDefinition

        self.user = user
        self.fields = {f.name: f for f in FieldDefinition.objects.filter(is_active=True)}
        roles = user_roles(user)
        overrides: dict[str, Access] = {}
        if roles:
            for field_name, role, access in FieldPolicy.objects.filter(role__in=roles).values_list(
                "field__name", "role", "access"
            ):
                # With several roles, the most generous one wins.
                overrides[field_name] = max(overrides.get(field_name, H), Access(access))
        self.access: dict[str, Access] = {}
        for name, field in self.fields.items():
            if name in overrides:
                self.access[name] = overrides[name]
            elif roles:
                self.access[name] = max(
                    (DEFAULT_MATRIX.get(role, NO_ROLE)[field.sensitivity] for role in roles), default=H
                )
            else:
                self.access[name] = NO_ROLE[field.sensitivity] if user is not None and user.is_authenticated else H

    def __call__(self, field_name: str) -> Access:
        return self.access.get(field_name, H)

    def present(self, field_name: str, value: Any) -> Any:
        """``value`` as this user may see it; callers must drop HIDDEN fields first."""
        access = self(field_name)
        if access >= V:
            return value
        if access == M:
            field = self.fields[field_name]
            return mask(value if isinstance(value, str) or value in (None, "", []) else str(value), field.mask_style)
        return None

    def visible_fields(self, names: Iterable[str] | None = None) -> list[str]:
        names = list(self.fields) if names is None else names
        return [n for n in names if self(n) > H]


def policy_for(user) -> Policy:  # noqa: ANN001
    """The cached Policy of ``user`` for this request."""
    policy = getattr(user, "_crmhub_policy", None) if user is not None else None
    if policy is None:
        policy = Policy(user)
        if user is not None:
            try:
                user._crmhub_policy = policy
            except AttributeError:
                pass
    return policy


def field_access(user, field_name: str) -> Access:  # noqa: ANN001
    return policy_for(user)(field_name)


def present_values(user, values: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN001
    """Filter and mask a dict keyed by data-dictionary names (raw, normalized, diffs...).

    Keys that are not data-dictionary fields (unmapped columns of a raw record) are
    treated as confidential free text: shown to whoever may see confidential fields.
    """
    from accounts.crypto import unseal_values

    policy = policy_for(user)
    out: dict[str, Any] = {}
    for key, value in unseal_values(values).items():
        if key in policy.fields:
            if policy(key) > H:
                out[key] = policy.present(key, value)
        elif _may_see_unmapped(policy):
            out[key] = value
    return out


def _may_see_unmapped(policy: Policy) -> bool:
    confidential = [n for n, f in policy.fields.items() if f.sensitivity == Sensitivity.CONFIDENTIAL]
    return bool(confidential) and all(policy(n) >= V for n in confidential)


def present_customer(user, customer, field_names: Iterable[str] | None = None) -> dict[str, Any]:  # noqa: ANN001
    """The golden record's data-dictionary values as ``user`` may see them (hidden ones absent)."""
    policy = policy_for(user)
    names = policy.visible_fields(field_names)
    return {name: policy.present(name, customer.get_value(name)) for name in names}
