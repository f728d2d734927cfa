"""Pull connectors: one module per kind behind ``base.Connector``, registered by kind.

Every connector hands the import pipeline pages of rows (``base.ConnectorChunkSource``), so
a sync goes through the same mapping, cleaning, upsert, history, outbox, error report and
rollback as a file import.
"""

from __future__ import annotations

# Importing the kinds registers them.
from imports.connectors import rest, sql  # noqa: E402, F401, I001
from imports.connectors.base import REGISTRY, Connector, ConnectorError, connector_class, register_connector

__all__ = ["REGISTRY", "Connector", "ConnectorError", "connector_class", "register_connector"]
