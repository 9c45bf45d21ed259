"""A cycle parses each Vitally account once (README, "How a cycle works"), routed and onboarding
accounts included: owners are drawn after every account was judged, from what the first pass
kept of them, not from a second read of the mirror."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import sync.accounts
from core.model import Account
from core.records import account_json_parser
from sandbox import Sandbox, generate_book
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import example_against
from sync.cycle import run_cycle

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)


def test_cycle_parses_each_account_once_routed_and_onboarding_included(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: Counter[str] = Counter()

    def counting_parser(*settings: Any) -> Callable[[str], Account]:
        parse = account_json_parser(*settings)

        def counting(text: str) -> Account:
            account = parse(text)  # a malformed account raises: it is not judged
            parsed[account.id] += 1
            return account

        return counting

    monkeypatch.setattr(sync.accounts, "account_json_parser", counting_parser)
    with Sandbox(generate_book(300, seed=7, now=NOW), now=NOW) as sandbox:
        config = example_against(sandbox.url)
        state = StateDB.memory()
        report = run_cycle(config, state, make_vitally(config), make_salesforce(config), clock=lambda: NOW, now=NOW)
        plan = list(report.plan)

    new_leads = {w.account for w in plan if w.op == "upsert_lead"}
    specialists = {w.account for w in plan if w.rule == "onboarding.lead" and w.op == "set_traits"}
    assert new_leads and specialists  # the book routes accounts and hands some to a specialist
    assert parsed.keys() >= new_leads | specialists
    assert len(parsed) >= report.counts["accounts_evaluated"] > 0
    assert max(parsed.values()) == 1
