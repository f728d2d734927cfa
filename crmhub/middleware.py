"""Request middleware of the core app."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
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


class SessionIdleRefreshMiddleware:
    """Idle expiry without a session write on every request.

    Django's SESSION_SAVE_EVERY_REQUEST would write (and commit) the session row on every
    page view; instead the session is marked modified, and so saved with a new expiry, at most
    once per CRMHUB_SESSION_REFRESH_SECONDS. Must come after SessionMiddleware.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        session = getattr(request, "session", None)
        if session is not None and not session.is_empty():
            now = int(time.time())
            if now - session.get("_refreshed_at", 0) >= settings.CRMHUB_SESSION_REFRESH_SECONDS:
                session["_refreshed_at"] = now
        return response
