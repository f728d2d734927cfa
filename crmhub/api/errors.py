"""JSON errors a person can act on: ``{"error": code, "message": text, "details": ...}``."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        message = "The request was not valid; see details for each field."
        details = response.data
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        message = str(detail) if detail is not None else str(exc)
        details = None
    code = getattr(exc, "default_code", "error")
    response.data = {"error": code, "message": message}
    if details is not None:
        response.data["details"] = details
    return response
