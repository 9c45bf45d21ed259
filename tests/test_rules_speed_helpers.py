"""The helpers that make the rules' hot paths fast answer what the slower code they replace answered:
a value derived once per policy is the policy's own (never another policy's), onboarding's median
is `statistics.median`, its cached percentages print as uncached ones (0 and -0.0 included), the
lifecycle stage judged with the evaluation's segments is the stage of the account carrying them, a
`Decision` built by its own `__new__` is the frozen dataclass its fields declare, and an account
context's open leads and opportunities are computed once, as a cached property would."""

from __future__ import annotations

import dataclasses
import inspect
import statistics
from dataclasses import FrozenInstanceError, replace
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.model import Account, Invoice, Lead, Opportunity
from rules import EMPTY, AccountContext, Decision, Policy, managed_segments
from rules.base import LeadIntent, TaskIntent, fmt_num, per_policy, wanting_nothing
from rules.lifecycle import stage, stage_with
from rules.onboarding import LEAD, _median, _pct, _pct_text
from rules.policy import LifecyclePolicy

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)


def test_a_value_derived_per_policy_is_derived_from_that_policy_and_kept_for_it() -> None:
    calls: list[Policy] = []

    @per_policy
    def review_mrr(policy: Policy) -> float:
        calls.append(policy)
        return policy.lifecycle.review_mrr

    default = Policy()
    other = replace(default, lifecycle=replace(default.lifecycle, review_mrr=5_000.0))
    assert review_mrr(default) == LifecyclePolicy().review_mrr
    assert review_mrr(other) == 5_000.0
    assert review_mrr(default) == LifecyclePolicy().review_mrr and review_mrr(other) == 5_000.0
    assert calls == [default, other]  # each derived once
    equal_but_another = Policy()
    assert review_mrr(equal_but_another) == LifecyclePolicy().review_mrr
    assert calls[-1] is equal_but_another  # keyed by identity: derived for it, not taken from `default`


def test_managed_segments_follow_the_policy() -> None:
    default = Policy()
    renamed = replace(default, lifecycle=replace(default.lifecycle, segment="Review me"))
    assert "Review me" in managed_segments(renamed)
    assert "Review me" not in managed_segments(default)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-10_000, 10_000), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1))
def test_median_is_statistics_median(values: list[float]) -> None:
    assert _median(values) == statistics.median(values)
    # What a person reads is the same (the compiled build, `make compiled`, returns a float where
    # Python returns an int: the function is declared to return a float).
    assert fmt_num(_median(values)) == fmt_num(statistics.median(values))


@settings(max_examples=300, deadline=None)
@given(
    st.floats(-10, 10, allow_nan=False, allow_infinity=False),
    st.one_of(st.none(), st.floats(-10, 10, allow_nan=False, allow_infinity=False)),
)
def test_cached_percentages_print_as_computed_ones(share: float, beside: float | None) -> None:
    assert _pct(share, beside) == _pct_text(share, beside)
    assert _pct(-0.0) == _pct_text(-0.0, None) and _pct(0.0) == _pct_text(0.0, None)


@settings(max_examples=200, deadline=None)
@given(
    mrr=st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False)),
    segments=st.sets(st.sampled_from(["Account review", "AM Managed", "Onboarding", "AE referral", "Leads"])),
    evaluated=st.sets(st.sampled_from(["Account review", "Product-led lead", "Onboarding", "TAM/CSM Candidate"])),
    roles=st.sets(st.sampled_from(["TAM", "CSM", "Account Executive", "Onboarding Specialist"])),
)
def test_stage_with_the_evaluations_segments_is_the_stage_of_the_account_carrying_them(
    mrr: float | None, segments: set[str], evaluated: set[str], roles: set[str]
) -> None:
    account = Account(
        id="acc_s",
        name="S",
        updated_at=NOW,
        mrr=mrr,
        segments=frozenset(segments),
        key_roles={role: "u1" for role in roles},
    )
    policy = Policy()
    assert stage_with(account, frozenset(evaluated), EMPTY, policy, NOW) == stage(
        replace(account, segments=frozenset(evaluated)), EMPTY, policy, NOW
    )


def test_a_decisions_constructor_takes_its_fields_in_order_with_their_defaults() -> None:
    parameters = list(inspect.signature(Decision).parameters.values())
    fields = dataclasses.fields(Decision)
    assert [p.name for p in parameters] == [f.name for f in fields]
    for parameter, declared in zip(parameters, fields, strict=True):
        if declared.default is not dataclasses.MISSING:
            assert parameter.default == declared.default and type(parameter.default) is type(declared.default)
        elif declared.default_factory is not dataclasses.MISSING:
            made = Decision("r", "acc", False, "why")
            assert getattr(made, declared.name) == declared.default_factory()
        else:
            assert parameter.default is inspect.Parameter.empty


def test_a_decision_is_a_frozen_dataclass_with_a_fresh_dict_per_default() -> None:
    first, second = Decision("r", "acc", True, "why"), Decision("r", "acc", True, "why")
    assert type(first) is Decision and dataclasses.is_dataclass(first) and first == second
    assert first.inputs == {} and first.inputs is not second.inputs and first.traits is not second.traits
    with pytest.raises(FrozenInstanceError):
        first.reason = "changed"  # type: ignore[misc]
    assert not hasattr(first, "__dict__")  # slots, as declared
    lead = LeadIntent(routing_rule="r")
    full = Decision(
        "r", "acc", True, "why", {"mrr": 1.0}, ("x",), {"t": 1}, frozenset({"S"}), frozenset({"S"}), "TAM",
        "EMEA", True, "guard", lead, None, ("other",), ("signal",),
    )  # fmt: skip
    assert replace(full, reason="other") == Decision(**{**dataclasses.asdict(full), "lead": lead, "reason": "other"})
    assert repr(full).startswith("Decision(rule='r', record='acc', fired=True, reason='why', inputs={'mrr': 1.0}")


def test_an_account_contexts_open_records_are_computed_once_and_kept() -> None:
    now = NOW
    leads = (
        Lead(id="00Q1", system_modstamp=now, status="Working"),
        Lead(id="00Q2", system_modstamp=now, status="Disqualified"),
        Lead(id="00Q3", system_modstamp=now, is_converted=True),
    )
    opportunities = (
        Opportunity("006A", "001", "Closed Won", None, None, None),
        Opportunity("006B", "001", "Negotiation", None, None, None),
    )
    context = AccountContext(leads, opportunities)
    assert [lead.id for lead in context.open_leads] == ["00Q1"]
    assert [o.id for o in context.open_opportunities] == ["006B"]
    assert context.open_leads is context.open_leads and context.open_opportunities is context.open_opportunities
    assert EMPTY.open_leads == () and EMPTY.open_opportunities == ()


def test_an_unreadable_first_invoice_month_is_left_to_the_onboarding_lead_to_report() -> None:
    """The gate reads invoice months through a cache; an unreadable one must still reach the rule,
    which names it (and a readable one is judged by its age as before)."""
    policy = Policy()
    unreadable = Account(
        id="acc_m", name="M", updated_at=NOW, mrr=300.0, business_email=True, invoices=(Invoice("2026-xx", 300.0),)
    )
    assert LEAD.may_fire(unreadable, EMPTY, policy, NOW)
    verdict = LEAD.decide(unreadable, EMPTY, policy, NOW)
    assert not verdict.fired and "first invoice month '2026-xx' unreadable" in verdict.reason
    recent = replace(unreadable, invoices=(Invoice("2026-10", 300.0),))
    old = replace(unreadable, invoices=(Invoice("2024-01", 300.0),))
    assert LEAD.may_fire(recent, EMPTY, policy, NOW) and LEAD.decide(recent, EMPTY, policy, NOW).fired
    assert not LEAD.may_fire(old, EMPTY, policy, NOW) and not LEAD.decide(old, EMPTY, policy, NOW).fired


def test_wanting_nothing_keeps_the_verdict_and_what_it_manages_but_writes_nothing() -> None:
    """The one shape of a verdict held back (a rule switched off, a routing winner whose lead
    qualification holds back): explain still shows it, the planner leaves its segments alone."""
    task = TaskIntent("k", "acc_1", "Call", "why", date(2026, 12, 1), None)
    fired = Decision(
        "rule.x",
        "acc_1",
        True,
        "because",
        {"mrr": 5},
        traits={"new_owner": "u1"},
        segments=frozenset({"Product-led lead"}),
        manages=frozenset({"Product-led lead"}),
        lead=LeadIntent(routing_rule="rule.x"),
        task=task,
        guarded_by="earlier",
    )
    held = wanting_nothing(fired, "held back")
    assert (held.fired, held.traits, held.segments, held.lead, held.task) == (False, {}, frozenset(), None, None)
    assert (held.reason, held.inputs, held.manages, held.guarded_by) == (
        "held back",
        {"mrr": 5},
        frozenset({"Product-led lead"}),
        "earlier",
    )
    assert wanting_nothing(fired, "held back", guarded_by="qualification").guarded_by == "qualification"
    assert fired.fired and fired.task is task  # the verdict it was made from is untouched
