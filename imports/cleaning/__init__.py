"""The cleaning library: pure functions from a raw value to a normalized one.

Each ``clean_*`` returns a ``Cleaned(value, flag)``: ``value`` is the normalized value (or
the raw value kept as it was when it cannot be normalized) and ``flag`` is the reason it
failed validation, or ''. Nothing is dropped. ``frame.clean_columns`` applies them to the
columns of a chunk at once.
"""

from imports.cleaning.address import AddressParts, clean_address, split_address
from imports.cleaning.base import Cleaned, clean_code, clean_text, collapse_spaces, to_halfwidth
from imports.cleaning.contact import clean_email, clean_mobile, clean_phone, normalize_mobile
from imports.cleaning.dates import clean_date
from imports.cleaning.gender import clean_gender
from imports.cleaning.identity import clean_id_number, id_number_consistency, resident_id_facts
from imports.cleaning.misc import clean_boolean, clean_country, clean_number, clean_postcode, clean_tags
from imports.cleaning.names import clean_name, fold_traditional, name_pinyin, split_name

__all__ = [
    "AddressParts",
    "Cleaned",
    "clean_address",
    "clean_boolean",
    "clean_code",
    "clean_country",
    "clean_date",
    "clean_email",
    "clean_gender",
    "clean_id_number",
    "clean_mobile",
    "clean_name",
    "clean_number",
    "clean_phone",
    "clean_postcode",
    "clean_tags",
    "clean_text",
    "collapse_spaces",
    "fold_traditional",
    "id_number_consistency",
    "name_pinyin",
    "normalize_mobile",
    "resident_id_facts",
    "split_address",
    "split_name",
    "to_halfwidth",
]
