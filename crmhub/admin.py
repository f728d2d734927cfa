from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from crmhub.models import (
    AlertEvent,
    AlertRule,
    FieldDefinition,
    PrivacyRequest,
    Source,
    WebhookDelivery,
    WebhookSubscription,
    WorkerHeartbeat,
)
from crmhub.webhooks import webhook_delivery_redeliver, webhook_subscription_enable


@admin.register(Source)
class SourceAdmin(SimpleHistoryAdmin):
    list_display = ["code", "name", "kind", "trust_rank", "is_active", "updated_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name"]


@admin.register(FieldDefinition)
class FieldDefinitionAdmin(SimpleHistoryAdmin):
    list_display = [
        "name",
        "label_zh",
        "label_en",
        "field_type",
        "sensitivity",
        "mask_style",
        "is_identity_key",
        "is_core",
        "is_active",
        "sort_order",
    ]
    list_filter = ["field_type", "sensitivity", "is_identity_key", "is_core", "is_active"]
    list_editable = ["sensitivity", "mask_style", "sort_order"]
    search_fields = ["name", "label_zh", "label_en"]
    readonly_fields = ["is_core"]

    def get_readonly_fields(self, request, obj=None):  # noqa: ANN001, ANN201
        # A core field's name and type are columns of Customer: they cannot change.
        if obj is not None and obj.is_core:
            return ["name", "field_type", "is_core"]
        return ["is_core"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["hostname", "pid", "started_at", "last_seen"]


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(SimpleHistoryAdmin):
    list_display = ["name", "url", "role", "is_active", "cursor", "consecutive_failures", "disabled_reason"]
    list_filter = ["is_active", "role"]
    readonly_fields = ["cursor", "consecutive_failures", "disabled_reason", "dispatch_lease_until"]
    actions = ["enable"]

    def get_form(self, request, obj=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
        form = super().get_form(request, obj, **kwargs)
        if obj is not None and "secret" in form.base_fields:
            # The stored secret is never shown back; leave the field empty to keep it.
            form.base_fields["secret"].required = False
            form.base_fields["secret"].help_text = _("Leave empty to keep the current secret.")
        return form

    def save_model(self, request, obj, form, change):  # noqa: ANN001
        if change and not form.cleaned_data.get("secret"):
            obj.secret = WebhookSubscription.objects.get(pk=obj.pk).secret
        super().save_model(request, obj, form, change)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):  # noqa: ANN001, ANN201
        if obj is not None:
            context["adminform"].form.initial["secret"] = ""
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.action(description=_("Enable again and resend what is waiting"))
    def enable(self, request, queryset) -> None:  # noqa: ANN001
        for subscription in queryset:
            webhook_subscription_enable(subscription=subscription)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "subscription",
        "position",
        "customer_id",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "last_duration_ms",
        "delivered_at",
        "next_attempt_at",
    ]
    list_filter = ["status", "subscription"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["redeliver"]

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False

    @admin.action(description=_("Deliver again"))
    def redeliver(self, request, queryset) -> None:  # noqa: ANN001
        for delivery in queryset:
            webhook_delivery_redeliver(delivery=delivery)


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "metric", "source", "field", "threshold", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name"]


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ["opened_at", "rule", "subject", "status", "value", "resolved_at", "notified_at"]
    list_filter = ["status", "rule"]
    readonly_fields = [f.name for f in AlertEvent._meta.fields]

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(admin.ModelAdmin):
    """Read-only: requests are handled at /privacy/ and recorded, never edited."""

    list_display = ["created_at", "kind", "acting_user", "reason"]
    list_filter = ["kind"]
    readonly_fields = [f.name for f in PrivacyRequest._meta.fields]

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False
