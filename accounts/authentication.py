"""API authentication: ``Authorization: Token KEY``."""
from __future__ import annotations

from rest_framework.authentication import TokenAuthentication


class CrmhubTokenAuthentication(TokenAuthentication):
    keyword = "Token"
