"""API of survivorship rules: anyone who may see the review queue may read them; admins
change them (validated, written and audited by the service)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import Role, user_roles
from dedup.permissions import can_view
from dedup.survivorship import survivorship_rules_list, survivorship_rules_set


class _RuleSerializer(serializers.Serializer):
    field = serializers.CharField(read_only=True)
    label = serializers.CharField(read_only=True)
    strategy = serializers.CharField(required=False)
    trust_order = serializers.ListField(child=serializers.CharField(), required=False)
    tie_break = serializers.CharField(required=False)
    override_policy = serializers.CharField(required=False)


class _ReadOrAdmin(BasePermission):
    message = "Only data stewards, admins and auditors may read survivorship rules; only admins may change them."

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return can_view(request.user)
        return Role.ADMIN in user_roles(request.user)


def _rule_or_404(field: str) -> dict:
    for rule in survivorship_rules_list():
        if rule["field"] == field:
            return rule
    raise exceptions.NotFound(f"No survivorship rule for {field!r}.")


class SurvivorshipRuleList(APIView):
    """Every field's survivorship rule."""

    permission_classes = [_ReadOrAdmin]

    @extend_schema(responses=_RuleSerializer(many=True))
    def get(self, request):  # noqa: ANN001, ANN201
        return Response(survivorship_rules_list())


class SurvivorshipRuleDetail(APIView):
    """One field's rule; PATCH changes any of strategy, trust_order, tie_break, override_policy."""

    permission_classes = [_ReadOrAdmin]

    @extend_schema(responses=_RuleSerializer)
    def get(self, request, field: str):  # noqa: ANN001, ANN201
        return Response(_rule_or_404(field))

    @extend_schema(
        request=inline_serializer(
            "SurvivorshipRuleChange",
            {
                "strategy": serializers.CharField(required=False),
                "trust_order": serializers.ListField(child=serializers.CharField(), required=False),
                "tie_break": serializers.CharField(required=False),
                "override_policy": serializers.CharField(required=False),
            },
        ),
        responses=_RuleSerializer,
    )
    def patch(self, request, field: str):  # noqa: ANN001, ANN201
        _rule_or_404(field)
        if not isinstance(request.data, dict):
            raise exceptions.ValidationError({"detail": "Send a JSON object of the settings to change."})
        try:
            survivorship_rules_set(actor=request.user, changes={field: dict(request.data)}, request=request)
        except PermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from exc
        except ValidationError as exc:
            raise exceptions.ValidationError({"detail": "; ".join(exc.messages)}) from exc
        return Response(_rule_or_404(field))
