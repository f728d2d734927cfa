"""API of access control: token exchange, reveal and customer history."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from accounts import services
from accounts.history import present_customer_history
from accounts.policy import value_as_text
from crmhub import selectors


class ObtainTokenView(APIView):
    """Exchange a username and password for an API token: ``{"token": KEY}``.

    Each call issues a new token (an ``ApiToken`` named "password exchange") with the scopes
    of the user's roles, expiring after CRMHUB_API_TOKEN_DAYS days; admins can list and
    revoke tokens at /accounts/tokens/.
    """

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes = [AnonRateThrottle]

    @extend_schema(
        request=inline_serializer(
            "TokenRequest", {"username": serializers.CharField(), "password": serializers.CharField()}
        ),
        responses=inline_serializer("TokenResponse", {"token": serializers.CharField()}),
    )
    def post(self, request, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        key = services.api_token_for_password_exchange(user=serializer.validated_data["user"], request=request)
        return Response({"token": key})


class RevealInput(serializers.Serializer):
    field = serializers.SlugField(max_length=64)
    reason = serializers.CharField(min_length=3, max_length=500)


class CustomerRevealView(APIView):
    """Reveal one masked value of a customer, stating a reason (logged, rate-limited)."""

    required_scope = "read"  # reading a value, even though it is a POST

    @extend_schema(
        request=RevealInput,
        responses=inline_serializer(
            "RevealResponse",
            {
                "customer": serializers.IntegerField(),
                "field": serializers.CharField(),
                "value": serializers.CharField(),
            },
        ),
    )
    def post(self, request, pk: int):  # noqa: ANN001, ANN201
        customer = selectors.customer_get(user=request.user, pk=pk)
        data = RevealInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            value = services.customer_value_reveal(
                user=request.user,
                customer=customer,
                field_name=data.validated_data["field"],
                reason=data.validated_data["reason"],
                request=request,
            )
        except services.RevealLimitExceeded as exc:
            raise exceptions.Throttled(detail=str(exc)) from exc
        except PermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc) or None) from exc
        except ValidationError as exc:
            raise exceptions.ValidationError({"field": exc.messages}) from exc
        return Response(
            {"customer": customer.pk, "field": data.validated_data["field"], "value": value_as_text(value)},
            status=status.HTTP_200_OK,
        )


class CustomerHistoryView(APIView):
    """A customer's change history, newest first, each change masked per field."""

    @extend_schema(
        responses=inline_serializer(
            "CustomerHistory",
            {"customer": serializers.IntegerField(), "results": serializers.ListField(child=serializers.DictField())},
        )
    )
    def get(self, request, pk: int):  # noqa: ANN001, ANN201
        customer = selectors.customer_get(user=request.user, pk=pk)
        entries = present_customer_history(request.user, customer)
        results = [
            {
                **e,
                "at": e["at"].isoformat(),
                "changes": [{**c, "old": _json(c["old"]), "new": _json(c["new"])} for c in e["changes"]],
            }
            for e in entries
        ]
        return Response({"customer": customer.pk, "results": results})


def _json(value):  # noqa: ANN001, ANN202
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
