from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from accounts.crypto import (
    CIPHERTEXT_PREFIX,
    blind_index,
    decrypt,
    encrypt,
    encrypt_many,
    is_current,
    seal_values,
    secret_field_names,
)
from crmhub import selectors
from crmhub.models import Customer, SourceRecord
from tests.factories import CustomerFactory, SourceRecordFactory

pytestmark = pytest.mark.django_db

OLD, NEW = "old-key-0123456789", "new-key-9876543210"


def stored(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608 - test helper
        return cursor.fetchone()[0]


def test_it_round_trips_and_never_stores_plaintext():
    with override_settings(FIELD_ENCRYPTION_KEY=OLD):
        token = encrypt("11010519491231002X")
        assert token.startswith(CIPHERTEXT_PREFIX) and "11010519491231002X" not in token
        assert decrypt(token) == "11010519491231002X"
        customer = CustomerFactory(id_number="11010519491231002X")
        raw = stored("crmhub_customer", "id_number", customer.pk)
        assert raw.startswith(CIPHERTEXT_PREFIX) and "1101051949" not in raw
        assert Customer.objects.get(pk=customer.pk).id_number == "11010519491231002X"
    with override_settings(FIELD_ENCRYPTION_KEY="some-other-key"):
        with pytest.raises(ValueError, match="lacks the key"):
            decrypt(token)


def test_it_encrypts_many_values_into_fernet_tokens_under_the_primary_key():
    # every padding length (0-16 bytes of PKCS7), multi-byte text, the empty string
    values = ["", "x", "11010519491231002X", "a" * 15, "b" * 16, "c" * 17, "身份证 №42", "😀" * 9, "same", "same"]
    values += [f"{i:0{i % 33}d}" for i in range(40)]
    with override_settings(FIELD_ENCRYPTION_KEY=f"{NEW},{OLD}"):
        tokens = encrypt_many(values)
        assert [decrypt(t) for t in tokens] == values
        assert all(t.startswith(CIPHERTEXT_PREFIX) and is_current(t) for t in tokens)
        assert len({t[len(CIPHERTEXT_PREFIX) :] for t in tokens}) == len(values)  # a fresh IV per token
        assert [len(t) for t in tokens] == [len(encrypt(v)) for v in values]  # Fernet's own token sizes
    with override_settings(FIELD_ENCRYPTION_KEY=NEW):  # the primary key alone reads them
        assert [decrypt(t) for t in tokens] == values
    with override_settings(FIELD_ENCRYPTION_KEY=OLD), pytest.raises(ValueError, match="lacks the key"):
        decrypt(tokens[2])
    assert encrypt_many([]) == []


def test_it_finds_by_blind_index(steward):
    with override_settings(FIELD_ENCRYPTION_KEY=OLD):
        wanted = CustomerFactory(id_number="11010519491231002X")
        CustomerFactory(id_number="110105194912310037")
        assert stored("crmhub_customer", "id_number_hash", wanted.pk) == blind_index("11010519491231002X")
        assert list(selectors.customer_search(user=steward, q="11010519491231002x")) == [wanted]


def test_it_rotates_keys_and_the_old_key_can_then_be_dropped(steward):
    with override_settings(FIELD_ENCRYPTION_KEY=OLD):
        customer = CustomerFactory(id_number="11010519491231002X")
        customer.full_name = "改名"
        customer.save()  # a second history row, also encrypted
        record = SourceRecordFactory(
            customer=customer,
            raw=seal_values({"id_number": "11010519491231002X", "手机": "13800138000"}, {"id_number"}),
            normalized=seal_values(
                {"id_number": "11010519491231002X", "mobile": "+8613800138000"}, secret_field_names()
            ),
        )
        old_hash = blind_index("11010519491231002X")
    with override_settings(FIELD_ENCRYPTION_KEY=f"{NEW},{OLD}"):
        # Between the key change and the rotation, exact search still works (all keys' indexes).
        assert list(selectors.customer_search(user=steward, q="11010519491231002X")) == [customer]
        out = StringIO()
        call_command("rotate_field_keys", "--batch-size", "1", stdout=out)
        report = json.loads(out.getvalue().strip().splitlines()[-1])
        assert report["customer.id_number"] == {"rows": 1, "reencrypted": 1, "reindexed": 1}
        assert report["customer_history.id_number"]["reencrypted"] == 2
        assert report["source_record.raw_normalized"]["values"] == 2
        assert report["source_record_history.raw_normalized"]["values"] >= 2
        assert stored("crmhub_customer", "id_number_hash", customer.pk) != old_hash
        # Idempotent: a second run changes nothing.
        out = StringIO()
        call_command("rotate_field_keys", stdout=out)
        again = json.loads(out.getvalue().strip().splitlines()[-1])
        assert again["customer.id_number"]["reencrypted"] == 0 and again["customer.id_number"]["reindexed"] == 0
        assert again["source_record.raw_normalized"]["values"] == 0
        assert again["customer_history.id_number"]["reencrypted"] == 0
    with override_settings(FIELD_ENCRYPTION_KEY=NEW):
        # The old key is gone, and everything still decrypts and is still found.
        fresh = Customer.objects.get(pk=customer.pk)
        assert fresh.id_number == "11010519491231002X"
        assert {h.id_number for h in fresh.history.all()} == {"11010519491231002X"}
        from accounts.crypto import unseal_values

        record = SourceRecord.objects.get(pk=record.pk)
        assert unseal_values(record.raw)["id_number"] == "11010519491231002X"
        assert unseal_values(record.normalized)["id_number"] == "11010519491231002X"
        assert record.normalized["mobile"] == "+8613800138000"  # not secret, never sealed
        assert list(selectors.customer_search(user=steward, q="11010519491231002X")) == [customer]
