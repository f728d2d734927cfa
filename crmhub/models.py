"""The core customer domain: sources, the data dictionary, golden records, source
records (the cross-reference), interactions (the timeline) and worker heartbeats."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from accounts.crypto import CIPHERTEXT_PREFIX, EncryptedTextField, blind_index, unseal_values
from crmhub.choices import (
    AlertKind,
    AlertStatus,
    ChangeChannel,
    ChangeEventType,
    CustomerStatus,
    DeliveryStatus,
    FieldType,
    Gender,
    InteractionKind,
    MaskStyle,
    PrivacyRequestKind,
    Sensitivity,
    SourceKind,
)
from crmhub.context import history_user

__all__ = [
    "AlertEvent",
    "AlertRule",
    "ChangeContextHistory",
    "PrivacyRequest",
    "QualitySnapshot",
    "ChangeEvent",
    "Customer",
    "FieldDefinition",
    "Interaction",
    "Source",
    "WebhookDelivery",
    "WebhookSubscription",
    "SourceRecord",
    "WorkerHeartbeat",
]

code_validator = RegexValidator(r"^[a-z0-9][a-z0-9_\-]*$", _("Use lowercase letters, digits, '-' and '_'."))


class ChangeContextHistory(models.Model):
    """Extra columns of every history table: through what the change arrived."""

    change_channel = models.CharField(
        _("channel"), max_length=16, choices=ChangeChannel.choices, default=ChangeChannel.SYSTEM
    )
    change_ref = models.CharField(_("reference"), max_length=200, blank=True)

    class Meta:
        abstract = True


class LeanHistoricalRecords(HistoricalRecords):
    """simple-history's tables with fewer indexes, for the large history tables that imports
    write a row into per record (customers, source records). ``date_index=False`` leaves out the
    index on ``history_date``: every reader looks rows up by the object's id first (history
    pages, restore, unmerge, privacy) and only sorts those by date. The ``history_user`` index
    keeps only rows that have a user (``user_index_name``): the only lookup by user is the
    SET NULL of deleting a user, an equality that never asks for rows without one, and imports
    run by the system (connector schedules) write none."""

    def __init__(self, *, date_index: bool = True, user_index_name: str | None = None, **kwargs) -> None:  # noqa: ANN003
        self.date_index = date_index
        self.user_index_name = user_index_name
        super().__init__(**kwargs)

    @property
    def _date_indexing(self) -> bool | str:
        return HistoricalRecords._date_indexing.fget(self) if self.date_index else False

    def _get_history_user_fields(self) -> dict:
        fields = super()._get_history_user_fields()
        if self.user_index_name:
            fields["history_user"].db_index = False
        return fields

    def get_meta_options(self, model: type[models.Model]) -> dict:
        meta = super().get_meta_options(model)
        if self.user_index_name:
            meta["indexes"] = (
                *meta.get("indexes", ()),
                models.Index(
                    fields=["history_user"],
                    condition=models.Q(history_user__isnull=False),
                    name=self.user_index_name,
                ),
            )
        return meta


def _history(**kwargs) -> HistoricalRecords:  # noqa: ANN003
    return LeanHistoricalRecords(bases=[ChangeContextHistory], get_user=history_user, **kwargs)


class Source(models.Model):
    """A system customer records come from: a spreadsheet owner, an ERP, a POS, an API client."""

    code = models.CharField(_("code"), max_length=64, unique=True, validators=[code_validator])
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=16, choices=SourceKind.choices, default=SourceKind.FILE)
    trust_rank = models.PositiveSmallIntegerField(
        _("trust rank"), default=50, help_text=_("0-100; survivorship prefers values from more trusted sources.")
    )
    description = models.TextField(_("description"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    history = _history()

    class Meta:
        ordering = ["-trust_rank", "code"]
        verbose_name = _("source")
        verbose_name_plural = _("sources")
        # Granted per source with django-guardian (accounts.permissions).
        permissions = [
            ("manage_source", _("Can manage the source's imports, mappings and connectors")),
            ("push_to_source", _("Can push records to the source through the API")),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


def validation_pattern_check(pattern: str) -> None:
    """A field's validation pattern must be a regular expression Python can compile."""
    import re

    from django.core.exceptions import ValidationError

    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValidationError(_("Not a valid regular expression: %(error)s"), params={"error": exc}) from exc


class FieldDefinition(models.Model):
    """One entry of the data dictionary.

    Core fields are columns of ``Customer``; custom fields added by admins live in
    ``Customer.custom``. Sensitivity and mask style drive the field-level policy.
    """

    name = models.SlugField(_("name"), max_length=64, unique=True)
    label_en = models.CharField(_("English label"), max_length=100)
    label_zh = models.CharField(_("Chinese label"), max_length=100)
    field_type = models.CharField(_("type"), max_length=16, choices=FieldType.choices, default=FieldType.TEXT)
    sensitivity = models.CharField(
        _("sensitivity"), max_length=16, choices=Sensitivity.choices, default=Sensitivity.INTERNAL
    )
    mask_style = models.CharField(_("mask style"), max_length=16, choices=MaskStyle.choices, default=MaskStyle.NONE)
    is_identity_key = models.BooleanField(
        _("identity key"), default=False, help_text=_("Equal normalized values identify the same person.")
    )
    is_core = models.BooleanField(_("core field"), default=False, editable=False)
    validation_regex = models.CharField(
        _("validation pattern"),
        max_length=300,
        blank=True,
        validators=[validation_pattern_check],
        help_text=_("A regular expression every cleaned value must match in full; others are flagged."),
    )
    synonyms = models.JSONField(
        _("header synonyms"), default=list, blank=True, help_text=_("Column headers that mean this field.")
    )
    choices = models.JSONField(
        _("allowed values"),
        default=list,
        blank=True,
        help_text=_("A list of the values this field may take; others are flagged."),
    )
    sort_order = models.PositiveSmallIntegerField(_("order"), default=100)
    description = models.TextField(_("description"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    history = _history()

    class Meta:
        ordering = ["sort_order", "name"]
        verbose_name = _("field definition")
        verbose_name_plural = _("data dictionary")

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return self.label_zh if (get_language() or "").startswith("zh") else self.label_en


class CustomerQuerySet(models.QuerySet):
    def active(self) -> CustomerQuerySet:
        return self.filter(status=CustomerStatus.ACTIVE)


class Customer(models.Model):
    """A golden record: the best known values about one person.

    A merged customer stays as a tombstone (``status=merged``, ``merged_into`` set) so
    that its old id keeps resolving. ``version`` is bumped on every change and checked by
    steward edits (optimistic locking).
    """

    # Names
    full_name = models.CharField(_("full name"), max_length=200, blank=True)
    family_name = models.CharField(_("family name"), max_length=100, blank=True)
    given_name = models.CharField(_("given name"), max_length=100, blank=True)
    name_pinyin = models.CharField(_("name in pinyin"), max_length=200, blank=True)
    gender = models.CharField(_("gender"), max_length=1, choices=Gender.choices, blank=True)
    birth_date = models.DateField(_("birth date"), null=True, blank=True)
    # Contact
    mobile = models.CharField(_("mobile"), max_length=32, blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    email = models.CharField(_("email"), max_length=254, blank=True)
    # Identity (id_number is secret: encrypted at rest, found through its blind index)
    id_number = EncryptedTextField(_("ID number"), blank=True)
    id_number_hash = models.CharField(_("ID number blind index"), max_length=64, blank=True, editable=False)
    member_no = models.CharField(_("member number"), max_length=64, blank=True)
    wechat_openid = models.CharField(_("WeChat openid"), max_length=64, blank=True)
    wechat_unionid = models.CharField(_("WeChat unionid"), max_length=64, blank=True)
    # Work
    company = models.CharField(_("company"), max_length=200, blank=True)
    job_title = models.CharField(_("job title"), max_length=100, blank=True)
    # Address
    province = models.CharField(_("province"), max_length=50, blank=True)
    city = models.CharField(_("city"), max_length=50, blank=True)
    district = models.CharField(_("district"), max_length=50, blank=True)
    address = models.CharField(_("address"), max_length=300, blank=True)
    postcode = models.CharField(_("postcode"), max_length=16, blank=True)
    country = models.CharField(_("country"), max_length=2, blank=True, default="CN")
    # Marketing
    tags = models.JSONField(_("tags"), default=list, blank=True)
    consent_marketing = models.BooleanField(_("marketing consent"), null=True, blank=True)
    consent_sms = models.BooleanField(_("SMS consent"), null=True, blank=True)
    consent_email = models.BooleanField(_("email consent"), null=True, blank=True)
    # Admin-defined fields of the data dictionary, by FieldDefinition.name
    custom = models.JSONField(_("custom fields"), default=dict, blank=True)
    # Stewardship
    status = models.CharField(_("status"), max_length=16, choices=CustomerStatus.choices, default=CustomerStatus.ACTIVE)
    merged_into = models.ForeignKey(
        "self",
        verbose_name=_("merged into"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,  # Meta.indexes: tombstones only
    )
    version = models.PositiveIntegerField(_("version"), default=1)
    quality_flags = models.JSONField(_("data-quality flags"), default=dict, blank=True)
    # Row scoping for sales (see accounts.permissions)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_customers",
        db_index=False,  # Meta.indexes: owned customers only
    )
    team = models.CharField(_("team"), max_length=64, blank=True)
    region = models.CharField(_("region"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    # The history table keeps only the index on the customer id (the history page's lookup):
    # copies of the search indexes there would only slow every bulk write down.
    history = _history(
        excluded_fields=["updated_at", "name_pinyin", "id_number_hash"],
        date_index=False,
        user_index_name="crmhub_histcustomer_user",
        no_db_index=[
            "mobile",
            "email",
            "member_no",
            "wechat_unionid",
            "status",
            "team",
            "region",
            "merged_into",
            "owner",
        ],
    )
    objects = CustomerQuerySet.as_manager()

    # Data-dictionary fields that are columns here, in display order.
    CORE_FIELDS = (
        "full_name",
        "family_name",
        "given_name",
        "gender",
        "birth_date",
        "mobile",
        "phone",
        "email",
        "id_number",
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
        "tags",
        "consent_marketing",
        "consent_sms",
        "consent_email",
    )

    class Meta:
        ordering = ["-id"]
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        # Every index is paid for by every bulk import, so each serves a lookup that exists (see
        # docs/architecture.md "Customer indexes"): no varchar_pattern_ops twins (nothing searches
        # these columns with LIKE 'x%'), and the columns that are mostly empty or mostly one value
        # index only the rows a lookup can ask for (real-time matching, search and the privacy
        # tools look up non-empty values; sales scoping a non-empty team or region or an owner;
        # tombstone lookups a status other than active). The search's trigram indexes are
        # PostgreSQL-only (migration 0011) and hold active customers only (0016).
        indexes = [
            # Search by pinyin (equality and ranges) and real-time matching's "same sound-alike name
            # and birth date" (dedup.realtime): through the name alone a common name (~3k customers
            # at 1M) costs as many heap reads. One index serves both.
            models.Index(fields=["name_pinyin", "birth_date"], name="crmhub_customer_name_birth"),
            models.Index(fields=["mobile"], name="crmhub_customer_mobile"),
            models.Index(fields=["email"], name="crmhub_customer_email"),
            models.Index(
                fields=["id_number_hash"], condition=~models.Q(id_number_hash=""), name="crmhub_customer_id_number_hash"
            ),
            models.Index(fields=["member_no"], condition=~models.Q(member_no=""), name="crmhub_customer_member_no"),
            models.Index(
                fields=["wechat_unionid"], condition=~models.Q(wechat_unionid=""), name="crmhub_customer_wechat_unionid"
            ),
            models.Index(fields=["status"], condition=~models.Q(status="active"), name="crmhub_customer_inactive"),
            models.Index(
                fields=["merged_into"],
                condition=models.Q(merged_into__isnull=False),
                name="crmhub_customer_merged_into",
            ),
            models.Index(fields=["owner"], condition=models.Q(owner__isnull=False), name="crmhub_customer_owner"),
            models.Index(fields=["team"], condition=~models.Q(team=""), name="crmhub_customer_team"),
            models.Index(fields=["region"], condition=~models.Q(region=""), name="crmhub_customer_region"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status="merged") | models.Q(merged_into__isnull=False),
                name="crmhub_customer_merged_has_target",
            ),
        ]

    def __str__(self) -> str:
        return self.full_name or f"#{self.pk}"

    def save(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        # Derived columns only; no side effects on other rows.
        self.id_number_hash = blind_index(self.id_number)
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("customer-detail", args=[self.pk])

    def get_value(self, field_name: str):  # noqa: ANN201
        """A data-dictionary value, core or custom (a secret custom value is stored sealed)."""
        if field_name in self.CORE_FIELDS:
            return getattr(self, field_name)
        value = self.custom.get(field_name)
        if isinstance(value, str) and value.startswith(CIPHERTEXT_PREFIX):
            return unseal_values({field_name: value})[field_name]
        return value


class SourceRecord(models.Model):
    """One record as a source holds it, linked to the golden record it belongs to.

    ``(source, source_key)`` is the cross-reference: the key the person has in that system.
    ``raw`` keeps the row exactly as it arrived (unmapped columns included); ``normalized``
    holds the cleaned data-dictionary values; ``flags`` the reasons for values that failed
    validation (kept raw, never dropped).
    """

    # No index of its own: the unique (source, source_key) below serves every lookup by source.
    source = models.ForeignKey(
        Source, verbose_name=_("source"), on_delete=models.PROTECT, related_name="records", db_index=False
    )
    source_key = models.CharField(_("source key"), max_length=255)
    customer = models.ForeignKey(
        Customer,
        verbose_name=_("customer"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="source_records",
    )
    raw = models.JSONField(_("raw values"), default=dict, blank=True)
    normalized = models.JSONField(_("normalized values"), default=dict, blank=True)
    flags = models.JSONField(_("validation flags"), default=dict, blank=True)
    record_hash = models.CharField(_("content hash"), max_length=64, blank=True)
    first_seen_at = models.DateTimeField(_("first seen"), default=timezone.now)
    last_seen_at = models.DateTimeField(_("last synced"), default=timezone.now)
    source_updated_at = models.DateTimeField(_("updated at source"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    # The history table keeps the indexes on the record id (its history, privacy) and on the
    # customer (dedup.selectors); nothing looks its rows up by source or date.
    history = _history(
        excluded_fields=["last_seen_at", "updated_at"],
        date_index=False,
        user_index_name="crmhub_histsourcerecord_user",
        no_db_index=["source"],
    )

    class Meta:
        ordering = ["source", "source_key"]
        verbose_name = _("source record")
        verbose_name_plural = _("source records")
        constraints = [
            models.UniqueConstraint(fields=["source", "source_key"], name="crmhub_sourcerecord_unique_source_key"),
        ]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.source_key}"


class Interaction(models.Model):
    """Something a customer did through some channel: an order, a ticket, a visit, a call."""

    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.PROTECT, related_name="interactions"
    )
    source = models.ForeignKey(
        Source, verbose_name=_("source"), null=True, blank=True, on_delete=models.PROTECT, related_name="interactions"
    )
    source_record = models.ForeignKey(
        SourceRecord,
        verbose_name=_("source record"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="interactions",
    )
    kind = models.CharField(_("kind"), max_length=16, choices=InteractionKind.choices)
    external_id = models.CharField(_("external id"), max_length=128, blank=True)
    occurred_at = models.DateTimeField(_("when"), db_index=True)
    title = models.CharField(_("title"), max_length=300, blank=True)
    status = models.CharField(_("status"), max_length=32, blank=True)
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3, blank=True, default="CNY")
    details = models.JSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    history = _history()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name = _("interaction")
        verbose_name_plural = _("interactions")
        indexes = [models.Index(fields=["customer", "-occurred_at"], name="crmhub_interaction_timeline")]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=~models.Q(external_id=""),
                name="crmhub_interaction_unique_external_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.external_id or self.pk}"


class WorkerHeartbeat(models.Model):
    """Written by each Celery worker every few seconds, so that the site and the command
    line can tell whether any worker is alive whatever the broker."""

    hostname = models.CharField(_("worker"), max_length=255, unique=True)
    last_seen = models.DateTimeField(_("last seen"))
    started_at = models.DateTimeField(_("started"))
    pid = models.PositiveIntegerField(_("process id"), default=0)
    # Set by the probe task: proves a round trip broker -> worker -> database.
    probe_nonce = models.CharField(_("last probe"), max_length=64, blank=True)

    class Meta:
        ordering = ["-last_seen"]
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")

    def __str__(self) -> str:
        return self.hostname


class ChangeEvent(models.Model):
    """The outbox: one change to a golden record, written in the same transaction as the change.

    ``position`` is the change feed's cursor. It is assigned after commit, in the order in
    which events become final (see crmhub.outbox), so that a consumer reading "after N" can
    never skip an event that committed late. ``event_id`` lets consumers apply idempotently.
    Secret-level values in ``data`` are sealed (accounts.crypto).
    """

    event_id = models.UUIDField(_("event id"), default=uuid.uuid4, unique=True, editable=False)
    position = models.BigIntegerField(_("feed position"), null=True, blank=True, unique=True)
    event_type = models.CharField(_("event"), max_length=16, choices=ChangeEventType.choices)
    customer_id = models.BigIntegerField(_("customer"), db_index=True)
    changed_fields = models.JSONField(_("changed fields"), default=list, blank=True)
    data = models.JSONField(_("data"), default=dict, blank=True)
    channel = models.CharField(_("channel"), max_length=16, choices=ChangeChannel.choices, default=ChangeChannel.SYSTEM)
    ref = models.CharField(_("reference"), max_length=200, blank=True)
    user_id = models.BigIntegerField(_("user"), null=True, blank=True)
    occurred_at = models.DateTimeField(_("when"), default=timezone.now)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = _("change event")
        verbose_name_plural = _("change events")
        indexes = [
            models.Index(
                fields=["id"], condition=models.Q(position__isnull=True), name="crmhub_changeevent_unsequenced"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.position or '-'} {self.event_type} customer {self.customer_id}"


class WebhookSubscription(models.Model):
    """A downstream system that receives change events by HTTP POST.

    Payloads are masked by ``role`` exactly as for a user with that role, signed with
    ``secret`` (HMAC-SHA256), delivered at least once and in order per customer.
    ``cursor`` is the last feed position fanned out to this subscription.
    """

    name = models.CharField(_("name"), max_length=100, unique=True)
    url = models.URLField(_("URL"), max_length=500)
    event_types = models.JSONField(
        _("event types"), default=list, blank=True, help_text=_("Empty means every event type.")
    )
    fields = models.JSONField(
        _("fields"), default=list, blank=True, help_text=_("Data-dictionary fields to send; empty means all.")
    )
    role = models.CharField(_("role for masking"), max_length=64, default="api_client")
    secret = EncryptedTextField(_("signing secret"))
    is_active = models.BooleanField(_("active"), default=True)
    cursor = models.BigIntegerField(_("fanned out up to"), default=0)
    consecutive_failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    disabled_reason = models.CharField(_("why disabled"), max_length=300, blank=True)
    dispatch_lease_until = models.DateTimeField(_("dispatching until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    history = _history(excluded_fields=["cursor", "consecutive_failures", "dispatch_lease_until"])

    class Meta:
        ordering = ["name"]
        verbose_name = _("webhook subscription")
        verbose_name_plural = _("webhook subscriptions")

    def __str__(self) -> str:
        return self.name


class WebhookDelivery(models.Model):
    """One event for one subscription: the delivery log and the retry state."""

    subscription = models.ForeignKey(
        WebhookSubscription, verbose_name=_("subscription"), on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(ChangeEvent, verbose_name=_("event"), on_delete=models.CASCADE, related_name="+")
    position = models.BigIntegerField(_("feed position"))
    customer_id = models.BigIntegerField(_("customer"))
    status = models.CharField(
        _("status"), max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    last_status_code = models.PositiveSmallIntegerField(_("last HTTP status"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    last_duration_ms = models.PositiveIntegerField(_("last duration (ms)"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["subscription", "position"]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.UniqueConstraint(fields=["subscription", "event"], name="crmhub_webhookdelivery_unique_event"),
        ]
        indexes = [models.Index(fields=["subscription", "status", "position"], name="crmhub_delivery_queue")]

    def __str__(self) -> str:
        return f"{self.subscription_id}:{self.position} {self.status}"


#
# Data quality (issue 8 items 3-6): daily metric snapshots, alert rules and their events,
# data-subject requests.
#


class QualitySnapshot(models.Model):
    """One data-quality figure of one day: a metric of a field, for a source or for all (golden
    records and cross-source figures have no source). ``value`` is a share 0-1 for ratios and
    hours for freshness; ``numerator``/``denominator`` give the counts behind a ratio.
    Re-running the metrics on the same day replaces that day's rows (crmhub.quality)."""

    date = models.DateField(_("date"), db_index=True)
    source = models.ForeignKey(
        Source, verbose_name=_("source"), null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    field = models.CharField(_("field"), max_length=64, blank=True)
    metric = models.CharField(_("metric"), max_length=32)
    value = models.FloatField(_("value"), null=True, blank=True)
    numerator = models.BigIntegerField(_("numerator"), null=True, blank=True)
    denominator = models.BigIntegerField(_("denominator"), null=True, blank=True)
    computed_at = models.DateTimeField(_("computed"), default=timezone.now)

    class Meta:
        ordering = ["date", "metric", "source", "field"]
        verbose_name = _("quality snapshot")
        verbose_name_plural = _("quality snapshots")
        indexes = [models.Index(fields=["metric", "field", "date"], name="crmhub_quality_trend")]

    def __str__(self) -> str:
        return f"{self.date} {self.metric} {self.source_id or '*'}/{self.field or '*'} = {self.value}"


class AlertRule(models.Model):
    """A condition worth telling someone about, evaluated after each metrics run and periodically.

    ``metric_below``/``metric_above`` compare the latest snapshot of ``metric`` (of ``field``,
    of ``source`` or of every source when empty) with ``threshold``; ``no_sync`` fires for a
    source without a successful import or sync for ``threshold`` hours; ``backlog_above`` when
    more than ``threshold`` match candidates wait for review; ``webhook_disabled`` for each
    disabled webhook subscription.
    """

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=24, choices=AlertKind.choices)
    metric = models.CharField(_("metric"), max_length=32, blank=True)
    source = models.ForeignKey(
        Source,
        verbose_name=_("source"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text=_("Empty means every source."),
    )
    field = models.CharField(_("field"), max_length=64, blank=True)
    threshold = models.FloatField(_("threshold"), default=0)
    email_to = models.TextField(_("email recipients"), blank=True, help_text=_("Comma-separated addresses."))
    webhook_url = models.URLField(_("webhook URL"), max_length=500, blank=True)
    webhook_secret = EncryptedTextField(_("webhook signing secret"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("alert rule")
        verbose_name_plural = _("alert rules")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError
        from django.core.validators import validate_email

        from crmhub.choices import QualityMetric

        if self.kind in (AlertKind.METRIC_BELOW, AlertKind.METRIC_ABOVE) and self.metric not in QualityMetric.values:
            raise ValidationError({"metric": _("Choose one of: %(m)s.") % {"m": ", ".join(QualityMetric.values)}})
        for address in self.recipients:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError({"email_to": _("%(a)s is not an e-mail address.") % {"a": address}}) from None
        if not self.recipients and not self.webhook_url:
            raise ValidationError(_("Give e-mail recipients, a webhook URL or both."))

    @property
    def recipients(self) -> list[str]:
        return [a.strip() for a in self.email_to.replace(";", ",").split(",") if a.strip()]


class AlertEvent(models.Model):
    """One alert: open while its rule's condition holds for ``subject``, then resolved.

    At most one open event per (rule, subject): a condition that persists never fires again,
    one that clears and comes back opens a new event."""

    rule = models.ForeignKey(AlertRule, verbose_name=_("rule"), on_delete=models.CASCADE, related_name="events")
    subject = models.CharField(_("subject"), max_length=200)
    status = models.CharField(
        _("status"), max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN, db_index=True
    )
    value = models.FloatField(_("value"), null=True, blank=True)
    message = models.CharField(_("message"), max_length=500)
    opened_at = models.DateTimeField(_("opened"), default=timezone.now)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    notified_at = models.DateTimeField(_("notified"), null=True, blank=True)
    notify_errors = models.JSONField(_("notification errors"), default=list, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject"], condition=models.Q(status="open"), name="crmhub_alertevent_unique_open"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}:{self.subject} {self.status}"


class PrivacyRequest(models.Model):
    """A data-subject request (PIPL) handled by an admin: what was done and to which records.

    Holds no personal values: the identifiers searched for are kept only as the kinds used
    (mobile, email, ID number), the matched records by id."""

    kind = models.CharField(_("kind"), max_length=16, choices=PrivacyRequestKind.choices)
    identifiers = models.JSONField(_("identifiers used"), default=list, blank=True)
    customer_ids = models.JSONField(_("customers"), default=list, blank=True)
    counts = models.JSONField(_("records"), default=dict, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    acting_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("handled by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("when"), default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("data-subject request")
        verbose_name_plural = _("data-subject requests")
        permissions = [("handle_privacy_requests", _("Can search, export and erase a person's data (PIPL)"))]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class ErasedKey(models.Model):
    """A source key whose person was erased or anonymized: imports, syncs and pushes refuse a
    row with this key, so an old spreadsheet cannot bring the person back. Only a keyed hash
    of the key is kept (checked under every configured index key, see accounts.crypto)."""

    source = models.ForeignKey(Source, verbose_name=_("source"), on_delete=models.CASCADE, related_name="+")
    key_hash = models.CharField(_("key hash"), max_length=64)
    privacy_request = models.ForeignKey(
        PrivacyRequest, verbose_name=_("request"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("when"), default=timezone.now)

    class Meta:
        verbose_name = _("erased key")
        verbose_name_plural = _("erased keys")
        constraints = [models.UniqueConstraint(fields=["source", "key_hash"], name="crmhub_erasedkey_unique")]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.key_hash[:8]}"
