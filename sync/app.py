"""Wiring: connectors from the config. The daemon cannot tell the sandbox from the real
services except by URL."""

from __future__ import annotations

import time
from collections.abc import Callable

from connectors.salesforce import SalesforceClient
from connectors.vitally import VitallyClient
from sync.config import Config

__all__ = ["make_salesforce", "make_vitally"]


def make_vitally(config: Config, *, sleep: Callable[[float], None] = time.sleep) -> VitallyClient:
    """The Vitally client of `config`'s `[vitally]` settings."""
    return VitallyClient(config.vitally, sleep=sleep)


def make_salesforce(config: Config, *, sleep: Callable[[float], None] = time.sleep) -> SalesforceClient:
    """The Salesforce client of `config`'s `[salesforce]` settings."""
    return SalesforceClient(config.salesforce, sleep=sleep)
