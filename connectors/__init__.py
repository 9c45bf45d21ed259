"""I/O in and out: the Vitally and Salesforce adapters, record parsing, the error tree.

`connectors.sandbox` (the local imitation of both services) is imported on its own.
"""

from __future__ import annotations

from connectors.base import Connector, RequestCounter, WriteResult
from connectors.errors import (
    AuthError,
    ConfigError,
    ContractError,
    FatalError,
    QuotaExhaustedError,
    RateLimitedError,
    RecordError,
    RetriableError,
    SyncError,
    UnreachableError,
    WriteRejectedError,
)
from connectors.salesforce import SalesforceClient
from connectors.vitally import VitallyClient

__all__ = [
    "AuthError",
    "ConfigError",
    "Connector",
    "ContractError",
    "FatalError",
    "QuotaExhaustedError",
    "RateLimitedError",
    "RecordError",
    "RequestCounter",
    "RetriableError",
    "SalesforceClient",
    "SyncError",
    "UnreachableError",
    "VitallyClient",
    "WriteRejectedError",
    "WriteResult",
]
