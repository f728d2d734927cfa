"""Choice sets of the core customer domain."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class SourceKind(models.TextChoices):
    FILE = "file", _("File uploads")
    SQL = "sql", _("SQL database")
    REST = "rest", _("REST API pull")
    PUSH = "push", _("Push API")
    MANUAL = "manual", _("Manual entry")


class FieldType(models.TextChoices):
    TEXT = "text", _("Text")
    NAME = "name", _("Person name")
    MOBILE = "mobile", _("Mobile number")
    PHONE = "phone", _("Phone number")
    EMAIL = "email", _("Email")
    ID_NUMBER = "id_number", _("ID number")
    DATE = "date", _("Date")
    GENDER = "gender", _("Gender")
    ADDRESS = "address", _("Address")
    CODE = "code", _("Code / identifier")
    POSTCODE = "postcode", _("Postcode")
    TAGS = "tags", _("Tags")
    BOOLEAN = "boolean", _("Yes / no")
    NUMBER = "number", _("Number")
    CHOICE = "choice", _("Choice")


class Sensitivity(models.TextChoices):
    PUBLIC = "public", _("Public")
    INTERNAL = "internal", _("Internal")
    CONFIDENTIAL = "confidential", _("Confidential")
    SECRET = "secret", _("Secret")


class MaskStyle(models.TextChoices):
    NONE = "none", _("No masking")
    MOBILE = "mobile", _("Mobile: 138****8000")
    ID_NUMBER = "id_number", _("ID: 110101********1234")
    EMAIL = "email", _("Email: z***@example.com")
    NAME = "name", _("Name: 张* / J*** Smith")
    ADDRESS = "address", _("Address: cut to district")
    PARTIAL = "partial", _("Keep first and last characters")
    FULL = "full", _("Hide everything")


class CustomerStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    MERGED = "merged", _("Merged (tombstone)")
    ERASED = "erased", _("Erased")


class Gender(models.TextChoices):
    MALE = "M", _("Male")
    FEMALE = "F", _("Female")
    OTHER = "O", _("Other")
    UNKNOWN = "U", _("Unknown")


class InteractionKind(models.TextChoices):
    ORDER = "order", _("Order")
    TICKET = "ticket", _("Service ticket")
    VISIT = "visit", _("Store visit")
    CALL = "call", _("Call")
    SIGNUP = "signup", _("Sign-up")
    MESSAGE = "message", _("Message")
    OTHER = "other", _("Other")


class ChangeChannel(models.TextChoices):
    """Through what a change reached a record: shown in every history entry."""

    WEB = "web", _("Web")
    API = "api", _("API")
    IMPORT = "import", _("Import")
    CONNECTOR = "connector", _("Connector")
    MERGE = "merge", _("Merge")
    UNMERGE = "unmerge", _("Unmerge")
    COMMAND = "command", _("Command line")
    SYSTEM = "system", _("System")


class ChangeEventType(models.TextChoices):
    CREATED = "created", _("Created")
    UPDATED = "updated", _("Updated")
    MERGED = "merged", _("Merged")
    UNMERGED = "unmerged", _("Unmerged")
    ERASED = "erased", _("Erased")


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Waiting")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed, will retry")
    DEAD = "dead", _("Given up")


class QualityMetric(models.TextChoices):
    COMPLETENESS = "completeness", _("Completeness")
    VALIDITY = "validity", _("Validity")
    UNIQUENESS = "uniqueness", _("Uniqueness")
    DUPLICATE_RATE = "duplicate_rate", _("Duplicate rate")
    FRESHNESS = "freshness_hours", _("Hours since last sync")
    CONFLICT_RATE = "conflict_rate", _("Conflict rate between sources")
    REVIEW_BACKLOG = "review_backlog", _("Match candidates awaiting review")
    RECORDS = "records", _("Records")


class AlertKind(models.TextChoices):
    METRIC_BELOW = "metric_below", _("Metric below threshold")
    METRIC_ABOVE = "metric_above", _("Metric above threshold")
    NO_SYNC = "no_sync", _("No successful sync for N hours")
    BACKLOG_ABOVE = "backlog_above", _("Review backlog above N")
    WEBHOOK_DISABLED = "webhook_disabled", _("Webhook subscription disabled")
    CONNECTOR_PAUSED = "connector_paused", _("Connector paused after repeated failures")


class AlertStatus(models.TextChoices):
    OPEN = "open", _("Open")
    RESOLVED = "resolved", _("Resolved")


class PrivacyRequestKind(models.TextChoices):
    SEARCH = "search", _("Search")
    EXPORT = "export", _("Export for the person")
    ANONYMIZE = "anonymize", _("Anonymize")
    ERASE = "erase", _("Erase")
