"""The one place that decides what a user may see and do with each customer field.

Views, serializers, search, exports, history views and webhook payloads all ask here:
``field_access(user, name)`` gives HIDDEN, MASKED, VISIBLE or EDITABLE, and
``present_customer`` turns a golden record into the values this user may receive.

The decision comes from the user's roles and each field's sensitivity (the default
matrix below). Admin-configured per-role, per-field policies override the matrix
(``accounts.models.FieldPolicy``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from accounts.masking import mask
from accounts.roles import Role, user_roles
from crmhub.choices import MaskStyle, Sensitivity


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
    Role.API_CLIENT: {
        Sensitivity.PUBLIC: V,
        Sensitivity.INTERNAL: V,
        Sensitivity.CONFIDENTIAL: V,
        Sensitivity.SECRET: M,
    },
}
NO_ROLE: dict[str, Access] = {
    Sensitivity.PUBLIC: V,
    Sensitivity.INTERNAL: H,
    Sensitivity.CONFIDENTIAL: H,
    Sensitivity.SECRET: H,
}


class Policy:
    """Resolved access to every data-dictionary field, for a user (built once per request)
    or for a bare set of roles (webhook subscriptions, which have a role and no user)."""

    def __init__(self, user, roles: set[str] | None = None) -> None:  # noqa: ANN001
        self.user = user
        if roles is None:
            roles = user_roles(user)
            authenticated = user is not None and user.is_authenticated
        else:
            authenticated = True
        self.roles = set(roles)
        # Shared, read-only: built once per process and policy stamp (see _resolved).
        self.fields, self.access = _resolved(frozenset(roles), authenticated, _stamp_of(user))

    @staticmethod
    def build(roles: frozenset[str], authenticated: bool) -> tuple[dict, dict[str, Access]]:
        """Every active field definition and this set of roles' access to it, from the database."""
        from accounts.models import FieldPolicy
        from crmhub.models import FieldDefinition

        fields = {f.name: f for f in FieldDefinition.objects.filter(is_active=True)}
        # role -> field -> access, from admin-configured FieldPolicy rows.
        overrides: dict[str, dict[str, Access]] = {}
        if roles:
            for field_name, role, access in FieldPolicy.objects.filter(role__in=roles).values_list(
                "field__name", "role", "access"
            ):
                overrides.setdefault(role, {})[field_name] = Access(access)
        access: dict[str, Access] = {}
        for name, field in fields.items():
            if roles:
                # Each role's own decision (its override, else the default for the field's
                # sensitivity); with several roles, the most generous one wins.
                access[name] = max(
                    overrides.get(role, {}).get(name, DEFAULT_MATRIX.get(role, NO_ROLE)[field.sensitivity])
                    for role in roles
                )
            else:
                access[name] = NO_ROLE[field.sensitivity] if authenticated else H
        return fields, access

    def __call__(self, field_name: str) -> Access:
        return self.access.get(field_name, H)

    def present(self, field_name: str, value: Any) -> Any:
        """``value`` as this user may see it; callers must drop HIDDEN fields first."""
        access = self(field_name)
        if access >= V:
            return value
        if access == M:
            field = self.fields[field_name]
            if value is None or value == "" or value == []:
                return value
            # A masked value never equals the value: a field without a mask style of its own
            # (booleans, codes) is hidden completely when masked.
            style = field.mask_style if field.mask_style != MaskStyle.NONE else MaskStyle.FULL
            return mask(value_as_text(value), style)
        return None

    def visible_fields(self, names: Iterable[str] | None = None) -> list[str]:
        names = list(self.fields) if names is None else names
        return [n for n in names if self(n) > H]


#
# Per-process cache of resolved policies and of users' roles.
#
# Building a policy takes three queries (the user's groups, the field definitions, the field
# policies) and a pass over every field; the customer page and every API call need one. Each
# process keeps what it built under the token of the PolicyStamp row, and reads that one row
# per request (per user object): whatever changes a field definition, a field policy, a group or
# a group membership gives the row a new random token (policy_stamp_bump, from the receivers
# below, which also see the admin's edits), so every worker rebuilds on its next request. A
# random token rather than a counter: a rolled-back change returns the old token together with
# the old rows, so what was cached under it is still right. Without the row nothing is cached.

_cache_lock = threading.Lock()
_cache: dict = {"token": None, "policies": {}, "roles": {}}
_generation = [0]
_CACHED_MAX = 10_000


def _read_stamp() -> str | None:
    from accounts.models import PolicyStamp

    return PolicyStamp.objects.filter(pk=1).values_list("token", flat=True).first() or None


def _stamp_of(user) -> tuple[str | None, int]:  # noqa: ANN001
    """The policy stamp as read once per user object (i.e. per request), with this process's
    cache generation at the time (policy_cache_clear, which every local bump calls, moves it on)."""
    stamp = getattr(user, "_crmhub_policy_stamp", None) if user is not None else None
    if stamp is None:
        stamp = (_read_stamp(), _generation[0])
        if user is not None:
            try:
                user._crmhub_policy_stamp = stamp
            except AttributeError:
                pass
    return stamp


def _cached(kind: str, key, stamp: tuple[str | None, int], build):  # noqa: ANN001, ANN202
    """``build()``, cached under ``kind`` and ``key`` for this policy stamp.

    What a miss builds is kept under the request's token, unless this process changed the stamp
    since the request read it: then the token no longer describes the rows (and may come back
    with a rollback), so the stamp is read afresh. A change committed by another process meanwhile
    only makes the rows newer than the token, and requests that see the new token rebuild."""
    token, generation = stamp
    if token is not None:
        with _cache_lock:
            if _cache["token"] == token and key in _cache[kind]:
                return _cache[kind][key]
    if generation != _generation[0]:
        token = _read_stamp()
    value = build()
    if token is not None:
        with _cache_lock:
            if _cache["token"] != token:
                _cache.update(token=token, policies={}, roles={})
            if len(_cache[kind]) >= _CACHED_MAX:
                _cache[kind].clear()
            _cache[kind][key] = value
    return value


def _resolved(roles: frozenset[str], authenticated: bool, stamp: tuple) -> tuple[dict, dict[str, Access]]:
    return _cached("policies", (roles, authenticated), stamp, lambda: Policy.build(roles, authenticated))


def cached_group_names(user) -> frozenset[str]:  # noqa: ANN001
    """The names of ``user``'s groups, cached per process under the policy stamp
    (accounts.roles.user_roles adds what the user row itself says: superuser)."""
    return _cached("roles", user.pk, _stamp_of(user), lambda: frozenset(user.groups.values_list("name", flat=True)))


def policy_cache_clear() -> None:
    """Forget what this process cached (as a freshly started worker would)."""
    with _cache_lock:
        _cache.update(token=None, policies={}, roles={})
        _generation[0] += 1


def policy_stamp_bump() -> None:
    """Give the policy stamp a new token: every process rebuilds its policies on its next request.
    Call in the transaction that changes what policies are built from (the receivers below do for
    saves and deletes; bulk writes must call it themselves)."""
    from accounts.models import PolicyStamp

    PolicyStamp.objects.update_or_create(pk=1, defaults={"token": uuid.uuid4().hex})
    policy_cache_clear()


def _bump_receiver(sender, **kwargs) -> None:  # noqa: ANN001, ANN003
    action = kwargs.get("action")  # m2m_changed only
    if action is None or action.startswith("post_"):
        policy_stamp_bump()


def policy_stamp_receivers_connect() -> None:
    """Bump the stamp on every save or delete of what policies are built from, wherever it comes
    from (services, the admin, the shell). Connected in AccountsConfig.ready."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db.models.signals import m2m_changed, post_delete, post_save

    from accounts.models import FieldPolicy
    from crmhub.models import FieldDefinition

    for model in (FieldDefinition, FieldPolicy, Group):
        post_save.connect(_bump_receiver, sender=model, dispatch_uid=f"policy_stamp_save_{model.__name__}")
        post_delete.connect(_bump_receiver, sender=model, dispatch_uid=f"policy_stamp_delete_{model.__name__}")
    user_model = get_user_model()
    post_delete.connect(_bump_receiver, sender=user_model, dispatch_uid="policy_stamp_delete_user")
    m2m_changed.connect(_bump_receiver, sender=user_model.groups.through, dispatch_uid="policy_stamp_user_groups")


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


def value_as_text(value: Any) -> str:
    """The one text form of a value, for pages, exports and masking: dates ISO, lists joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ", ".join(value_as_text(v) for v in value)
    return str(value)


def policy_for_role(role: str) -> Policy:
    """The policy of a role without a user (a webhook subscription's role)."""
    return Policy(None, roles={role})


def present_webhook_payload(role: str, customer) -> dict[str, Any]:  # noqa: ANN001
    """A customer's values for a webhook subscription acting as ``role``: JSON-ready,
    hidden fields absent, masked ones masked."""
    policy = policy_for_role(role)
    out: dict[str, Any] = {}
    for name in policy.visible_fields():
        value = policy.present(name, customer.get_value(name))
        out[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return {"id": customer.pk, "status": customer.status, "version": customer.version, "values": out}


def present_error_row(user, row: dict[str, Any], column_fields: dict[str, str]) -> dict[str, Any]:  # noqa: ANN001
    """An import error report's row as ``user`` may see it.

    ``column_fields`` maps a column header to the data-dictionary field it was mapped to:
    such a column is shown, masked or dropped per that field. Unmapped columns are treated
    as ``present_values`` treats keys outside the dictionary (confidential free text).
    """
    from accounts.crypto import unseal_values

    policy = policy_for(user)
    out: dict[str, Any] = {}
    for column, value in unseal_values(row).items():
        field_name = column_fields.get(column)
        if field_name is None and column in policy.fields:
            field_name = column
        if field_name is not None:
            if field_name not in policy.fields:
                # Mapped to a field that is no longer in the dictionary: nobody decided, so hide it.
                continue
            if policy(field_name) > H:
                out[column] = policy.present(field_name, value)
        elif _may_see_unmapped(policy):
            out[column] = value
    return out


# Fields a search may match, and how: "exact" needs at least MASKED access (a masked
# viewer may find a person by a value they already know, never by part of it), "partial"
# (substring, prefix) needs VISIBLE. See crmhub.selectors.customer_search.
SEARCH_LOOKUPS: dict[str, str] = {
    "mobile": "exact",
    "phone": "exact",
    "email": "exact",
    "id_number": "exact",
    "member_no": "exact",
    "full_name": "partial",
    "company": "partial",
}


def may_search(user, field_name: str, *, partial: bool = False) -> bool:  # noqa: ANN001
    access = field_access(user, field_name)
    return access >= (V if partial else M)


def may_sort(user, field_name: str) -> bool:  # noqa: ANN001
    """Sorting by a field reveals the order of its values: only for those who see them."""
    return field_access(user, field_name) >= V


def may_edit(user, field_name: str) -> bool:  # noqa: ANN001
    return field_access(user, field_name) >= E


# Dictionary fields a customer list may be ordered by (columns; the encrypted ID number and
# JSON columns have no meaningful order).
SORTABLE_FIELDS = (
    "full_name",
    "family_name",
    "given_name",
    "gender",
    "birth_date",
    "mobile",
    "phone",
    "email",
    "member_no",
    "wechat_openid",
    "wechat_unionid",
    "company",
    "job_title",
    "province",
    "city",
    "district",
    "address",
    "postcode",
    "country",
    "consent_marketing",
    "consent_sms",
    "consent_email",
)


def customer_ordering(user, text: str) -> list[str]:  # noqa: ANN001
    """``order_by`` terms for a comma-separated ``ordering`` parameter ("city,-id").

    Sorting by a field reveals the order of its values, so only fields the user sees in full
    (``may_sort``) are allowed; "id" always is. Raises ValueError naming the refused term.
    """
    terms = [t.strip() for t in (text or "").split(",") if t.strip()]
    out = []
    for term in terms:
        name = term.lstrip("-")
        if name != "id" and (name not in SORTABLE_FIELDS or not may_sort(user, name)):
            raise ValueError(f"cannot order by {name!r}: use id or a field you can see in full")
        out.append(term if term.startswith("-") or term == name else name)
    return [*out, "-id"] if out else ["-id"]
