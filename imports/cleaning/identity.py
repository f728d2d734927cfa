"""Identity documents: the mainland resident ID (GB 11643) through python-stdnum."""
from __future__ import annotations

import unicodedata

from django.utils.translation import gettext as _
from stdnum.cn import ric

from imports.cleaning.base import Cleaned, blank


def clean_id_number(value) -> Cleaned:  # noqa: ANN001
    if blank(value):
        return Cleaned("")
    text = unicodedata.normalize("NFKC", str(value)).strip().upper().replace(" ", "")
    if len(text) == 18 and text[:17].isdigit():
        try:
            return Cleaned(ric.validate(text))
        except Exception:  # noqa: BLE001 - stdnum raises several ValidationError subclasses
            return Cleaned(text, _("resident ID checksum or date is wrong"))
    # Passports and other national IDs are kept as written, upper-cased.
    return Cleaned(text)
