"""Core API views: thin, reading through selectors and presenting through the policy."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from crmhub import editing, outbox, selectors
from crmhub.api.permissions import CanReadChangeFeed
from crmhub.api.serializers import (
    ChangeEventSerializer,
    CustomerDetailSerializer,
    CustomerEditSerializer,
    CustomerSerializer,
    InteractionSerializer,
    SourceRecordSerializer,
)
from crmhub.choices import ChangeChannel, CustomerStatus
from crmhub.models import Interaction, SourceRecord


class StaleVersion(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "stale_version"
    default_detail = "The customer changed since you read it."


class CustomerViewSet(viewsets.ReadOnlyModelViewSet):
    """Golden records. ``?q=`` searches by mobile (any format), email, ID number, member
    number, name (characters, pinyin, sound-alikes, typos) or company: at most 200 results,
    best first unless ``ordering`` is given. ``PATCH`` edits a record (fields the caller may
    edit only), guarded by the version the caller read."""

    serializer_class = CustomerSerializer
    filterset_fields: list[str] = []
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):  # noqa: ANN201
        from rest_framework.exceptions import ValidationError

        from accounts.policy import customer_ordering

        q = self.request.query_params.get("q", "")
        requested = self.request.query_params.get("ordering", "")
        try:
            ordering = customer_ordering(self.request.user, requested)
        except ValueError as exc:
            raise ValidationError({"ordering": [str(exc)]}) from exc
        qs = selectors.customer_search(user=self.request.user, q=q)
        if q.strip() and not requested:
            return qs  # the search's ranking: exact identity hits first
        return qs.order_by(*ordering)

    @extend_schema(
        parameters=[
            OpenApiParameter("q", OpenApiTypes.STR, description="Search text"),
            OpenApiParameter(
                "ordering",
                OpenApiTypes.STR,
                description="Comma-separated fields, '-' for descending; only id and fields you can see in full",
            ),
        ]
    )
    def list(self, request, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        return super().list(request, *args, **kwargs)

    @extend_schema(responses=CustomerDetailSerializer)
    def retrieve(self, request, pk=None):  # noqa: ANN001, ANN201
        requested = selectors.customer_get(user=request.user, pk=_int_or_404(pk))
        related = selectors.customer_detail_related(customer=requested)
        data = CustomerDetailSerializer(requested, context={"request": request, "related": related}).data
        if requested.pk != int(pk):
            # An old id of a merged customer: answer with the survivor, and say so.
            data = dict(data, requested_id=int(pk), requested_status=CustomerStatus.MERGED, merged_into=requested.pk)
        return Response(data, headers={"ETag": f'"{requested.version}"'})

    @extend_schema(
        request=CustomerEditSerializer,
        responses=CustomerSerializer,
        parameters=[
            OpenApiParameter(
                "If-Match",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description='The ETag of the read (e.g. "3"); or send "version" in the body',
            )
        ],
    )
    def partial_update(self, request, pk=None):  # noqa: ANN001, ANN201
        """Set some of a customer's values, as a person's edit through ``crmhub.editing``: the
        same cleaning, permission and version checks as the customer page, recorded in history
        (channel API) and announced on the change feed. 409 when the record changed since the
        version given, or when the id is a merged record (edit the survivor instead)."""
        customer_id = _int_or_404(pk)
        customer = selectors.customer_get(user=request.user, pk=customer_id)
        if customer.pk != customer_id:
            raise StaleVersion(
                _("Customer %(id)s was merged into %(survivor)s; edit that record instead.")
                % {"id": customer_id, "survivor": customer.pk}
            )
        payload = CustomerEditSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        version = payload.validated_data.get("version") or _if_match_version(request)
        if version is None:
            raise exceptions.ValidationError(
                {"version": [_("Send the version you read, in the body or as an If-Match header.")]}
            )
        try:
            customer = editing.customer_update(
                customer_id=customer.pk,
                values=payload.validated_data["values"],
                expected_version=version,
                acting_user=request.user,
                channel=ChangeChannel.API,
            )
        except editing.StaleVersionError as exc:
            raise StaleVersion(" ".join(exc.messages)) from exc
        except PermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc) or None) from exc
        except ValidationError as exc:
            raise exceptions.ValidationError(
                exc.message_dict if hasattr(exc, "error_dict") else {"values": exc.messages}
            ) from exc
        data = CustomerSerializer(customer, context={"request": request}).data
        return Response(data, headers={"ETag": f'"{customer.version}"'})


def _if_match_version(request) -> int | None:  # noqa: ANN001
    """The version in an ``If-Match: "3"`` header (weak tags and bare numbers accepted)."""
    tag = request.headers.get("If-Match", "").strip()
    tag = tag.removeprefix("W/").strip('"')
    if not tag:
        return None
    try:
        return int(tag)
    except ValueError as exc:
        raise exceptions.ValidationError({"If-Match": [_("Not a version: %(tag)s") % {"tag": tag[:20]}]}) from exc


class CustomerSourceRecordsViewSet(viewsets.ReadOnlyModelViewSet):
    """The source records linked to a customer (the cross-reference)."""

    serializer_class = SourceRecordSerializer
    queryset = SourceRecord.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):  # noqa: ANN201
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        customer = selectors.customer_get(user=self.request.user, pk=_int_or_404(self.kwargs["customer_pk"]))
        return customer.source_records.select_related("source").order_by("source__code", "source_key")


class CustomerInteractionsViewSet(viewsets.ReadOnlyModelViewSet):
    """A customer's timeline, newest first."""

    serializer_class = InteractionSerializer
    queryset = Interaction.objects.none()

    def get_queryset(self):  # noqa: ANN201
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        customer = selectors.customer_get(user=self.request.user, pk=_int_or_404(self.kwargs["customer_pk"]))
        return customer.interactions.select_related("source").order_by("-occurred_at", "-id")


def _int_or_404(value) -> int:  # noqa: ANN001
    from django.http import Http404

    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise Http404("No such customer") from exc


class ChangeFeedView(APIView):
    """The change feed: events after ``after`` (a cursor from a previous page; 0 to start),
    oldest first. Store ``next_cursor`` and ask again with it; apply events idempotently by
    ``event_id``. An event appears once its transaction is final, so no event is skipped."""

    permission_classes = [CanReadChangeFeed]
    max_limit = 1000

    @extend_schema(
        parameters=[
            OpenApiParameter("after", OpenApiTypes.INT, description="Cursor: the last event's cursor (0 to start)"),
            OpenApiParameter("limit", OpenApiTypes.INT, description="At most this many events (max 1000)"),
        ],
        responses=inline_serializer(
            "ChangeFeedPage",
            {
                "results": ChangeEventSerializer(many=True),
                "next_cursor": serializers.IntegerField(),
                "has_more": serializers.BooleanField(),
            },
        ),
    )
    def get(self, request):  # noqa: ANN001, ANN201
        after = _non_negative_int(request.query_params.get("after", "0"), "after")
        limit = min(_non_negative_int(request.query_params.get("limit", "100"), "limit") or 100, self.max_limit)
        events = list(outbox.changes_after(after=after, limit=limit + 1))
        page, has_more = events[:limit], len(events) > limit
        return Response(
            {
                "results": ChangeEventSerializer(page, many=True, context={"request": request}).data,
                "next_cursor": page[-1].position if page else after,
                "has_more": has_more,
            }
        )


def _non_negative_int(value: str, name: str) -> int:
    from rest_framework.exceptions import ValidationError

    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError({name: f"must be a whole number, got {value!r}"}) from None
    if number < 0:
        raise ValidationError({name: "must not be negative"})
    return number
