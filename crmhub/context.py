"""Who and what is changing data right now.

Every history row records the acting user and the channel (web, API, import run,
connector, ...) with a reference such as ``import_run:42``. Requests set it in
``crmhub.middleware``; tasks and commands wrap their work in ``change_context``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from crmhub.choices import ChangeChannel


@dataclass(frozen=True)
class ChangeContext:
    channel: str = ChangeChannel.SYSTEM
    ref: str = ""
    user: Any = None


_current: contextvars.ContextVar[ChangeContext | None] = contextvars.ContextVar("crmhub_change_context", default=None)


def current_change_context() -> ChangeContext:
    return _current.get() or ChangeContext()


@contextlib.contextmanager
def change_context(*, channel: str, ref: str = "", user: Any = None) -> Iterator[ChangeContext]:
    """Attribute every change made inside the block to ``channel``/``ref``/``user``."""
    ctx = ChangeContext(channel=channel, ref=ref, user=user)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def history_user(instance: Any = None, request: Any = None, **kwargs: Any) -> Any:
    """simple-history's ``get_user``: the context's user, else the request's."""
    ctx = _current.get()
    if ctx is not None and ctx.user is not None:
        return ctx.user
    if request is not None:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return user
    return None
