"""Connectors and inbound pushes over the API.

``POST /api/v1/sources/{code}/records/`` (token auth, guardian permission
``crmhub.push_to_source`` on the source) takes one record or a list of at most
CRMHUB_PUSH_MAX_BATCH. It answers 200 when every record was stored, 207 when some were
rejected, 422 when none was stored; ``records`` gives each record's status. A repeated
``Idempotency-Key`` gets the first answer again (header ``Idempotent-Replayed: true``).
``POST /api/v1/sources/{code}/webhook/`` takes the same body signed with the source's
webhook secret.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiTokenScope
from crmhub.api.throttling import SharedScopedRateThrottle
from crmhub.models import Source
from imports.api.serializers import ImportRunSerializer
from imports.connectors import REGISTRY, push, selectors, services
from imports.models import Connector


class PushThrottle(SharedScopedRateThrottle):
    """Per API client (per address for webhooks), at the ``push`` rate, counted across every
    process of the site (crmhub.cache)."""


class RefusedError(exceptions.APIException):
    status_code = 400
    default_code = "refused"


class PayloadTooLargeError(exceptions.APIException):
    status_code = 413
    default_code = "too_large"


def _refused(message: str, code: int) -> exceptions.APIException:
    exc = RefusedError(message)
    exc.status_code = code
    return exc


def _json_body(request: Request) -> tuple[bytes, Any]:
    try:
        body = request.body
    except RequestDataTooBig:
        raise PayloadTooLargeError("The request body is too large; send fewer records per request.") from None
    try:
        return body, json.loads(body)
    except UnicodeDecodeError:
        raise exceptions.ParseError("The body must be JSON in UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise exceptions.ParseError(
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None


def _answer(result: push.PushResult) -> Response:
    response = Response(result.body, status=result.status)
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


class PushRequestSerializer(serializers.Serializer):
    source_key = serializers.CharField(required=False, help_text="The record's key in the source (else id)")
    id = serializers.CharField(required=False)


class PushView(APIView):
    throttle_classes = [PushThrottle]
    throttle_scope = "push"
    required_scope = ApiTokenScope.PUSH  # accounts.authentication.TokenScopePermission
    # The token's own source limits are checked by push_context, in the query that finds the source.

    @extend_schema(
        request=PushRequestSerializer(many=True),
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
        responses={200: dict, 207: dict, 422: dict},
        description=__doc__,
    )
    def post(self, request: Request, code: str) -> Response:
        key = request.headers.get("Idempotency-Key", "").strip()[:200]
        try:
            _body, payload = _json_body(request)
            unreadable = None
        except exceptions.APIException as exc:
            payload, unreadable = None, exc  # answered after 404/403, as before
        context = push.push_context(code=code, user=request.user, token=request.auth, idempotency_key=key)
        if context is None:
            raise exceptions.NotFound(f"There is no source {code}.")
        if not context.permitted:
            raise exceptions.PermissionDenied(f"This client may not push to source {code}.")
        if unreadable is not None:
            raise unreadable
        try:
            result = push.push_records(user=request.user, payload=payload, idempotency_key=key, context=context)
        except push.PushRefused as exc:
            raise _refused(str(exc), exc.status) from exc
        return _answer(result)


class WebhookView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [PushThrottle]
    throttle_scope = "push"

    @extend_schema(request=PushRequestSerializer(many=True), responses={200: dict, 207: dict, 422: dict})
    def post(self, request: Request, code: str) -> Response:
        source = get_object_or_404(Source, code=code)
        body, payload = _json_body(request)
        try:
            result = push.webhook_receive(
                source=source,
                body=body,
                payload=payload,
                signature=request.headers.get(push.SIGNATURE_HEADER, ""),
                timestamp=request.headers.get(push.TIMESTAMP_HEADER, ""),
            )
        except push.PushRefused as exc:
            raise _refused(str(exc), exc.status) from exc
        return _answer(result)


class ConnectorSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="code", queryset=Source.objects.all())
    kind = serializers.ChoiceField(choices=sorted(REGISTRY))
    secret = serializers.CharField(write_only=True, help_text="SQLAlchemy URL (sql) or auth header value (rest)")
    credentials = serializers.SerializerMethodField()
    lag_seconds = serializers.IntegerField(read_only=True)

    class Meta:
        model = Connector
        fields = [
            "id",
            "name",
            "source",
            "kind",
            "config",
            "secret",
            "credentials",
            "mapping",
            "max_failures",
            "is_enabled",
            "paused_reason",
            "consecutive_failures",
            "last_success_at",
            "last_error_at",
            "last_error",
            "last_rows",
            "last_run",
            "lag_seconds",
            "cursor",
        ]
        read_only_fields = [
            "is_enabled",
            "paused_reason",
            "consecutive_failures",
            "last_success_at",
            "last_error_at",
            "last_error",
            "last_rows",
            "last_run",
            "cursor",
        ]

    def get_credentials(self, connector: Connector) -> str:
        return services.connector_masked_secret(connector)


class ConnectorViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Pull connectors. ``POST`` creates one; ``POST {id}/sync/`` queues a sync and returns its import run."""

    serializer_class = ConnectorSerializer
    queryset = Connector.objects.none()

    def get_queryset(self):  # noqa: ANN201
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        return selectors.connector_list(user=self.request.user)

    def initial(self, request: Request, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().initial(request, *args, **kwargs)
        if not services.user_may_manage_connectors(request.user):
            raise exceptions.PermissionDenied("Connectors need the admin or steward role.")

    def create(self, request: Request) -> Response:
        form = ConnectorSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            connector = services.connector_create(
                source=data["source"],
                name=data["name"],
                kind=data["kind"],
                config=data.get("config") or {},
                secret=data["secret"],
                mapping=data.get("mapping") or {},
                max_failures=data.get("max_failures", 3),
                user=request.user,
            )
        except services.ConnectorRefused as exc:
            raise RefusedError(str(exc)) from exc
        return Response(ConnectorSerializer(connector).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={202: ImportRunSerializer})
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, pk: str) -> Response:
        connector = selectors.connector_get(user=request.user, pk=pk)
        try:
            run = services.connector_sync_request(connector=connector, user=request.user)
        except services.ConnectorRefused as exc:
            raise _refused(str(exc), 409) from exc
        return Response(ImportRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
