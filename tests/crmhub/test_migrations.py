from __future__ import annotations

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_it_has_a_migration_for_every_model_change():
    # Fails when a model was changed without `makemigrations` (in any language).
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
