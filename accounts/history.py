"""History and diff views of a golden record, filtered and masked per field.

Each history entry lists the data-dictionary fields that changed with their old and new
values as the viewer may see them. Entries whose only changes are to fields hidden from
the viewer are left out altogether: otherwise "something hidden changed on that day"
would itself leak.
"""

from __future__ import annotations

from typing import Any

from accounts.crypto import unseal_values
from accounts.policy import Access, policy_for

# Columns of the golden record that are not personal data, shown to everyone who may see the record.
STEWARDSHIP_FIELDS = ("status", "merged_into_id")


def _stewardship_label(name: str) -> str:
    """The model field's translated name ("status", "merged into"), not the column name."""
    from crmhub.models import Customer

    return str(Customer._meta.get_field(name.removesuffix("_id")).verbose_name)


def _values(row) -> dict[str, Any]:  # noqa: ANN001
    from crmhub.models import Customer

    values = {name: getattr(row, name) for name in Customer.CORE_FIELDS}
    values.update(unseal_values(row.custom or {}))  # secret custom values are stored sealed
    return values


def present_customer_history(user, customer, *, limit: int | None = 200) -> list[dict[str, Any]]:  # noqa: ANN001
    """Newest first: ``{"id", "previous_id", "at", "user", "channel", "ref", "type", "changes": [{field, old, new}]}``.

    ``previous_id`` is the history row holding the values before this entry (each change's
    ``old``), which a one-click restore names."""
    policy = policy_for(user)
    rows = list(customer.history.select_related("history_user").order_by("history_date", "history_id"))
    entries: list[dict[str, Any]] = []
    previous: dict[str, Any] = {}
    previous_meta: dict[str, Any] = {}
    previous_id = None
    for row in rows:
        current = _values(row)
        meta = {name: getattr(row, name) for name in STEWARDSHIP_FIELDS}
        changes = []
        for name in sorted(
            set(current) | set(previous),
            key=lambda n: (policy.fields[n].sort_order, n) if n in policy.fields else (10**6, n),
        ):
            old, new = previous.get(name), current.get(name)
            if old == new or (old in (None, "", []) and new in (None, "", [])):
                continue
            if name not in policy.fields or policy(name) == Access.HIDDEN:
                continue  # fields outside the dictionary are never shown: nobody set a policy for them
            changes.append(
                {
                    "field": name,
                    "label": str(policy.fields[name].label),
                    "access": int(policy(name)),
                    "old": policy.present(name, old),
                    "new": policy.present(name, new),
                }
            )
        for name in STEWARDSHIP_FIELDS:
            if meta[name] != previous_meta.get(name) and (previous_meta or meta[name] not in (None, "")):
                changes.append(
                    {
                        "field": name,
                        "label": _stewardship_label(name),
                        "access": int(Access.VISIBLE),
                        "old": previous_meta.get(name),
                        "new": meta[name],
                    }
                )
        if changes or row.history_type == "+":
            entries.append(
                {
                    "id": row.history_id,
                    "previous_id": previous_id,
                    "at": row.history_date,
                    "user": row.history_user.get_username() if row.history_user else "",
                    "channel": row.change_channel,
                    "ref": row.change_ref,
                    "type": row.history_type,
                    "changes": changes,
                }
            )
        previous, previous_meta, previous_id = current, meta, row.history_id
    entries.reverse()
    return entries if limit is None else entries[:limit]
