"""The cleaning library: pure functions from a raw value to a normalized one.

Each ``clean_*`` returns a ``Cleaned(value, flag)``: ``value`` is the normalized value (or
the raw value kept as it was when it cannot be normalized) and ``flag`` is the reason it
failed validation, or ''. Nothing is dropped.
"""
from imports.cleaning.base import Cleaned
from imports.cleaning.contact import clean_email, clean_mobile, normalize_mobile
from imports.cleaning.identity import clean_id_number

__all__ = ["Cleaned", "clean_email", "clean_id_number", "clean_mobile", "normalize_mobile"]
