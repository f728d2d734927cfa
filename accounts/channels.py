"""Every channel through which a customer's values leave the server, in one registry.

Each channel presents values through a function of ``accounts.policy`` (or one built on
it); the permission matrix test (tests/accounts/test_matrix.py) iterates this registry and
fails for a channel it has no check for. Add a channel here when you build one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Channel:
    name: str
    subject: str  # "user": presented for a user; "role": for a bare role (no user)
    presenter: str  # dotted path of the function the channel calls
    where: str  # the routes or entry points that use it


CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in [
        Channel(
            "page",
            "user",
            "accounts.policy.present_customer",
            "/customers/ (list), /customers/<id>/ (the 360° page; its edit form holds values in full only "
            "for fields the user may edit), crmhub.views",
        ),
        Channel(
            "api",
            "user",
            "accounts.policy.present_customer",
            "/api/v1/customers/, /api/v1/customers/<id>/ (GET, and the record a PATCH answers with) and its "
            "source records (present_values)",
        ),
        Channel(
            "search",
            "user",
            "accounts.policy.SEARCH_LOOKUPS",
            "crmhub.selectors.customer_search: only fields seen masked (exact) or visible (partial); "
            "?ordering= through accounts.policy.customer_ordering (fields seen in full only)",
        ),
        Channel(
            "export", "user", "accounts.exports.export_rows", "/accounts/export/ (CSV, XLSX), approved export files"
        ),
        Channel(
            "history",
            "user",
            "accounts.history.present_customer_history",
            "/customers/<id>/history/, the Changes timeline of /customers/<id>/, /api/v1/customers/<id>/history/",
        ),
        Channel(
            "webhook",
            "role",
            "crmhub.webhooks.webhook_payload",
            "webhook deliveries (crmhub.webhooks), by the subscription's role through policy_for_role",
        ),
        Channel(
            "change_feed",
            "user",
            "accounts.policy.present_values",
            "/api/v1/changes/ (crmhub.api.views.ChangeFeedView): event data by the caller's role",
        ),
        Channel(
            "error_report",
            "user",
            "accounts.policy.present_error_row",
            "import error reports: mapped columns per field, unmapped ones as free text",
        ),
        Channel(
            "reveal",
            "user",
            "accounts.services.customer_value_reveal",
            "/accounts/customers/<id>/reveal/, /api/v1/customers/<id>/reveal/ (masked -> plain, logged)",
        ),
        Channel(
            "quality_records",
            "user",
            "accounts.policy.present_values",
            "/quality/records/ (crmhub.quality_views.records): source records behind a quality figure",
        ),
        Channel(
            "review",
            "user",
            "dedup.selectors.compare_view",
            "/dedup/candidates/<id>/compare/ (compare and merge), /dedup/review/ and its bulk confirmation "
            "(dedup.selectors.item_summary), candidate explanations (page and /api/v1/candidates/): "
            "stewards, admins and auditors",
        ),
        Channel(
            "privacy_report",
            "user",
            "accounts.policy.present_customer",
            "/privacy/, /privacy/export/ (crmhub.privacy.privacy_report): data-subject report, admins only",
        ),
    ]
}

# Channels deliberately absent, and why (checked by the matrix test so the list stays honest).
NOT_CHANNELS = {
    "admin": "Customer and SourceRecord are not registered in the Django admin: the admin would show "
    "raw values and bypass masking; stewards edit through the application's own pages.",
}
