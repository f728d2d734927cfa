"""Dedup API: the review queue and merges. Thin: selectors read, services write."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.permissions import restrict_customers
from accounts.policy import Access, policy_for
from crmhub.models import Customer
from dedup import selectors, services
from dedup.api.serializers import (
    AssignSerializer,
    CandidateSerializer,
    DecisionSerializer,
    MergeCreateSerializer,
    MergeSerializer,
)
from dedup.choices import CandidateStatus
from dedup.models import MatchCandidate, Merge
from dedup.permissions import CanDecide


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def _service_error(exc: ValidationError) -> exceptions.APIException:
    message = "; ".join(exc.messages)
    if isinstance(exc, services.MergeError) and not isinstance(exc, services.MergeValueError):
        return Conflict(message)
    return exceptions.ValidationError({"detail": message})


def _check_values(user, values: dict) -> None:  # noqa: ANN001
    policy = policy_for(user)
    denied = [name for name in values if policy(name) < Access.EDITABLE]
    if denied:
        raise exceptions.PermissionDenied(f"You may not set these fields: {', '.join(sorted(denied))}.")


class CandidateViewSet(viewsets.ReadOnlyModelViewSet):
    """Pairs of golden records that may be one person. ``?status=pending`` is the review queue."""

    serializer_class = CandidateSerializer
    permission_classes = [CanDecide]
    queryset = MatchCandidate.objects.none()

    def get_queryset(self):  # noqa: ANN201
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        params = self.request.query_params
        try:
            filters = selectors.ReviewFilters.from_params(params, status=params.get("status", ""))
        except ValueError as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from exc
        return selectors.candidates_filtered(user=self.request.user, filters=filters).select_related(
            "decided_by", "assignee"
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=CandidateStatus.values),
            OpenApiParameter("source", OpenApiTypes.STR, description="Code of a source one of the records is from."),
            OpenApiParameter("rule", OpenApiTypes.STR, description="Name of the match rule that proposed the pair."),
            OpenApiParameter("min_score", OpenApiTypes.FLOAT),
            OpenApiParameter("max_score", OpenApiTypes.FLOAT),
            OpenApiParameter("band", OpenApiTypes.STR, enum=list(selectors.SCORE_BANDS)),
            OpenApiParameter("age", OpenApiTypes.STR, enum=list(selectors.AGES)),
            OpenApiParameter(
                "assignee", OpenApiTypes.STR, description='"me", "none", or a steward\'s username or user id.'
            ),
        ]
    )
    def list(self, request, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        return super().list(request, *args, **kwargs)

    @extend_schema(request=AssignSerializer, responses=CandidateSerializer)
    @action(detail=True, methods=["post"])
    def assign(self, request, pk=None):  # noqa: ANN001, ANN201
        """Assign a pending candidate to a steward: ``{"assignee": "me" | username | id | null}``."""
        candidate = self.get_object()
        body = AssignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        target = body.validated_data.get("assignee")
        if target in (None, "", "none"):
            assignee = None
        elif target == "me":
            assignee = request.user
        else:
            lookup = {"pk": int(target)} if str(target).isdigit() else {"username": target}
            assignee = get_user_model().objects.filter(**lookup).first()
            if assignee is None:
                raise exceptions.ValidationError({"assignee": f"No user {target!r}."})
        if candidate.status != CandidateStatus.PENDING:
            raise Conflict(f"Candidate {candidate.pk} is not waiting for review (it is {candidate.status}).")
        try:
            services.candidates_assign(candidate_ids=[candidate.pk], assignee=assignee, acting_user=request.user)
        except ValidationError as exc:
            raise exceptions.ValidationError({"assignee": "; ".join(exc.messages)}) from exc
        candidate.refresh_from_db()
        return Response(self.get_serializer(candidate).data)

    @extend_schema(request=DecisionSerializer, responses=MergeSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):  # noqa: ANN001, ANN201
        candidate = self.get_object()
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        _check_values(request.user, body.validated_data["values"])
        try:
            merge = services.candidate_approve(
                candidate=candidate,
                acting_user=request.user,
                values=body.validated_data["values"],
                note=body.validated_data["note"],
            )
        except ValidationError as exc:
            raise _service_error(exc) from exc
        return Response(MergeSerializer(merge).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=DecisionSerializer, responses=CandidateSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):  # noqa: ANN001, ANN201
        candidate = self.get_object()
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            candidate = services.candidate_reject(
                candidate=candidate, acting_user=request.user, note=body.validated_data["note"]
            )
        except ValidationError as exc:
            raise _service_error(exc) from exc
        return Response(self.get_serializer(candidate).data)


class MergeViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Merges of golden records into a survivor, each reversible with ``unmerge``."""

    serializer_class = MergeSerializer
    permission_classes = [CanDecide]
    queryset = Merge.objects.none()

    def get_queryset(self):  # noqa: ANN201
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        return selectors.merge_list(user=self.request.user).select_related("acting_user", "undone_by")

    @extend_schema(request=MergeCreateSerializer, responses={201: MergeSerializer})
    def create(self, request, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        body = MergeCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        visible = set(
            restrict_customers(Customer.objects.filter(pk__in=data["customers"]), request.user).values_list(
                "pk", flat=True
            )
        )
        unknown = sorted(set(data["customers"]) - visible)
        if unknown:
            raise exceptions.NotFound(f"No such customer: {', '.join(map(str, unknown))}.")
        _check_values(request.user, data["values"])
        try:
            merge = services.customers_merge(
                customers=data["customers"],
                survivor=data["survivor"],
                values=data["values"],
                acting_user=request.user,
                note=data["note"],
                expected_versions={int(k): v for k, v in data["versions"].items()},
            )
        except ValidationError as exc:
            raise _service_error(exc) from exc
        return Response(MergeSerializer(merge).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=DecisionSerializer, responses=MergeSerializer)
    @action(detail=True, methods=["post"])
    def unmerge(self, request, pk=None):  # noqa: ANN001, ANN201
        merge = self.get_object()
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            services.merge_undo(merge=merge, acting_user=request.user, note=body.validated_data["note"])
        except ValidationError as exc:
            raise _service_error(exc) from exc
        merge.refresh_from_db()
        return Response(MergeSerializer(merge).data)
