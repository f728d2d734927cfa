from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CrmhubConfig(AppConfig):
    name = "crmhub"
    verbose_name = _("Customer data")

    def ready(self) -> None:
        from simple_history.signals import pre_create_historical_record

        from crmhub.context import current_change_context

        def stamp_change_context(sender, history_instance, **kwargs) -> None:  # noqa: ANN001, ANN003
            # The only signal receiver we keep: it belongs to simple-history's own concern.
            ctx = current_change_context()
            if hasattr(history_instance, "change_channel"):
                history_instance.change_channel = ctx.channel
                history_instance.change_ref = ctx.ref[:200]

        pre_create_historical_record.connect(stamp_change_context, dispatch_uid="crmhub_stamp_change_context")
