"""A cycle skips explaining rules that cannot fire; it must decide exactly what the full evaluation
decides (explain and what-if always build every verdict). Each rule's `may_fire` is a necessary
condition of its own verdict: whenever the rule fires, it holds."""

from __future__ import annotations

import contextlib
import importlib
import json
import pkgutil
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rules
from core.errors import RecordError
from core.model import Account, Invoice
from core.records import parse_account, parse_lead
from rules import ALL_RULE_IDS, EMPTY, AccountContext, Decision, Policy, Rule, evaluate_account, evaluate_lead
from rules.base import AccountRule, LeadRule, always
from rules.context import LeadContext
from rules.routing import LEAD_TRIGGERS
from sandbox import generate_book
from state import StateDB
from sync.facts import SalesforceFacts

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)


def effects(decisions: list[Decision]) -> list[tuple[Any, ...]]:
    """What a cycle acts on: the fired decisions and everything they want written."""
    return [
        (d.rule, d.reason, dict(d.traits), sorted(d.segments), d.lead, d.task, d.review, d.also_matched)
        for d in decisions
        if d.fired
    ]


def _rules() -> list[Rule[Any, Any]]:
    """Every rule record of the rules package."""
    found: dict[str, Rule[Any, Any]] = {}
    for info in pkgutil.iter_modules(rules.__path__):
        module = importlib.import_module(f"rules.{info.name}")
        for value in vars(module).values():
            if isinstance(value, Rule):
                found[f"{value.id} {value.decide.__qualname__}"] = value
    return list(found.values())


# The lead-source triggers: each gated by its LeadSource, an open lead, waiting for routing.
GATED_LEADS: list[LeadRule] = list(LEAD_TRIGGERS.values())
# The account rules with a necessary condition cheaper than themselves.
GATED: list[AccountRule] = [
    rule for rule in _rules() if rule.may_fire is not always and all(rule is not lead for lead in GATED_LEADS)
]


def test_every_rule_id_is_a_known_rule_and_every_known_rule_has_a_record() -> None:
    assert {rule.id for rule in _rules()} == set(ALL_RULE_IDS)
    assert len(GATED) == 23
    assert len(GATED_LEADS) == 6 and all(rule.may_fire is not always for rule in GATED_LEADS)


@pytest.mark.parametrize("seed", [3, 11])
def test_fast_lead_evaluation_decides_what_full_evaluation_decides_on_a_generated_book(seed: int) -> None:
    """Every lead of a generated book (and each again owned by nobody, by a queue, closed, or with
    a LeadSource in other spacing and case): the same fired decisions, and `may_fire` holds
    whenever its trigger fires."""
    book = generate_book(1500, seed=seed, now=NOW)
    policy = Policy()
    compared = fired = 0
    for raw in book["salesforce"]["Lead"]:
        with contextlib.suppress(RecordError):
            lead = parse_lead(raw)
            source = f"  {(lead.lead_source or '').upper()} " if lead.lead_source else None
            for variant in (
                lead,
                replace(lead, owner_id=None),
                replace(lead, owner_id="00G000000000001"),
                replace(lead, owner_id=None, status="Disqualified"),
                replace(lead, owner_id=None, lead_source=source),
            ):
                for ctx in (LeadContext(), LeadContext(variant.system_modstamp.date())):
                    fast = evaluate_lead(variant, ctx, policy, NOW, full=False)
                    full = evaluate_lead(variant, ctx, policy, NOW, full=True)
                    assert effects(fast) == effects(full), variant.id
                    for rule in GATED_LEADS:
                        if rule.decide(variant, ctx, policy, NOW).fired:
                            fired += 1
                            assert rule.may_fire(variant, ctx, policy, NOW), (rule.id, variant.id)
                compared += 1
    assert compared > 1000 and fired > 100


def _assert_may_fire_is_necessary(account: Account, ctx: AccountContext, policy: Policy) -> None:
    for claimed in (ctx, AccountContext(ctx.leads, ctx.opportunities, otherwise_lead=True)):
        for rule in GATED:
            decision = rule.decide(account, claimed, policy, NOW)
            assert decision.rule == rule.id
            if decision.fired:
                assert rule.may_fire(account, claimed, policy, NOW), (rule.id, account.id, decision.reason)


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_fast_path_decides_what_full_evaluation_decides_on_a_generated_book(seed: int) -> None:
    book = generate_book(1500, seed=seed, now=NOW)
    state = StateDB.memory()
    rows = [
        {"object": obj, "id": r["Id"], "modstamp": r.get("SystemModstamp"), "raw": json.dumps(r), "error": None}
        for obj, records in book["salesforce"].items()
        for r in records
    ]
    state.upsert_sf(rows)
    facts = SalesforceFacts.load(state)
    policy = Policy()
    compared = 0
    for raw in book["vitally"]["accounts"]:
        with contextlib.suppress(RecordError):
            account = parse_account(raw)
            context = facts.context_for(account.id)
            fast = evaluate_account(account, context, policy, NOW, full=False)
            full = evaluate_account(account, context, policy, NOW, full=True)
            assert effects(fast) == effects(full), account.id
            _assert_may_fire_is_necessary(account, context, policy)
            compared += 1
    assert compared > 1400


MONEY = st.one_of(st.none(), st.floats(min_value=0, max_value=50_000, allow_nan=False))
COUNT = st.one_of(st.none(), st.integers(min_value=0, max_value=5_000))


@settings(max_examples=300, deadline=None)
@given(
    mrr=MONEY,
    forecast=MONEY,
    employees=COUNT,
    users=COUNT,
    icp=st.one_of(st.none(), st.integers(-10, 30)),
    plan=st.sampled_from([None, "scale", "Scale ", "startup", "free"]),
    amounts=st.lists(st.floats(min_value=0, max_value=5_000, allow_nan=False), max_size=6),
    business_email=st.one_of(st.none(), st.booleans()),
    segments=st.sets(st.sampled_from(["AM referral", "AE referral", "Onboarding referral", "Active Trial"])),
    roles=st.sets(st.sampled_from(["TAM", "CSM", "Account Executive", "Onboarding Specialist"])),
)
def test_fast_path_matches_full_evaluation_for_any_account(
    mrr: float | None,
    forecast: float | None,
    employees: int | None,
    users: int | None,
    icp: int | None,
    plan: str | None,
    amounts: list[float],
    business_email: bool | None,
    segments: set[str],
    roles: set[str],
) -> None:
    months = [f"2026-{m:02d}" for m in range(12 - len(amounts) + 1, 12)] + ["2026-11"]
    account = Account(
        id="acc_p",
        name="P",
        updated_at=NOW,
        mrr=mrr,
        forecasted_mrr=forecast,
        employee_count=employees,
        user_count=users,
        icp_score=icp,
        plan=plan,
        country="US",
        invoices=tuple(Invoice(m, a) for m, a in zip(months[-len(amounts) :], amounts, strict=False))
        if amounts
        else None,
        business_email=business_email,
        segments=frozenset(segments),
        key_roles={role: "u1" for role in roles},
        paid_products=("session_replay",),
    )
    fast = evaluate_account(account, EMPTY, Policy(), NOW, full=False)
    full = evaluate_account(account, EMPTY, Policy(), NOW, full=True)
    assert effects(fast) == effects(full)
    _assert_may_fire_is_necessary(account, EMPTY, Policy())
