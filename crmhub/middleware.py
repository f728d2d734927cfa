"""Request middleware of the core app."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from crmhub.choices import ChangeChannel
from crmhub.context import change_context


class ChangeContextMiddleware:
    """Attribute changes made during a request to the web UI or the API."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        channel = ChangeChannel.API if request.path.startswith("/api/") else ChangeChannel.WEB
        # The user is resolved lazily by history_user() from the request (DRF token users
        # are only known inside the view), so only the channel is fixed here.
        with change_context(channel=channel, ref=f"{request.method} {request.path}"[:200]):
            return self.get_response(request)
