"""What the tests of people's Salesforce actions on crm-sync's leads (deleted, merged, converted:
tests/test_salesforce_deleted.py, test_salesforce_merged.py, test_salesforce_converted.py) share:
the real-org book, a cycle at a given moment, and the leads it routes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from support import sandbox_org_config, with_fallback_queues

from sandbox import Sandbox, SandboxConfig, generate_book
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import Config
from sync.cycle import run_cycle
from sync.vocabulary import CycleReport

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)


def real_org_book() -> dict[str, Any]:
    """300 generated accounts in a real org's shape, with the queues the example config's pools use."""
    return with_fallback_queues(generate_book(300, seed=7, now=NOW, real_org=True))


def cycle_at(config: Config, state: StateDB, now: datetime, **kw: Any) -> CycleReport:
    """A cycle whose rules' clock (and the clock of its writes) is `now`."""
    return run_cycle(config, state, make_vitally(config), make_salesforce(config), clock=lambda: now, now=now, **kw)


def routed(report: CycleReport) -> set[str]:
    """The accounts a cycle planned a new lead for."""
    return {str(w.account) for w in report.plan if w.op == "upsert_lead"}


def first_routed() -> str:
    """An account the book's first cycle routes (the first in id order)."""
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        found = routed(cycle_at(sandbox_org_config(sandbox.url), StateDB.memory(), NOW))
    return sorted(found)[0]


def crm_sync_s_lead(sandbox: Sandbox, account: str) -> dict[str, Any]:
    """The lead crm-sync created for `account`, as the sandbox holds it (the only one)."""
    (lead,) = [
        lead
        for lead in sandbox.state()["salesforce"]["Lead"]
        if (lead.get("Sync_Key__c") or "").startswith(f"crm-sync-{account}-")
    ]
    return dict(lead)


@contextmanager
def after_first_cycle() -> Iterator[tuple[Sandbox, Config, StateDB, str]]:
    """The real-org book's sandbox after its first cycle at `NOW` (an in-memory state): the
    sandbox, the config, the state and the account it routed first (`first_routed`)."""
    account = first_routed()
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.memory()
        cycle_at(config, state, NOW)
        yield sandbox, config, state, account
