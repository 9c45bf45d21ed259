"""Wiring: connectors from the config, and the version installed. The daemon cannot tell the
sandbox from the real services except by URL."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

from connectors.llm import LLMTriage
from connectors.ratelimit import RateLimiter
from connectors.salesforce import SalesforceClient
from connectors.slack import SlackClient
from connectors.vitally import VitallyClient
from connectors.zendesk import ZendeskClient
from rules.demo import classifier_for
from sync.config import Config
from sync.followups import Outlets

__all__ = ["OnWait", "make_outlets", "make_salesforce", "make_vitally", "package_version"]

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


def make_outlets(config: Config, *, sleep: Sleep = time.sleep) -> Outlets:
    """Slack, Zendesk and the LLM as `config` sets them up; each is None when it is not configured."""
    llm = None
    if config.policy.demo.classifier == "llm":
        llm = LLMTriage(config.llm, classifier_for(config.policy.demo))
    return Outlets(
        announce=SlackClient(config.announcements) if config.announcements.enabled else None,
        tickets=ZendeskClient(config.zendesk, sleep=sleep) if config.zendesk.enabled else None,
        llm=llm,
    )


def package_version() -> str:
    """The version of crm-sync installed (pyproject.toml's, the one place it is written; shown by
    `--version` and in the daemon's `crm_sync_info`); "unknown" in a source tree never installed."""
    try:
        return version("crm-sync")
    except PackageNotFoundError:
        return "unknown"
