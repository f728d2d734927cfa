"""History rows for bulk writes, attributed like simple-history's own (user, channel, ref).

Bulk paths bypass the per-object signals, so they write the historical rows themselves:
as objects (portable) or as one INSERT … SELECT from the live table (PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import models

from crmhub.context import ChangeContext

HISTORY_COLUMNS = (
    "history_date",
    "history_type",
    "history_user_id",
    "history_change_reason",
    "change_channel",
    "change_ref",
)


def _shared_fields(model: type[models.Model]) -> list[models.Field]:
    base = {f.attname for f in model._meta.concrete_fields}
    return [f for f in model.history.model._meta.concrete_fields if f.attname in base]


def history_objects(
    model: type[models.Model],
    objs: Iterable[models.Model],
    history_type: str,
    ctx: ChangeContext,
    when: datetime,
    reason: str | None = None,
) -> list[models.Model]:
    historical = model.history.model
    fields = [f.attname for f in _shared_fields(model)]
    user_id = getattr(ctx.user, "pk", None)
    return [
        historical(
            **{name: getattr(obj, name) for name in fields},
            history_date=when,
            history_type=history_type,
            history_user_id=user_id,
            history_change_reason=reason,
            change_channel=ctx.channel,
            change_ref=ctx.ref[:200],
        )
        for obj in objs
    ]


def history_insert_sql(model: type[models.Model], *, from_sql: str, history_type_sql: str = "%(history_type)s") -> str:
    """INSERT INTO the history table SELECT the live columns of ``t`` (``from_sql`` names
    ``FROM <table> t ...``); parameters: history_date, history_type, user, channel, ref."""
    historical = model.history.model
    columns = [f.column for f in _shared_fields(model)]
    return (
        f"INSERT INTO {historical._meta.db_table} ({', '.join(columns + list(HISTORY_COLUMNS))}) "
        f"SELECT {', '.join('t.' + c for c in columns)}, %(history_date)s, {history_type_sql}, %(user_id)s, NULL, "
        f"%(channel)s, %(ref)s {from_sql}"
    )


def history_params(ctx: ChangeContext, when: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "history_date": when,
        "user_id": getattr(ctx.user, "pk", None),
        "channel": ctx.channel,
        "ref": ctx.ref[:200],
        **extra,
    }
