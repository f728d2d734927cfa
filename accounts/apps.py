from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Access control")

    def ready(self) -> None:
        from accounts import signals  # noqa: F401  (audit receivers)
        from accounts.policy import policy_stamp_receivers_connect

        policy_stamp_receivers_connect()
