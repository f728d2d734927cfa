"""Configuration from the environment, checked in fresh interpreters so that the real
settings module is what is tested."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from crmhub.env import env_bool, env_int, env_list

ROOT = Path(__file__).resolve().parents[2]


def _settings_in_subprocess(env: dict[str, str], expr: str) -> subprocess.CompletedProcess:
    code = f"import json, crmhub.settings as s; print(json.dumps({expr}, default=str))"
    dropped = ("DATABASE_URL", "CELERY_", "CRMHUB_", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")
    base = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    return subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_it_reads_typed_values_and_fails_loudly(monkeypatch):
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", "12")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env_bool("X_BOOL") is True
    assert env_int("X_INT", 0) == 12
    assert env_list("X_LIST", []) == ["a", "b", "c"]
    monkeypatch.setenv("X_BOOL", "maybe")
    monkeypatch.setenv("X_INT", "twelve")
    with pytest.raises(ImproperlyConfigured, match="X_BOOL"):
        env_bool("X_BOOL")
    with pytest.raises(ImproperlyConfigured, match="X_INT"):
        env_int("X_INT", 0)


def test_it_defaults_to_sqlite_and_a_serverless_broker(tmp_path):
    result = _settings_in_subprocess(
        {"CRMHUB_VAR_DIR": str(tmp_path)},
        "[s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.DEBUG, s.LANGUAGE_CODE]",
    )
    assert result.returncode == 0, result.stderr
    engine, broker, debug, language = json.loads(result.stdout)
    assert language == "zh-hans"  # Chinese first; each user may switch to English
    assert engine == "django.db.backends.sqlite3"
    assert broker == f"sqla+sqlite:///{tmp_path}/celery-broker.sqlite3"
    assert debug is True
    # The generated development secrets are kept, so encrypted data stays readable.
    assert (tmp_path / "secret_key").exists() and (tmp_path / "field_encryption_key").exists()


def test_it_takes_postgres_and_redis_from_the_environment(tmp_path):
    result = _settings_in_subprocess(
        {
            "CRMHUB_VAR_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://crm:pw@db.internal:5433/crmhub",
            "CELERY_BROKER_URL": "redis://cache.internal:6379/2",
        },
        "[s.DATABASES['default']['ENGINE'], s.DATABASES['default']['HOST'], s.DATABASES['default']['PORT'],"
        " s.CELERY_BROKER_URL]",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "django.db.backends.postgresql",
        "db.internal",
        5433,
        "redis://cache.internal:6379/2",
    ]


def test_it_requires_secrets_in_production(tmp_path):
    result = _settings_in_subprocess(
        {"CRMHUB_VAR_DIR": str(tmp_path), "CRMHUB_ENV": "production", "ALLOWED_HOSTS": "crm.example.com"},
        "s.DEBUG",
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set in production" in result.stderr


def test_it_rejects_an_unknown_environment_name(tmp_path):
    result = _settings_in_subprocess({"CRMHUB_VAR_DIR": str(tmp_path), "CRMHUB_ENV": "staging"}, "s.DEBUG")
    assert result.returncode != 0
    assert "CRMHUB_ENV must be" in result.stderr


def test_it_passes_the_deployment_checklist_in_production(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "CELERY_", "CRMHUB_", "DJANGO_ALLOW_ASYNC_UNSAFE"))
    }
    env.update(
        CRMHUB_ENV="production",
        CRMHUB_VAR_DIR=str(tmp_path),
        SECRET_KEY="x" * 20 + "-production-secret-key-with-enough-entropy-0123456789",
        FIELD_ENCRYPTION_KEY="a-field-encryption-key-for-this-test",
        ALLOWED_HOSTS="crm.example.com",
        DJANGO_SETTINGS_MODULE="crmhub.settings",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
