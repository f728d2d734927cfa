"""Serializers of the core API. Customer values go through accounts.policy: hidden fields
are absent and masked ones masked, for every caller, by role."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.policy import present_customer, present_values
from crmhub.models import ChangeEvent, Customer, Interaction, Source, SourceRecord
from crmhub.outbox import event_changed_fields, event_values, related_ids


class SourceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Source
        fields = ["id", "code", "name", "kind", "trust_rank", "is_active"]


@extend_schema_field(OpenApiTypes.OBJECT)
class PolicyValuesField(serializers.Field):
    """A dict of data-dictionary values, filtered and masked for the requesting user."""

    def to_representation(self, value):  # noqa: ANN001, ANN201
        return present_values(self.context["request"].user, value or {})


class SourceRecordSerializer(serializers.ModelSerializer):
    source = serializers.CharField(source="source.code")
    raw = PolicyValuesField()
    normalized = PolicyValuesField()
    flags = PolicyValuesField()

    class Meta:
        model = SourceRecord
        fields = [
            "id",
            "source",
            "source_key",
            "customer",
            "normalized",
            "raw",
            "flags",
            "first_seen_at",
            "last_seen_at",
            "source_updated_at",
        ]


class InteractionSerializer(serializers.ModelSerializer):
    source = serializers.CharField(source="source.code", default=None)

    class Meta:
        model = Interaction
        fields = [
            "id",
            "kind",
            "source",
            "external_id",
            "occurred_at",
            "title",
            "status",
            "amount",
            "currency",
            "details",
        ]


class CustomerSerializer(serializers.Serializer):
    """A golden record as the requesting user may see it."""

    id = serializers.IntegerField()
    status = serializers.CharField()
    merged_into = serializers.IntegerField(source="merged_into_id", allow_null=True)
    version = serializers.IntegerField()
    values = serializers.SerializerMethodField()
    quality_flags = serializers.JSONField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    url = serializers.SerializerMethodField()

    def get_values(self, customer: Customer) -> dict:
        values = present_customer(self.context["request"].user, customer)
        return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in values.items()}

    def get_url(self, customer: Customer) -> str:
        return self.context["request"].build_absolute_uri(reverse("api:customer-detail", args=[customer.pk]))


class CustomerDetailSerializer(CustomerSerializer):
    source_records = serializers.SerializerMethodField()
    interactions = serializers.SerializerMethodField()

    @extend_schema_field(SourceRecordSerializer(many=True))
    def get_source_records(self, customer: Customer) -> list:
        records = self.context["related"]["source_records"]
        return SourceRecordSerializer(records, many=True, context=self.context).data

    @extend_schema_field(InteractionSerializer(many=True))
    def get_interactions(self, customer: Customer) -> list:
        interactions = self.context["related"]["interactions"]
        return InteractionSerializer(interactions, many=True, context=self.context).data


class CustomerEditSerializer(serializers.Serializer):
    """A partial edit: data-dictionary values by field name, and the version they were read at."""

    values = serializers.DictField(child=serializers.JSONField(), allow_empty=False)
    version = serializers.IntegerField(min_value=1, required=False)


class TombstoneSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    merged_into = serializers.IntegerField()
    merged_into_url = serializers.CharField()


class ChangeEventSerializer(serializers.ModelSerializer):
    """One change-feed event: ``data`` holds dictionary values, filtered and masked by the
    caller's role; ``related`` holds ids that tie events together (``merged_ids`` of a
    survivor, ``merged_into`` of a tombstone, ``restored`` by an unmerge)."""

    changed_fields = serializers.SerializerMethodField()
    data = serializers.SerializerMethodField()
    related = serializers.SerializerMethodField()
    cursor = serializers.IntegerField(source="position")
    customer = serializers.IntegerField(source="customer_id")

    class Meta:
        model = ChangeEvent
        fields = [
            "cursor",
            "event_id",
            "event_type",
            "customer",
            "changed_fields",
            "data",
            "related",
            "channel",
            "occurred_at",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_data(self, event: ChangeEvent) -> dict:
        return present_values(self.context["request"].user, event_values(event))

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_changed_fields(self, event: ChangeEvent) -> list[str]:
        return event_changed_fields(event)

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_related(self, event: ChangeEvent) -> dict:
        return related_ids(event)
