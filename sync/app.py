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
    v = config.vitally
    return VitallyClient(
        v.base_url,
        v.api_key,
        timeout=v.timeout_seconds,
        max_attempts=v.max_attempts,
        max_wait=v.max_wait_seconds,
        sleep=sleep,
    )


def make_salesforce(config: Config, *, sleep: Callable[[float], None] = time.sleep) -> SalesforceClient:
    s = config.salesforce
    return SalesforceClient(
        s.instance_url,
        token=s.token,
        client_id=s.client_id,
        client_secret=s.client_secret,
        api_version=s.api_version,
        timeout=s.timeout_seconds,
        max_attempts=s.max_attempts,
        max_wait=s.max_wait_seconds,
        budget_share=s.budget_share,
        sleep=sleep,
    )
