"""A routing trigger's reason, written to the `routing_reason` trait when it routed the account, is
not written again because the same rule's reason counts one more day ("signed up 706 days ago"
becomes "707 days ago"): the trait says why the account was routed, as written then
(`rules.base.reason_gist`, `sync.plan.Planner._plan_account`).

Before, every account whose trigger kept firing while its lead was open got a `PUT` of that trait
every day (13 of a 400-account book on each of three days), a change in Vitally's history and,
through a Playbook on trait changes, a webhook back to crm-sync, for nothing a person could act
on. Another rule's reason is written; a reason a person edited stays theirs (a conflict)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from rules import evaluate_account
from rules.base import reason_gist
from sandbox import Sandbox, generate_book
from state import StateDB
from sync.accounts import parse_mirrored
from sync.app import make_salesforce, make_vitally
from sync.config import Config, example_against
from sync.cycle import run_cycle
from sync.facts import SalesforceFacts
from sync.vocabulary import CycleReport

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def test_the_gist_of_a_reason_trait_is_its_rule_and_recommendation() -> None:
    assert reason_gist("routing_reason", "bdr.low_usage: signed up 706 days ago ≥ 90") == "bdr.low_usage"
    assert reason_gist("qualification", "qualification.recommendation: nurture: mrr 120 < 500") == (
        "qualification.recommendation",
        "nurture",
    )
    assert reason_gist("qualification", "qualification.recommendation: qualify: x") != reason_gist(
        "qualification", "qualification.recommendation: nurture: x"
    )
    assert reason_gist("lifecycle_stage", "Technical account executive") == "Technical account executive"
    assert reason_gist("routing_reason", None) is None


@pytest.fixture(scope="module")
def settled() -> Iterator[tuple[Config, Sandbox, StateDB]]:
    """A 400-account book after the cycles that route it and read their writes back."""
    with Sandbox(generate_book(400, seed=7, now=NOW), now=NOW) as sandbox, tempfile.TemporaryDirectory() as tmp:
        config = example_against(sandbox.url)
        state = StateDB.open(Path(tmp) / "state.db")
        for _ in range(3):
            report = _cycle(config, state, sandbox)
        assert list(report.plan) == []
        yield config, sandbox, state
        state.close()


def _cycle(config: Config, state: StateDB, sandbox: Sandbox) -> CycleReport:
    return run_cycle(config, state, make_vitally(config), make_salesforce(config), clock=sandbox.now)


def _reasons_today(config: Config, state: StateDB, when: datetime) -> dict[str, str]:
    """Account id → the routing reason its rules give at `when` (the trigger that fires)."""
    facts = SalesforceFacts.load(state)
    reasons = {}
    for account_id, raw, error, _run in state.iter_accounts():
        if error:
            continue
        account = parse_mirrored(json.loads(raw), config)
        for decision in evaluate_account(account, facts.context_for(account_id), config.policy, when, full=False):
            if decision.fired and "routing_reason" in decision.traits:
                reasons[account_id] = str(decision.traits["routing_reason"])
    return reasons


def test_the_same_rules_reason_a_day_later_is_not_written_again(settled: tuple[Config, Sandbox, StateDB]) -> None:
    config, sandbox, state = settled
    held = {
        account["id"]: account["traits"].get("routing_reason")
        for account in sandbox.state()["vitally"]["accounts"]
        if (account.get("traits") or {}).get("routing_reason")
    }
    for days in (1, 3):
        when = NOW + timedelta(days=days)
        counted_on = {
            account_id: reason
            for account_id, reason in _reasons_today(config, state, when).items()
            if account_id in held and reason != held[account_id]
        }
        # The case exists: accounts whose trigger still fires with a reason that now reads otherwise.
        assert len(counted_on) >= 5, days
        assert all(
            reason_gist("routing_reason", r) == reason_gist("routing_reason", held[a]) for a, r in counted_on.items()
        )
        sandbox.set_clock(when)
        plan = list(_cycle(config, state, sandbox).plan)
        assert [w for w in plan if w.record in counted_on] == [], days


def test_a_reason_a_person_edited_stays_theirs(settled: tuple[Config, Sandbox, StateDB]) -> None:
    config, sandbox, state = settled
    account_id, reason = next(iter(_reasons_today(config, state, sandbox.now()).items()))
    edited = f"{reason_gist('routing_reason', reason)}: Sam checked this one by phone"  # the same rule's gist
    response = requests.put(
        f"{sandbox.url}/resources/accounts/{account_id}",
        json={"traits": {"routing_reason": edited}},
        auth=("a-person", ""),
        timeout=10,
    )
    response.raise_for_status()
    report = _cycle(config, state, sandbox)
    assert [w for w in report.plan if w.record == account_id and "routing_reason" in w.fields] == []
    [conflict] = [c for c in report.conflicts if c.record == account_id]
    assert (conflict.field, conflict.theirs) == ("routing_reason", edited)
