"""API authentication: ``Authorization: Token KEY``.

Keys are ``ApiToken`` rows (scoped, expiring, revocable, stored hashed). Keys of
``rest_framework.authtoken`` issued before ApiToken existed keep working with full scopes
until they are deleted; they are logged as token use all the same.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import ApiToken, ApiTokenScope


class CrmhubTokenAuthentication(TokenAuthentication):
    keyword = "Token"

    def authenticate_credentials(self, key: str):  # noqa: ANN201
        from accounts.services import TOKEN_PREFIX, api_token_touch, hash_token_key, legacy_token_touch

        request = getattr(self, "_request", None)
        if key.startswith(TOKEN_PREFIX):
            token = ApiToken.objects.select_related("user").filter(key_hash=hash_token_key(key)).first()
            if token is None:
                raise exceptions.AuthenticationFailed(_("Invalid token."))
            if token.revoked_at is not None:
                raise exceptions.AuthenticationFailed(_("This token has been revoked."))
            if not token.is_active:
                raise exceptions.AuthenticationFailed(_("This token has expired; ask for a new one."))
            if not token.user.is_active:
                raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
            api_token_touch(token=token, request=request)
            return token.user, token
        user, legacy = super().authenticate_credentials(key)
        legacy_token_touch(token=legacy, request=request)
        return user, legacy

    def authenticate(self, request):  # noqa: ANN001, ANN201
        self._request = request
        return super().authenticate(request)


def request_scopes(request) -> set[str] | None:  # noqa: ANN001
    """The scopes of the request's token; None for a browser session or a legacy token (all)."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiToken):
        return set(auth.scopes)
    return None


def token_allows_source(request, source) -> bool:  # noqa: ANN001
    """Whether the request's token may touch ``source`` (a token without sources: all)."""
    auth = getattr(request, "auth", None)
    if not isinstance(auth, ApiToken):
        return True
    allowed = {s.pk for s in auth.sources.all()}
    return not allowed or source.pk in allowed


class TokenScopePermission(BasePermission):
    """Reads need the ``read`` scope; writes ``write``, or the scope a view names in
    ``required_scope`` (the record push endpoint should name ``push``). A view whose URL
    names a source by code declares the kwarg in ``token_source_kwarg`` (e.g. "code"): a
    token limited to other sources is then refused."""

    message = _("This API token does not have the scope this request needs.")

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        scopes = request_scopes(request)
        if scopes is None:
            return True
        if request.method in SAFE_METHODS:
            needed = ApiTokenScope.READ
        else:
            needed = getattr(view, "required_scope", ApiTokenScope.WRITE)
        if needed not in scopes:
            return False
        source_kwarg = getattr(view, "token_source_kwarg", None)
        if source_kwarg and source_kwarg in getattr(view, "kwargs", {}):
            from crmhub.models import Source

            source = Source.objects.filter(code=view.kwargs[source_kwarg]).first()
            if source is not None and not token_allows_source(request, source):
                self.message = _("This API token may not use this source.")
                return False
        return True
