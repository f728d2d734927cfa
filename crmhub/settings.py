"""crmhub settings.

One file, configured from the environment (see docs/configuration.md). With nothing set,
crmhub runs on the embedded default: SQLite and a Celery broker on a SQLite file, both
under ``var/``. ``CRMHUB_ENV=production`` switches on the production hardening and makes
the secrets mandatory.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from crmhub.cache import cache_settings
from crmhub.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
CRMHUB_ENV = env_str("CRMHUB_ENV", "development")
if CRMHUB_ENV not in {"development", "production", "test"}:
    raise ImproperlyConfigured(f"CRMHUB_ENV must be development, production or test, got {CRMHUB_ENV!r}")
PRODUCTION = CRMHUB_ENV == "production"
TESTING = CRMHUB_ENV == "test"
# Tests keep their files (SQLite test database, broker file, uploads) apart from a dev site's.
VAR_DIR = Path(env_str("CRMHUB_VAR_DIR", str(BASE_DIR / "var" / ("test" if TESTING else ""))))
VAR_DIR.mkdir(parents=True, exist_ok=True)
DEBUG = env_bool("DEBUG", default=not PRODUCTION)


def _local_secret(name: str, env_name: str, make) -> str:
    """A secret from the environment; in development, one generated once and kept in var/."""
    value = env_str(env_name)
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{env_name} must be set in production")
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _local_secret("secret_key", "SECRET_KEY", lambda: secrets.token_urlsafe(50))
# Comma-separated keys: the first encrypts, all decrypt (rotation, see accounts).
FIELD_ENCRYPTION_KEY = _local_secret("field_encryption_key", "FIELD_ENCRYPTION_KEY", lambda: secrets.token_urlsafe(32))

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "simple_history",
    "django_celery_beat",
    "axes",
    "crmhub",
    "accounts",
    "imports",
    "dedup",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "crmhub.middleware.SessionIdleRefreshMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "crmhub.middleware.ChangeContextMiddleware",
    # Last, so that it sees the authenticated user and the final response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "crmhub.urls"
WSGI_APPLICATION = "crmhub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "crmhub.context_processors.navigation",
                "dedup.context_processors.review_count",
            ],
        },
    },
]

#
# Database
#
DEFAULT_SQLITE_PATH = VAR_DIR / "crmhub.sqlite3"
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DEFAULT_SQLITE_PATH}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write to the same file: WAL lets readers go on while one
    # writes, IMMEDIATE transactions take the write lock up front instead of failing midway,
    # and the timeout makes a writer wait for the other instead of raising "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests use a file, not memory, so that a real worker process can see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-crmhub.sqlite3")}
if env_bool("CRMHUB_USE_TEST_DATABASE"):
    # Set for the Celery worker that integration tests start: it must work on the test database.
    _db = DATABASES["default"]
    _db["NAME"] = _db.get("TEST", {}).get("NAME") or f"test_{_db['NAME']}"
DB_VENDOR_IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

#
# Authentication and passwords
#
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if TESTING:
    # Hashing cost is irrelevant to what the tests check; Argon2 stays first everywhere else.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# Idle expiry: the age counts from the last request, refreshed at most once a minute
# (crmhub.middleware.SessionIdleRefreshMiddleware) rather than written on every request.
CRMHUB_SESSION_REFRESH_SECONDS = env_int("CRMHUB_SESSION_REFRESH_SECONDS", 60)

AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = env_bool("AXES_ENABLED", True)
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"

GUARDIAN_RAISE_403 = True
ANONYMOUS_USER_NAME = None

#
# Internationalisation: Chinese is a first-class language, English the fallback.
#
LANGUAGE_CODE = env_str("LANGUAGE_CODE", "zh-hans")
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

#
# Static files (vendored; the site works offline)
#
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = not PRODUCTION  # serve straight from static/ until collectstatic runs
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"

#
# Celery
#
DEFAULT_BROKER_URL = f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", DEFAULT_BROKER_URL)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 4
# Jobs report their state in the database (ImportRun, DedupRun, ...), not in a result backend.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "crmhub-test" if TESTING else "crmhub")
CELERY_TASK_ACKS_LATE = True  # a killed worker's task is delivered again
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 3600)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 3900)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# How often a worker records that it is alive (see crmhub.celery).
CRMHUB_WORKER_HEARTBEAT_SECONDS = env_int("CRMHUB_WORKER_HEARTBEAT_SECONDS", 1 if TESTING else 5)
# How long command-line tools wait for a worker before saying none is answering.
CRMHUB_WORKER_WAIT_SECONDS = env_int("CRMHUB_WORKER_WAIT_SECONDS", 10)

#
# Cache, shared by every process of the site (the API's throttle counts): CACHE_URL, else the
# Celery broker's Redis, else files under VAR_DIR (see crmhub.cache and the README's configuration table).
#
CACHES = cache_settings(cache_url=env_str("CACHE_URL"), broker_url=CELERY_BROKER_URL, var_dir=VAR_DIR)

#
# REST API
#
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.CrmhubTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.authentication.TokenScopePermission",
    ],
    "DEFAULT_PAGINATION_CLASS": "crmhub.api.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "crmhub.api.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"anon": "60/min", "user": "6000/min", "push": env_str("CRMHUB_PUSH_RATE", "12000/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "crmhub API",
    "DESCRIPTION": "Customer data hub: golden records, source records, imports, matching and the change feed.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
}

#
# Security headers and content security policy
#
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SESSION_COOKIE_SAMESITE = "Lax"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # /healthz is probed over plain HTTP by load balancers inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

from csp.constants import NONE, SELF  # noqa: E402

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

#
# Logging: personal data never goes to logs; see accounts for the redacting filter.
#
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # httpx logs every request (with its URL) at INFO: keep webhook and connector traffic out of logs.
    "loggers": {"axes": {"level": "WARNING"}, "httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

#
# crmhub behaviour
#
CRMHUB_IMPORT_MAX_UPLOAD_BYTES = env_int("CRMHUB_IMPORT_MAX_UPLOAD_BYTES", 512 * 1024 * 1024)
# PostgreSQL connections that write each chunk of an import or sync run at once (imports.pipeline,
# docs/scaling.md "Write lanes"): one per core the database can spend on it, 1 to write as one
# connection. Each lane is a connection of its own, so a worker uses up to lanes + 1. SQLite: always 1.
CRMHUB_IMPORT_WRITE_LANES = env_int("CRMHUB_IMPORT_WRITE_LANES", min(os.cpu_count() or 1, 4))
if not 1 <= CRMHUB_IMPORT_WRITE_LANES <= 24:
    raise ImproperlyConfigured("CRMHUB_IMPORT_WRITE_LANES must be between 1 and 24 (imports.locks.KEY_STRIPES)")
# Connectors and the push API (imports/connectors/)
CRMHUB_CONNECTOR_STALE_SECONDS = env_int("CRMHUB_CONNECTOR_STALE_SECONDS", 900)
CRMHUB_CONNECTOR_RETRY_SECONDS = env_int("CRMHUB_CONNECTOR_RETRY_SECONDS", 60)
CRMHUB_PUSH_MAX_BATCH = env_int("CRMHUB_PUSH_MAX_BATCH", 500)
CRMHUB_WEBHOOK_TOLERANCE_SECONDS = env_int("CRMHUB_WEBHOOK_TOLERANCE_SECONDS", 300)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
CRMHUB_DEMO_PASSWORD = "crmhub-demo"

#
# Webhooks
#
CRMHUB_WEBHOOK_CONNECT_TIMEOUT = float(env_int("CRMHUB_WEBHOOK_CONNECT_TIMEOUT", 3))
CRMHUB_WEBHOOK_READ_TIMEOUT = float(env_int("CRMHUB_WEBHOOK_READ_TIMEOUT", 10))
CRMHUB_WEBHOOK_BACKOFF_BASE_SECONDS = float(env_int("CRMHUB_WEBHOOK_BACKOFF_BASE_SECONDS", 5))
CRMHUB_WEBHOOK_BACKOFF_MAX_SECONDS = float(env_int("CRMHUB_WEBHOOK_BACKOFF_MAX_SECONDS", 3600))
CRMHUB_WEBHOOK_DISABLE_AFTER_FAILURES = env_int("CRMHUB_WEBHOOK_DISABLE_AFTER_FAILURES", 25)
CELERY_BEAT_SCHEDULE = {
    "webhooks": {"task": "crmhub.webhooks_dispatch_all", "schedule": 5.0},
    # Data quality: today's snapshot (then the alert rules) every 6 hours; alert rules every 5 minutes.
    "quality-metrics": {"task": "crmhub.quality_metrics_run", "schedule": 6 * 3600.0},
    "alerts": {"task": "crmhub.alerts_evaluate", "schedule": 300.0},
    "exports-expire": {"task": "accounts.exports_expire", "schedule": 3600.0},
}
# Generated export files (personal data) are removed this many hours after they were written.
CRMHUB_EXPORT_RETENTION_HOURS = env_int("CRMHUB_EXPORT_RETENTION_HOURS", 72)
# Alert e-mails (crmhub.alerts): any Django e-mail backend; the console one until configured.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "crmhub@localhost")
# Access control (accounts): reveals per user per hour, rows above which an export needs an
# admin's approval, lifetime of tokens issued by POST /api/v1/auth/token/.
CRMHUB_REVEAL_LIMIT_PER_HOUR = env_int("CRMHUB_REVEAL_LIMIT_PER_HOUR", 20)
CRMHUB_EXPORT_APPROVAL_ROWS = env_int("CRMHUB_EXPORT_APPROVAL_ROWS", 1000)
CRMHUB_API_TOKEN_DAYS = env_int("CRMHUB_API_TOKEN_DAYS", 90)
# New records of an import run up to this many are matched one by one as the run commits;
# a larger run starts a batch dedup run for its source instead.
CRMHUB_REALTIME_MATCH_MAX_RECORDS = env_int("CRMHUB_REALTIME_MATCH_MAX_RECORDS", 5000)
