"""The $0-spend new-business triggers, 'cool company' and the BDR low-usage trigger
(accounts-overview.md's new business box, lead-routing-and-scoring.md's BDR list), on both sides of
every threshold, with their settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from core.model import Account
from rules import Decision, Policy, evaluate_account
from rules.context import EMPTY, AccountContext
from rules.policy import LowUsagePolicy, ZeroSpendPolicy
from rules.routing import ACCOUNT_TRIGGERS, lead_source_for, route_account
from rules.signals import cool_company, fundraise, hiring_increase, low_usage, web_social_increase
from sync.wire import lead_fields

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
POLICY = Policy()

Trigger = Callable[[Account, AccountContext, Policy, datetime], Decision]


def days_ago(n: int) -> date:
    return NOW.date() - timedelta(days=n)


# Using PostHog, $0 spend: a free account with a few users and a flat company.
FREE: dict[str, Any] = {"mrr": 0.0, "user_count": 3, "harmonic_headcount": 40, "harmonic_headcount_180d": 40}


def account(**kw: Any) -> Account:
    base: dict[str, Any] = {"id": "acc_1", "name": "Acme", "updated_at": NOW, **FREE}
    base.update(kw)
    return Account(**base)


def fires(trigger: Trigger, policy: Policy = POLICY, **kw: Any) -> Decision:
    decision = trigger(account(**kw), EMPTY, policy, NOW)
    rule = ACCOUNT_TRIGGERS[decision.rule]
    if decision.fired:  # may_fire is a necessary condition of the verdict
        assert rule.may_fire(account(**kw), EMPTY, policy, NOW), decision.reason
    return decision


# -- $0 spend ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "fired"),
    [
        ({"harmonic_headcount": 48}, True),  # 40 -> 48 is +20 %
        ({"harmonic_headcount": 47}, False),  # +17.5 %
        ({"harmonic_headcount": 12, "harmonic_headcount_180d": 10}, True),  # 10 -> 12, at the floor of 10
        ({"harmonic_headcount": 9, "harmonic_headcount_180d": 5}, False),  # +80 % but only 9 people
        ({"harmonic_headcount": 10, "harmonic_headcount_180d": 0}, True),  # from nothing to 10
        ({"harmonic_headcount": 60, "mrr": 0.01}, False),  # not $0 spend
        ({"harmonic_headcount": 60, "user_count": 0}, False),  # nobody uses PostHog
        ({"harmonic_headcount": 60, "harmonic_headcount_180d": 80}, False),  # shrinking
    ],
)
def test_hiring_increase_thresholds(kw: dict[str, Any], fired: bool) -> None:
    decision = fires(hiring_increase, **kw)
    assert decision.fired is fired, decision.reason
    assert decision.team == "TAE"


def test_hiring_increase_reason_names_inputs_and_thresholds() -> None:
    decision = fires(hiring_increase, harmonic_headcount=50)
    assert decision.reason == "spend: mrr 0 ≤ 0; using PostHog: users 3 ≥ 1; headcount 40 → 50 (+25 %) ≥ 20 %"
    assert decision.traits == {"routing_reason": f"new_business.hiring_increase: {decision.reason}"}


@pytest.mark.parametrize(
    ("kw", "unknown"),
    [({"mrr": None}, ("mrr",)), ({"user_count": None}, ("user_count",)),
     ({"harmonic_headcount_180d": None}, ("harmonic_headcount",))],
)  # fmt: skip
def test_zero_spend_unknown_inputs_are_named(kw: dict[str, Any], unknown: tuple[str, ...]) -> None:
    decision = fires(hiring_increase, **{"harmonic_headcount": 60, **kw})
    assert not decision.fired
    assert decision.unknown == unknown


def test_zero_spend_thresholds_are_settings() -> None:
    loose = Policy(zero_spend=ZeroSpendPolicy(mrr_max=50, hiring_growth_pct=10, min_users=5))
    assert fires(hiring_increase, loose, harmonic_headcount=44, mrr=50, user_count=5).fired
    assert not fires(hiring_increase, loose, harmonic_headcount=44, mrr=50, user_count=4).fired
    assert not fires(hiring_increase, POLICY, harmonic_headcount=44, mrr=50, user_count=5).fired


@pytest.mark.parametrize(
    ("kw", "fired"),
    [
        ({"harmonic_web_traffic": 7500, "harmonic_web_traffic_180d": 5000}, True),  # +50 %
        ({"harmonic_web_traffic": 7499, "harmonic_web_traffic_180d": 5000}, False),
        ({"harmonic_web_traffic": 5000, "harmonic_web_traffic_180d": 1000}, True),  # at the floor
        ({"harmonic_web_traffic": 4999, "harmonic_web_traffic_180d": 1000}, False),  # under the floor
        ({"harmonic_social_followers": 650, "harmonic_social_followers_180d": 500}, True),  # +30 %
        ({"harmonic_social_followers": 649, "harmonic_social_followers_180d": 500}, False),
        ({"harmonic_social_followers": 499, "harmonic_social_followers_180d": 100}, False),  # under the floor
        ({"harmonic_web_traffic": 7000, "harmonic_web_traffic_180d": 7000,
          "harmonic_social_followers": 900, "harmonic_social_followers_180d": 600}, True),  # social alone
        ({"harmonic_web_traffic": 9000, "harmonic_web_traffic_180d": 5000, "mrr": 20.0}, False),  # paying
    ],
)  # fmt: skip
def test_web_social_increase_thresholds(kw: dict[str, Any], fired: bool) -> None:
    decision = fires(web_social_increase, **kw)
    assert decision.fired is fired, decision.reason


def test_web_social_increase_unknown_when_neither_is_known() -> None:
    decision = fires(web_social_increase)
    assert not decision.fired
    assert decision.unknown == ("harmonic_web_traffic",)
    assert "web traffic unknown; social followers unknown" in decision.reason


def test_web_social_increase_one_known_failing_and_one_unknown_names_the_unknown() -> None:
    decision = fires(web_social_increase, harmonic_web_traffic=6000, harmonic_web_traffic_180d=6000)
    assert not decision.fired
    assert decision.unknown == ("harmonic_social_followers",)


@pytest.mark.parametrize(
    ("funded", "fired"),
    [(0, True), (90, True), (91, False), (-1, False), (400, False)],
)
def test_fundraise_window(funded: int, fired: bool) -> None:
    decision = fires(fundraise, harmonic_last_funding_date=days_ago(funded))
    assert decision.fired is fired, decision.reason


def test_fundraise_window_is_a_setting() -> None:
    policy = Policy(zero_spend=ZeroSpendPolicy(fundraise_days=180))
    assert fires(fundraise, policy, harmonic_last_funding_date=days_ago(150)).fired


@pytest.mark.parametrize(("flag", "fired"), [(True, True), (False, False), (None, False)])
def test_cool_company(flag: bool | None, fired: bool) -> None:
    decision = fires(cool_company, ocean_cool_company=flag, mrr=300.0)
    assert decision.fired is fired
    assert decision.unknown == (("ocean_cool_company",) if flag is None else ())


# -- BDR: low usage ------------------------------------------------------------------------------

LOW: dict[str, Any] = {
    "employee_count": 120,
    "business_email": True,
    "created_at": NOW - timedelta(days=200),
    "user_count": 1,
    "mrr": 0.0,
}


@pytest.mark.parametrize(
    ("kw", "fired"),
    [
        ({}, True),
        ({"employee_count": 51}, True),
        ({"employee_count": 50}, False),
        ({"created_at": NOW - timedelta(days=90)}, True),
        ({"created_at": NOW - timedelta(days=89)}, False),
        ({"user_count": 2}, True),
        ({"user_count": 3}, False),
        ({"mrr": 99.99}, True),
        ({"mrr": 100.0}, False),
        ({"business_email": False}, False),
    ],
)
def test_low_usage_thresholds(kw: dict[str, Any], fired: bool) -> None:
    decision = fires(low_usage, **{**LOW, **kw})
    assert decision.fired is fired, decision.reason
    assert decision.team == "BDR"


def test_low_usage_thresholds_are_settings() -> None:
    policy = Policy(low_usage=LowUsagePolicy(employees_above=500, max_users=5))
    assert not fires(low_usage, policy, **LOW).fired
    assert fires(low_usage, policy, **{**LOW, "employee_count": 600, "user_count": 5}).fired


def test_low_usage_reason() -> None:
    decision = fires(low_usage, **LOW)
    assert (
        decision.reason == "employees 120 > 50; business email; signed up 200 days ago ≥ 90; users 1 ≤ 2; mrr 0 < 100"
    )


# -- routing: team, order and LeadSource ---------------------------------------------------------


def test_zero_spend_triggers_go_to_a_tae_before_the_bdr() -> None:
    acc = account(**{**LOW, "harmonic_headcount": 130, "harmonic_headcount_180d": 100, "user_count": 2})
    winner, _ = route_account(acc, EMPTY, POLICY, NOW)
    assert winner is not None
    assert winner.rule == "new_business.hiring_increase"
    assert winner.also_matched == ("bdr.low_usage",)


@pytest.mark.parametrize(
    ("rule", "team", "source"),
    [("new_business.hiring_increase", "TAE", "New business signal"),
     ("new_business.startup_credits", "TAE", "New business signal"),
     ("new_business.big_fish", "TAE", "New business signal"),
     ("bdr.low_usage", "BDR", "BDR"), ("bdr.closed_lost_unresponsive", "BDR", "BDR"),
     ("product_led.mrr_band", "TAM", "Product-led"), ("product_led.am_referral", "TAM", "AM referral"),
     ("new_business.ae_referral", "TAE", "AE referral"), ("custom.x", "TAE", "New business signal"),
     ("custom.y", "TAM", "Product-led"), ("custom.z", "BDR", "BDR")],
)  # fmt: skip
def test_lead_source_follows_the_family_of_the_trigger(rule: str, team: str, source: str) -> None:
    assert lead_source_for(rule, team, POLICY.routing) == source


def test_new_business_signal_lead_carries_its_source_and_is_a_new_business_stage() -> None:
    """Issue #15: a startup that used >= 50 % of its credits with a last invoice > $5k is a new-business
    lead for a TAE (the flowchart), not a product-led expansion lead."""
    from core.model import Invoice

    acc = Account(
        id="acc_9",
        name="Rocket",
        updated_at=NOW,
        mrr=6200.0,
        plan="startup",
        startup_credits_total=100_000.0,
        startup_credits_used=62_000.0,
        invoices=(Invoice("2026-09", 4800.0), Invoice("2026-10", 6200.0)),
    )
    decisions = {d.rule: d for d in evaluate_account(acc, EMPTY, POLICY, NOW)}
    winner = decisions["new_business.startup_credits"]
    assert winner.fired and winner.team == "TAE"
    assert lead_fields(winner.lead)["LeadSource"] == "New business signal"
    assert decisions["lifecycle.stage"].traits == {"lifecycle_stage": "New business lead"}
