"""Wiring: connectors from the config, and the version installed. The daemon cannot tell the
sandbox from the real services except by URL."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

from connectors.ratelimit import RateLimiter
from connectors.salesforce import SalesforceClient
from connectors.vitally import VitallyClient
from sync.config import Config

__all__ = ["OnWait", "make_salesforce", "make_vitally", "package_version"]

OnWait = Callable[[str, str, float], None]
"""`(service, reason, seconds)`, told when a connector begins a wait: reason `rate_limit` (its rate
limiter holds a request back until the window reopens) or `retry` (a failed attempt backs off)."""

Sleep = Callable[[float], None]


def _told(sleep: Sleep, on_wait: OnWait, service: str, reason: str) -> Sleep:
    def wait(seconds: float) -> None:
        on_wait(service, reason, seconds)
        sleep(seconds)

    return wait


def make_vitally(config: Config, *, sleep: Sleep = time.sleep, on_wait: OnWait | None = None) -> VitallyClient:
    """The Vitally client of `config`'s `[vitally]` settings; `on_wait` hears of every wait."""
    if on_wait is None:
        return VitallyClient(config.vitally, sleep=sleep)
    limiter = RateLimiter(
        sleep=_told(sleep, on_wait, "vitally", "rate_limit"), max_wait=config.vitally.max_wait_seconds
    )
    return VitallyClient(config.vitally, sleep=_told(sleep, on_wait, "vitally", "retry"), rate_limiter=limiter)


def make_salesforce(config: Config, *, sleep: Sleep = time.sleep, on_wait: OnWait | None = None) -> SalesforceClient:
    """The Salesforce client of `config`'s `[salesforce]` settings; `on_wait` hears of every wait
    (Salesforce announces no rate limit: its waits are retries and lock re-sends)."""
    if on_wait is not None:
        sleep = _told(sleep, on_wait, "salesforce", "retry")
    return SalesforceClient(config.salesforce, sleep=sleep)


def package_version() -> str:
    """The version of crm-sync installed (pyproject.toml's, the one place it is written; shown by
    `--version` and in the daemon's `crm_sync_info`); "unknown" in a source tree never installed."""
    try:
        return version("crm-sync")
    except PackageNotFoundError:
        return "unknown"
