"""I/O in and out: the Vitally and Salesforce adapters, their HTTP retry policy, paging and rate limiting.

Records are parsed and errors named in `core`; the local imitation of both services is `sandbox`.
"""

from __future__ import annotations

from connectors.base import RequestCounter, SalesforcePort, VitallyPort, WriteResult
from connectors.salesforce import SalesforceClient
from connectors.vitally import VitallyClient

__all__ = [
    "RequestCounter",
    "SalesforceClient",
    "SalesforcePort",
    "VitallyClient",
    "VitallyPort",
    "WriteResult",
]
