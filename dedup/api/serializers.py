"""Serializers of the dedup API. Customer values only ever appear through the field policy."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from dedup import selectors
from dedup.models import MatchCandidate, Merge


class CandidateSerializer(serializers.ModelSerializer):
    explanation = serializers.SerializerMethodField()
    decided_by = serializers.CharField(source="decided_by.username", default=None)
    assignee = serializers.CharField(source="assignee.username", default=None)

    class Meta:
        model = MatchCandidate
        fields = [
            "id",
            "left",
            "right",
            "score",
            "rule",
            "reason",
            "status",
            "explanation",
            "assignee",
            "decided_by",
            "decided_at",
            "created_at",
            "merge",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_explanation(self, candidate: MatchCandidate) -> list:
        return selectors.candidate_explanation(user=self.context["request"].user, candidate=candidate)


class AssignSerializer(serializers.Serializer):
    assignee = serializers.CharField(required=False, allow_null=True, allow_blank=True, default=None, max_length=150)


class DecisionSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    values = serializers.DictField(required=False, default=dict)


class MergeCreateSerializer(serializers.Serializer):
    customers = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=2, max_length=100)
    survivor = serializers.IntegerField(min_value=1)
    values = serializers.DictField(required=False, default=dict)
    versions = serializers.DictField(child=serializers.IntegerField(), required=False, default=dict)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    def validate(self, attrs: dict) -> dict:
        if attrs["survivor"] not in attrs["customers"]:
            raise serializers.ValidationError({"survivor": "The survivor must be one of the customers."})
        if len(set(attrs["customers"])) < 2:
            raise serializers.ValidationError({"customers": "Give at least two different customers."})
        return attrs


class MergeSerializer(serializers.ModelSerializer):
    acting_user = serializers.CharField(source="acting_user.username", default=None)
    undone_by = serializers.CharField(source="undone_by.username", default=None)

    class Meta:
        model = Merge
        fields = [
            "id",
            "survivor",
            "merged_ids",
            "origin",
            "status",
            "note",
            "acting_user",
            "created_at",
            "undone_by",
            "undone_at",
            "undo_report",
        ]
