from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.throttling import AnonRateThrottle


class ObtainTokenView(ObtainAuthToken):
    """Exchange a username and password for an API token: ``{"token": KEY}``."""

    throttle_classes = [AnonRateThrottle]

    @extend_schema(
        request=inline_serializer("TokenRequest", {"username": serializers.CharField(), "password": serializers.CharField()}),
        responses=inline_serializer("TokenResponse", {"token": serializers.CharField()}),
    )
    def post(self, request, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        return super().post(request, *args, **kwargs)
