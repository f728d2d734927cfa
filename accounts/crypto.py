"""Encryption at rest for secret-level values, and blind indexes to find them.

``FIELD_ENCRYPTION_KEY`` holds one or more comma-separated keys. The first encrypts; all
of them decrypt, so a new key can be put in front and the data re-encrypted afterwards
(``manage.py rotate_field_keys``). A blind index is an HMAC of the normalized value under a
key derived from the primary key: equal values give equal hashes, so exact search and
deterministic matching work without decrypting anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

CIPHERTEXT_PREFIX = "enc1:"


def _derive(secret: str, purpose: bytes) -> bytes:
    return hashlib.sha256(purpose + b"\x00" + secret.encode()).digest()


@lru_cache(maxsize=8)
def _all_keys(raw: str) -> tuple[MultiFernet, Fernet, list[bytes]]:
    """(all keys for decryption, the primary key alone, the blind-index key of every key)."""
    secrets_ = [k.strip() for k in raw.split(",") if k.strip()]
    if not secrets_:
        raise ValueError("FIELD_ENCRYPTION_KEY is empty")
    fernets = [Fernet(base64.urlsafe_b64encode(_derive(s, b"crmhub-field-encryption"))) for s in secrets_]
    return MultiFernet(fernets), fernets[0], [_derive(s, b"crmhub-blind-index") for s in secrets_]


def _keys(raw: str) -> tuple[MultiFernet, bytes]:
    fernet, _, index_keys = _all_keys(raw)
    return fernet, index_keys[0]


def encrypt(value: str) -> str:
    fernet, _ = _keys(settings.FIELD_ENCRYPTION_KEY)
    return CIPHERTEXT_PREFIX + fernet.encrypt(value.encode()).decode()


def encrypt_many(values: list[str]) -> list[str]:
    """``encrypt`` of each value, the key looked up once for the list. Tokens are made by
    ``Fernet`` itself: a faster, hand-assembled token maker (AES-CBC + HMAC from the primitives)
    was measured at about half the CPU per value, a few per cent of an import, and not taken."""
    _, primary, _ = _all_keys(settings.FIELD_ENCRYPTION_KEY)
    encrypt_one = primary.encrypt
    return [CIPHERTEXT_PREFIX + encrypt_one(value.encode()).decode() for value in values]


def decrypt(value: str) -> str:
    if not value.startswith(CIPHERTEXT_PREFIX):
        return value  # written before encryption was switched on
    fernet, _ = _keys(settings.FIELD_ENCRYPTION_KEY)
    try:
        return fernet.decrypt(value[len(CIPHERTEXT_PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise ValueError("cannot decrypt a value: FIELD_ENCRYPTION_KEY lacks the key it was written with") from exc


def rotate(value: str) -> str:
    """Re-encrypt ``value`` (ciphertext) under the primary key."""
    fernet, _ = _keys(settings.FIELD_ENCRYPTION_KEY)
    if not value.startswith(CIPHERTEXT_PREFIX):
        return encrypt(value)
    return CIPHERTEXT_PREFIX + fernet.rotate(value[len(CIPHERTEXT_PREFIX) :].encode()).decode()


def is_current(value: str) -> bool:
    """Whether ciphertext ``value`` is encrypted under the primary key (rotation skips it)."""
    if not value.startswith(CIPHERTEXT_PREFIX):
        return False
    _, primary, _ = _all_keys(settings.FIELD_ENCRYPTION_KEY)
    try:
        primary.decrypt(value[len(CIPHERTEXT_PREFIX) :].encode())
    except InvalidToken:
        return False
    return True


def rotate_values(values: dict) -> tuple[dict, int]:
    """A copy of a JSON dict with every sealed value not under the primary key re-encrypted,
    and how many values changed."""
    out = dict(values)
    changed = 0
    for key, value in values.items():
        if isinstance(value, str) and value.startswith(CIPHERTEXT_PREFIX) and not is_current(value):
            out[key] = rotate(value)
            changed += 1
    return out, changed


def blind_index_candidates(value: str | None) -> list[str]:
    """The blind index of ``value`` under every configured key, primary first.

    Searching by all of them keeps exact search working between putting a new key first
    and ``rotate_field_keys`` recomputing the stored indexes.
    """
    if not value:
        return []
    _, _, index_keys = _all_keys(settings.FIELD_ENCRYPTION_KEY)
    return [hmac.new(key, value.encode(), hashlib.sha256).hexdigest() for key in index_keys]


def blind_index(value: str | None) -> str:
    """Keyed hash of an already-normalized value; '' for an empty value."""
    if not value:
        return ""
    _, key = _keys(settings.FIELD_ENCRYPTION_KEY)
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def blind_indexer():  # noqa: ANN201 - returns Callable[[str | None], str]
    """``blind_index`` for many values in a row: HMAC-SHA256 with its two keyed hash states
    (RFC 2104's inner and outer pads) prepared once and copied per value, which costs a third
    less than copying an ``hmac`` object (the import hashes every row with it)."""
    _, key = _keys(settings.FIELD_ENCRYPTION_KEY)
    size = hashlib.sha256().block_size
    block = (hashlib.sha256(key).digest() if len(key) > size else key).ljust(size, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def index(value: str | None) -> str:
        if not value:
            return ""
        h = inner.copy()
        h.update(value.encode())
        o = outer.copy()
        o.update(h.digest())
        return o.hexdigest()

    return index


class EncryptedTextField(models.TextField):
    """A text column stored encrypted; Python code only ever sees plaintext.

    The column cannot be searched or sorted: pair it with a blind-index column.
    """

    def from_db_value(self, value, expression, connection):  # noqa: ANN001
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value):  # noqa: ANN001
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        if value.startswith(CIPHERTEXT_PREFIX):
            return value
        return encrypt(value)


def secret_field_names() -> set[str]:
    """Data-dictionary fields whose values are encrypted wherever they are stored."""
    from crmhub.choices import Sensitivity
    from crmhub.models import FieldDefinition

    return set(FieldDefinition.objects.filter(sensitivity=Sensitivity.SECRET).values_list("name", flat=True))


def seal_values(values: dict, secret_names: set[str]) -> dict:
    """A copy of ``values`` with the values of ``secret_names`` encrypted.

    For JSON columns (SourceRecord.raw/normalized, history payloads) that cannot use
    EncryptedTextField. Values already sealed stay as they are.
    """
    out = dict(values)
    for name in secret_names & out.keys():
        value = out[name]
        if isinstance(value, str) and value and not value.startswith(CIPHERTEXT_PREFIX):
            out[name] = encrypt(value)
    return out


def unseal_values(values: dict) -> dict:
    """A copy of ``values`` with every sealed value decrypted (for presentation and matching)."""
    return {k: decrypt(v) if isinstance(v, str) and v.startswith(CIPHERTEXT_PREFIX) else v for k, v in values.items()}


def content_hash(values: dict) -> str:
    """Keyed hash of a record's values (sorted JSON), to tell "unchanged" on re-import.

    Keyed, because a plain sha256 over content that includes an ID number could be
    reversed by trying every plausible ID.
    """
    import json

    payload = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    _, key = _keys(settings.FIELD_ENCRYPTION_KEY)
    return hmac.new(key, b"content\x00" + payload.encode(), hashlib.sha256).hexdigest()
