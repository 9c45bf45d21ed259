"""Wiring: connectors from the config, and the version installed. The daemon cannot tell the
sandbox from the real services except by URL."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

from connectors.salesforce import SalesforceClient
from connectors.vitally import VitallyClient
from sync.config import Config

__all__ = ["make_salesforce", "make_vitally", "package_version"]


def make_vitally(config: Config, *, sleep: Callable[[float], None] = time.sleep) -> VitallyClient:
    """The Vitally client of `config`'s `[vitally]` settings."""
    return VitallyClient(config.vitally, sleep=sleep)


def make_salesforce(config: Config, *, sleep: Callable[[float], None] = time.sleep) -> SalesforceClient:
    """The Salesforce client of `config`'s `[salesforce]` settings."""
    return SalesforceClient(config.salesforce, sleep=sleep)


def package_version() -> str:
    """The version of crm-sync installed (pyproject.toml's, the one place it is written; shown by
    `--version` and in the daemon's `crm_sync_info`); "unknown" in a source tree never installed."""
    try:
        return version("crm-sync")
    except PackageNotFoundError:
        return "unknown"
