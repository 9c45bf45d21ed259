"""Routing triggers, guards and arbitration (lead-routing-and-scoring.md, rules.md §1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.model import Account, Invoice, Lead, Opportunity
from rules import Decision, Policy, evaluate_account
from rules.base import LeadIntent
from rules.bdr import closed_lost_unresponsive
from rules.context import EMPTY, AccountContext, LeadContext
from rules.guards import routing_guard
from rules.new_business import ae_referral, big_fish, onboarding_referral, startup_credits
from rules.policy import ROUTING_RULE_IDS, RoutingPolicy
from rules.product_led import am_referral, forecast_spike, scale_high_icp, startup_rolloff
from rules.routing import ACCOUNT_TRIGGERS, LEAD_TRIGGERS, route_account, route_lead
from sync.decider import routing_winner

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)
TODAY = NOW.date()
POLICY = Policy()
ROUTING = RoutingPolicy()
SEGMENT = "Product-led lead"


def account(**kw: Any) -> Account:
    base: dict[str, Any] = {"id": "acc_1", "name": "Acme", "updated_at": NOW}
    base.update(kw)
    return Account(**base)


def invoices(*amounts: float) -> tuple[Invoice, ...]:
    return tuple(Invoice(f"2026-{m:02d}", a) for m, a in enumerate(amounts, start=1))


def days_ago(n: int) -> date:
    return TODAY - timedelta(days=n)


def opp(
    stage: str | None = "Closed Lost",
    reason: str | None = "Unresponsive",
    closed: date | None = None,
    oid: str = "006A",
) -> Opportunity:
    return Opportunity(oid, "001A", stage, closed, reason, "005X")


def lead(**kw: Any) -> Lead:
    base: dict[str, Any] = {"id": "00QA", "system_modstamp": NOW, "lead_source": "Demo request", "status": "Open"}
    base.update(kw)
    return Lead(**base)


AccountTrigger = Callable[[Account, AccountContext, Policy, datetime], Decision]


def run(trigger: AccountTrigger, acc: Account, ctx: AccountContext = EMPTY) -> Decision:
    return trigger(acc, ctx, POLICY, NOW)


# An account in the product-led MRR band (fires product_led.mrr_band).
BAND: dict[str, Any] = {
    "mrr": 1200,
    "employee_count": 64,
    "user_count": 9,
    "country": "DE",
    "first_paid_at": date(2026, 6, 1),
}


# -- product_led ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "fired"),
    [
        ({"icp_score": 10, "plan": "scale"}, True),
        ({"icp_score": 9, "plan": "scale"}, False),
        ({"icp_score": 25, "plan": "Scale"}, True),
        ({"icp_score": 25, "plan": "pay_as_you_go"}, False),
        ({"icp_score": -5, "plan": "scale"}, False),
    ],
)
def test_scale_high_icp_thresholds(kw: dict[str, Any], fired: bool) -> None:
    decision = run(scale_high_icp, account(**kw))
    assert decision.fired is fired, decision.reason
    assert decision.team == "TAM"


def test_scale_high_icp_reason_names_inputs_and_threshold() -> None:
    decision = run(scale_high_icp, account(icp_score=14, plan="scale"))
    assert decision.reason == "icp score 14 ≥ 10; plan scale"
    assert decision.traits == {"routing_reason": "product_led.scale_high_icp: icp score 14 ≥ 10; plan scale"}
    assert decision.segments == {SEGMENT}


@pytest.mark.parametrize(
    ("kw", "fired"),
    [
        ({"startup_plan_ends_at": TODAY + timedelta(days=60)}, True),
        # "In the next two months": calendar months, to the same day two months ahead (2027-01-22).
        ({"startup_plan_ends_at": date(2027, 1, 22)}, True),
        ({"startup_plan_ends_at": date(2027, 1, 23)}, False),
        ({"startup_plan_ends_at": TODAY + timedelta(days=59)}, True),
        ({"startup_plan_ends_at": TODAY}, True),
        ({"startup_plan_ends_at": TODAY - timedelta(days=1)}, False),  # already rolled off
        ({"invoices": invoices(1500)}, False),
        ({"invoices": invoices(1500.01)}, True),
        ({"invoices": invoices(2400, 1400)}, False),  # the LAST invoice counts
        ({"invoices": invoices(900, 1600)}, True),
        ({"plan": "scale"}, False),
    ],
)
def test_startup_rolloff_thresholds(kw: dict[str, Any], fired: bool) -> None:
    base: dict[str, Any] = {
        "plan": "startup",
        "startup_plan_ends_at": TODAY + timedelta(days=30),
        "invoices": invoices(1200, 1600),
    }
    decision = run(startup_rolloff, account(**{**base, **kw}))
    assert decision.fired is fired, decision.reason


def test_startup_rolloff_reason() -> None:
    decision = run(
        startup_rolloff,
        account(plan="startup", startup_plan_ends_at=date(2027, 1, 10), invoices=invoices(1600)),
    )
    assert decision.reason == (
        "plan startup; startup plan ends 2027-01-10 in 49 days, within 2 months (2027-01-22); "
        "last invoice 1,600 > 1,500"
    )
    later = run(
        startup_rolloff,
        account(plan="startup", startup_plan_ends_at=date(2027, 1, 23), invoices=invoices(1600)),
    )
    assert later.reason == "startup plan ends 2027-01-23 in 62 days, after 2 months (2027-01-22)"


@pytest.mark.parametrize(
    ("today", "ends", "fired"),
    [
        (date(2026, 12, 31), date(2027, 2, 28), True),  # no 31 February: the month's last day
        (date(2026, 12, 31), date(2027, 3, 1), False),
        (date(2027, 1, 31), date(2027, 3, 31), True),  # 59 days, but two calendar months
        (date(2027, 1, 31), date(2027, 4, 1), False),
    ],
)
def test_startup_rolloff_counts_calendar_months_to_the_month_end(today: date, ends: date, fired: bool) -> None:
    at = datetime.combine(today, NOW.timetz())
    decision = startup_rolloff(
        account(plan="startup", startup_plan_ends_at=ends, invoices=invoices(1600)), EMPTY, POLICY, at
    )
    assert decision.fired is fired, decision.reason


@pytest.mark.parametrize(
    ("mrr", "forecast", "fired"),
    [
        (1000, 2000, False),
        (1000.01, 2000, True),
        (1200, 1800, False),  # exactly 1.5 × is not more than 50 %
        (1200, 1800.01, True),
        (1200, 1500, False),
        (5000, 7600, True),
    ],
)
def test_forecast_spike_thresholds(mrr: float, forecast: float, fired: bool) -> None:
    decision = run(forecast_spike, account(mrr=mrr, forecasted_mrr=forecast))
    assert decision.fired is fired, decision.reason


def test_forecast_spike_reason() -> None:
    decision = run(forecast_spike, account(mrr=1200, forecasted_mrr=2100))
    assert decision.reason == "mrr 1,200 > 1,000; forecasted mrr 2,100 > 1.5 × mrr = 1,800"


# -- new_business (account triggers) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "employees", "fired"),
    [
        (NOW - timedelta(days=14), 1000, True),
        (NOW - timedelta(days=15), 1000, False),
        (NOW - timedelta(days=14), 999, False),
        (NOW, 5000, True),
        (NOW - timedelta(days=3), 1001, True),
        (NOW - timedelta(days=400), 20000, False),
    ],
)
def test_big_fish_thresholds(created: datetime, employees: int, fired: bool) -> None:
    decision = run(big_fish, account(created_at=created, employee_count=employees))
    assert decision.fired is fired, decision.reason
    assert decision.team == "TAE"
    assert decision.segments == frozenset()


def test_big_fish_reason() -> None:
    decision = run(big_fish, account(created_at=NOW - timedelta(days=3), employee_count=1200))
    assert decision.reason == "created 3 days ago ≤ 14; employees 1,200 ≥ 1,000"


@pytest.mark.parametrize(
    ("used", "total", "last", "fired"),
    [
        (500, 1000, 5000.01, True),
        (499, 1000, 5000.01, False),  # 49.9 %
        (500, 1000, 5000, False),
        (1000, 1000, 9000, True),
        (100, 0, 9000, False),  # no credits at all
    ],
)
def test_startup_credits_thresholds(used: float, total: float, last: float, fired: bool) -> None:
    acc = account(startup_credits_used=used, startup_credits_total=total, invoices=invoices(last))
    decision = run(startup_credits, acc)
    assert decision.fired is fired, decision.reason


def test_startup_credits_reason() -> None:
    acc = account(startup_credits_used=499, startup_credits_total=1000, invoices=invoices(6000))
    assert run(startup_credits, acc).reason == "startup credits used 499 of 1,000 (49.9 %) < 50 %"


@pytest.mark.parametrize(
    ("trigger", "segment"),
    [
        (am_referral, "AM referral"),
        (ae_referral, "AE referral"),
        (onboarding_referral, "Onboarding referral"),
    ],
)
def test_referrals_fire_on_their_segment_only(trigger: AccountTrigger, segment: str) -> None:
    assert run(trigger, account(segments=frozenset({segment}))).fired
    decision = run(trigger, account(segments=frozenset({"Some other segment"})))
    assert not decision.fired
    assert decision.reason == f"not in segment {segment}"


# -- bdr ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opportunities", "fired"),
    [
        # "4-6 months old": calendar months, closed from 2026-05-22 to 2026-07-22, both included.
        ((opp(closed=date(2026, 7, 23)),), False),  # 122 days: not yet 4 months
        ((opp(closed=date(2026, 7, 25)),), False),  # 120 days: 3 months and 28 days
        ((opp(closed=date(2026, 7, 22)),), True),  # exactly 4 months
        ((opp(closed=date(2026, 5, 22)),), True),  # exactly 6 months (184 days)
        ((opp(closed=date(2026, 5, 21)),), False),
        ((opp(closed=days_ago(150), reason="Price"),), False),
        ((opp(closed=days_ago(150), reason="unresponsive"),), True),
        ((opp(closed=days_ago(150), stage="Closed Won"),), False),
        ((opp(closed=days_ago(30)), opp(closed=days_ago(150), oid="006B")), True),
        ((), False),
    ],
)
def test_closed_lost_unresponsive_window(opportunities: tuple[Opportunity, ...], fired: bool) -> None:
    decision = run(closed_lost_unresponsive, account(), AccountContext(opportunities=opportunities))
    assert decision.fired is fired, decision.reason
    assert decision.team == "BDR"


def test_closed_lost_unresponsive_reason_names_the_opportunity() -> None:
    ctx = AccountContext(opportunities=(opp(closed=days_ago(150), oid="006Z"),))
    decision = run(closed_lost_unresponsive, account(), ctx)
    assert decision.reason == (
        "opportunity 006Z Closed Lost (Unresponsive) closed 2026-06-25, 4-6 months old (2026-05-22 to 2026-07-22)"
    )
    early = run(closed_lost_unresponsive, account(), AccountContext(opportunities=(opp(closed=days_ago(30)),)))
    assert early.reason == (
        "opportunity 006A Closed Lost (Unresponsive) closed 2026-10-23, not 4-6 months old (2026-05-22 to 2026-07-22)"
    )


def test_closed_lost_unresponsive_months_end_on_the_month_s_last_day() -> None:
    at = datetime(2026, 8, 31, 9, tzinfo=UTC)  # six months back: 2026-02-28; four: 2026-04-30
    for closed, fired in ((date(2026, 2, 28), True), (date(2026, 2, 27), False), (date(2026, 5, 1), False)):
        ctx = AccountContext(opportunities=(opp(closed=closed),))
        assert closed_lost_unresponsive(account(), ctx, POLICY, at).fired is fired, closed


# -- unknown inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "kw", "ctx", "unknown", "text"),
    [
        (scale_high_icp, {"plan": "scale"}, EMPTY, ("icp_score",), "icp score unknown"),
        (scale_high_icp, {"icp_score": 20}, EMPTY, ("plan",), "plan unknown"),
        (
            startup_rolloff,
            {"plan": "startup", "invoices": invoices(2000)},
            EMPTY,
            ("startup_plan_ends_at",),
            "startup plan end unknown",
        ),
        (
            startup_rolloff,
            {"plan": "startup", "startup_plan_ends_at": TODAY, "invoices": ()},
            EMPTY,
            ("last_invoice",),
            "last invoice unknown",
        ),
        (forecast_spike, {"mrr": 2000}, EMPTY, ("forecasted_mrr",), "forecasted mrr unknown"),
        (forecast_spike, {"forecasted_mrr": 2000}, EMPTY, ("mrr",), "mrr unknown"),
        (big_fish, {"employee_count": 5000}, EMPTY, ("created_at",), "created at unknown"),
        (big_fish, {"created_at": NOW}, EMPTY, ("employee_count",), "employees unknown"),
        (
            startup_credits,
            {"startup_credits_used": 900, "invoices": invoices(9000)},
            EMPTY,
            ("startup_credits_total",),
            "startup credits total unknown",
        ),
        (
            startup_credits,
            {"startup_credits_used": 900, "startup_credits_total": 1000},
            EMPTY,
            ("last_invoice",),
            "last invoice unknown",
        ),
        (
            closed_lost_unresponsive,
            {},
            AccountContext(opportunities=(opp(closed=None),)),
            ("close_date",),
            "close date unknown on opportunity 006A",
        ),
        (
            closed_lost_unresponsive,
            {},
            AccountContext(opportunities=(opp(reason=None, closed=days_ago(150)),)),
            ("loss_reason",),
            "loss reason unknown on opportunity 006A",
        ),
    ],
)
def test_triggers_name_unknown_inputs(
    trigger: AccountTrigger, kw: dict[str, Any], ctx: AccountContext, unknown: tuple[str, ...], text: str
) -> None:
    decision = run(trigger, account(**kw), ctx)
    assert not decision.fired
    assert decision.unknown == unknown
    assert text in decision.reason


# -- guards ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "ctx", "guard"),
    [
        ({"key_roles": {"TAM": "u1"}}, EMPTY, "already owned (TAM key role)"),
        ({"key_roles": {"CSM": "u1"}}, EMPTY, "already owned (CSM key role)"),
        ({"key_roles": {"Account Executive": "u1"}}, EMPTY, "already owned (Account Executive key role)"),
        ({"key_roles": {"Onboarding Specialist": "u1"}}, EMPTY, None),
        ({"segments": frozenset({"AM Managed"})}, EMPTY, "already owned (segment AM Managed)"),
        ({}, AccountContext(opportunities=(opp("Negotiation", None, None, "006N"),)),
         "open opportunity 006N (Negotiation) in Salesforce"),
        ({}, AccountContext(opportunities=(opp("Closed Lost", "Price", days_ago(10)),)), None),
        # A deal closed won: its Account Executive nurtures the account for 12 months
        # (accounts-overview.md: "Close then nurture for 12 months"), whoever the key roles name.
        ({}, AccountContext(opportunities=(opp("Closed Won", None, days_ago(10)),)),
         f"opportunity 006A closed won {days_ago(10)} (0 months ago): the Account Executive nurtures it for 12 months"),
        ({}, AccountContext(opportunities=(opp("closed won", None, days_ago(330)),)),
         f"opportunity 006A closed won {days_ago(330)} (10 months ago): the Account Executive nurtures it "
         "for 12 months"),
        ({}, AccountContext(opportunities=(opp("Closed Won", None, days_ago(370)),)), None),
        ({}, AccountContext(leads=(lead(id="00QW", status="Working"),)), "open lead 00QW (Working) in Salesforce"),
        # A lead a person disqualified in Salesforce starts the cool-off (dated by its last change) ...
        ({}, AccountContext(leads=(lead(status="Disqualified", system_modstamp=NOW - timedelta(days=91)),)), None),
        ({}, AccountContext(leads=(lead(status="Disqualified", system_modstamp=NOW - timedelta(days=90)),)), None),
        ({}, AccountContext(leads=(lead(status="Disqualified", system_modstamp=NOW - timedelta(days=89)),)),
         "lead 00QA disqualified in Salesforce 89 days ago (cool-off 90 days)"),
        # ... and a conversion without an opportunity ends the episode: held for a year.
        ({}, AccountContext(leads=(lead(is_converted=True, converted_date=days_ago(10)),)),
         "lead 00QA converted 10 days ago without an opportunity (hold 365 days)"),
        ({}, AccountContext(leads=(lead(is_converted=True, converted_date=days_ago(365)),)), None),
        # ... into an opportunity, which decides: lost long ago, nothing holds it.
        ({}, AccountContext(leads=(lead(is_converted=True, converted_opportunity_id="006C"),),
                            opportunities=(opp("Closed Lost", "Price", days_ago(200), "006C"),)), None),
        # the daemon's own lead: routed by the band, it holds nothing back (the routing guards of no
        # family, and its own trigger's)
        ({}, AccountContext(leads=(lead(sync_key="crm-sync:acc_1", routing_rule="product_led.mrr_band"),)), None),
        ({"segments": frozenset({"Active Trial"})}, EMPTY, "in active sales segment Active Trial"),
        ({"segments": frozenset({"Annual Plan"})}, EMPTY, "in active sales segment Annual Plan"),
        ({"segments": frozenset({"Leads"})}, EMPTY, "in active sales segment Leads"),
        ({"slack_channel": "#posthog-acme"}, EMPTY, "existing engagement (Slack channel #posthog-acme)"),
        ({"slack_channel": "  "}, EMPTY, None),
        ({"lead_disqualified_at": days_ago(89)}, EMPTY, "lead disqualified 89 days ago (cool-off 90 days)"),
        ({"lead_disqualified_at": days_ago(90)}, EMPTY, None),
        ({}, EMPTY, None),
    ],
)  # fmt: skip
def test_routing_guard_says_which_guard(kw: dict[str, Any], ctx: AccountContext, guard: str | None) -> None:
    assert routing_guard(account(**kw), ctx, POLICY, NOW) == guard
    winner, decisions = route_account(account(**BAND, **kw), ctx, POLICY, NOW)
    [band] = [d for d in decisions if d.rule == "product_led.mrr_band"]
    assert band.guarded_by == guard
    assert band.fired is (guard is None)
    if guard is not None:
        assert winner is None
        assert band.reason.endswith(f"; but {guard}")


@pytest.mark.parametrize(
    ("segment", "rule"),
    [
        ("AM referral", "product_led.am_referral"),
        ("AE referral", "new_business.ae_referral"),
        ("Onboarding referral", "new_business.onboarding_referral"),
    ],
)
@pytest.mark.parametrize(
    ("kw", "ctx", "fired"),
    [
        ({"lead_disqualified_at": days_ago(10)}, EMPTY, True),  # a person asking again beats the cool-off
        ({"key_roles": {"TAM": "u1"}}, EMPTY, False),
        ({"segments": frozenset({"AM Managed"})}, EMPTY, False),
        ({}, AccountContext(opportunities=(opp("Discovery", None, None),)), False),
        ({}, AccountContext(leads=(lead(status="Working"),)), False),
        ({"slack_channel": "#posthog-acme"}, EMPTY, False),
    ],
)
def test_manual_referrals_skip_only_the_cool_off(
    segment: str, rule: str, kw: dict[str, Any], ctx: AccountContext, fired: bool
) -> None:
    acc = account(**{**kw, "segments": frozenset({segment}) | kw.get("segments", frozenset())})
    winner, _ = route_account(acc, ctx, POLICY, NOW)
    assert (winner is not None and winner.rule == rule) is fired


def test_automatic_triggers_respect_the_cool_off() -> None:
    acc = account(**BAND, forecasted_mrr=2000, lead_disqualified_at=days_ago(10))
    winner, decisions = route_account(acc, EMPTY, POLICY, NOW)
    assert winner is None
    guarded = [d.rule for d in decisions if d.guarded_by]
    assert guarded == ["product_led.mrr_band", "product_led.forecast_spike"]


# -- arbitration ----------------------------------------------------------------------------------


def test_route_account_first_match_wins_and_lists_the_others() -> None:
    acc = account(**BAND, forecasted_mrr=2000)
    winner, decisions = route_account(acc, EMPTY, POLICY, NOW)
    assert winner is not None
    assert winner.rule == "product_led.mrr_band"
    assert winner.also_matched == ("product_led.forecast_spike",)
    assert winner.traits == {"routing_reason": f"product_led.mrr_band: {winner.reason}"}
    assert winner.segments == {SEGMENT}
    assert winner in decisions
    losers = [d for d in decisions if d.fired and d is not winner]
    assert [d.rule for d in losers] == list(winner.also_matched)
    assert all(not d.traits and not d.segments for d in losers)


def test_route_account_returns_every_account_trigger_in_order() -> None:
    _, decisions = route_account(account(), EMPTY, POLICY, NOW)
    assert [d.rule for d in decisions] == [r for r in ROUTING_RULE_IDS if r in ACCOUNT_TRIGGERS]
    assert not any(d.fired for d in decisions)


def test_route_account_follows_the_configured_order() -> None:
    routing = RoutingPolicy(order=("new_business.ae_referral", "product_led.forecast_spike", "product_led.mrr_band"))
    acc = account(**BAND, forecasted_mrr=2000, segments=frozenset({"AE referral"}))
    winner, decisions = route_account(acc, EMPTY, Policy(routing=routing), NOW)
    assert winner is not None
    assert winner.rule == "new_business.ae_referral"
    assert winner.team == "TAE"
    assert winner.segments == frozenset()
    assert winner.also_matched == ("product_led.forecast_spike", "product_led.mrr_band")
    assert [d.rule for d in decisions] == list(routing.order)
    # Product-led decisions still manage their segment, so a TAE win removes it.
    assert all(d.manages == {SEGMENT} for d in decisions if d.rule.startswith("product_led."))


def test_route_account_without_a_match_returns_none() -> None:
    winner, decisions = route_account(account(**{**BAND, "mrr": 400}), EMPTY, POLICY, NOW)
    assert winner is None
    [band] = [d for d in decisions if d.rule == "product_led.mrr_band"]
    assert band.reason.startswith("mrr 400 not in [500, 1,667]")


@pytest.mark.parametrize(
    ("segment", "rule", "team", "source"),
    [
        ("AM referral", "product_led.am_referral", "TAM", "AM referral"),
        ("AE referral", "new_business.ae_referral", "TAE", "AE referral"),
        ("Onboarding referral", "new_business.onboarding_referral", "TAE", "Onboarding referral"),
    ],
)
def test_a_person_s_referral_wins_over_the_signals_it_also_matches(
    segment: str, rule: str, team: str, source: str
) -> None:
    """ "To create a lead, go to the customer's Vitally record and add a Segment for `AM referral`
    (product-led sales) or `AE referral` (new business)"; the onboarding specialist's referral
    appears "tagged as 'Onboarding referral'" (lead-routing-and-scoring.md, sales-handover.md).
    Behind a signal the account also matched, the lead went to the signal's team under its source
    (found by two reviews): the person's segment names the team they ask for."""
    acc = account(**BAND, forecasted_mrr=2000, segments=frozenset({segment}))
    winner = routing_winner(evaluate_account(acc, EMPTY, POLICY, NOW))
    assert winner is not None and winner.rule == rule
    assert winner.team == team and winner.lead is not None and winner.lead.lead_source == source
    assert winner.also_matched == ("product_led.mrr_band", "product_led.forecast_spike")


def test_two_referrals_go_as_the_handbook_lists_them() -> None:
    acc = account(**BAND, segments=frozenset({"AM referral", "AE referral", "Onboarding referral"}))
    winner, _ = route_account(acc, EMPTY, POLICY, NOW)
    assert winner is not None and winner.rule == "product_led.am_referral"
    assert winner.also_matched[:2] == ("new_business.onboarding_referral", "new_business.ae_referral")


def test_routing_policy_defaults_match_rules_md() -> None:
    assert ROUTING.order == ROUTING_RULE_IDS
    assert set(ROUTING_RULE_IDS) == set(ACCOUNT_TRIGGERS) | set(LEAD_TRIGGERS)
    assert len(ROUTING_RULE_IDS) == 20


@pytest.mark.parametrize("rule", sorted(ACCOUNT_TRIGGERS))
def test_account_triggers_report_their_own_id_and_team(rule: str) -> None:
    decision = run(ACCOUNT_TRIGGERS[rule].decide, account())
    assert decision.rule == rule
    assert decision.record == "acc_1"
    assert decision.team == {"product_led": "TAM", "new_business": "TAE", "bdr": "BDR"}[rule.split(".")[0]]
    assert decision.manages == ({SEGMENT} if rule.startswith("product_led.") else frozenset())


# -- lead-source triggers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("Demo request", "new_business.demo_request"),
        ("Sales email", "new_business.sales_email"),
        ("Onboarding referral", "new_business.onboarding_referral"),
        ("Trust center", "new_business.trust_center"),
        ("Campaign", "new_business.campaign"),
        ("BDR", "new_business.bdr_qualified"),
        ("demo  request", "new_business.demo_request"),
        ("Product-led", None),
        ("AM referral", None),
    ],
)
def test_route_lead_by_lead_source(source: str, rule: str | None) -> None:
    winner, decisions = route_lead(lead(lead_source=source), LeadContext(), POLICY, NOW)
    assert (winner.rule if winner else None) == rule
    assert [d.rule for d in decisions] == [r for r in ROUTING_RULE_IDS if r in LEAD_TRIGGERS]
    if winner is not None:
        assert winner.team == "TAE"
        assert winner.record == "00QA"
        assert winner.lead == LeadIntent(routing_rule=rule, routing_reason=f"{rule}: {winner.reason}")


@pytest.mark.parametrize(
    ("kw", "fired", "text"),
    [
        ({"owner_id": None}, True, "unowned"),
        ({"owner_id": "00G5e000001Queue"}, True, "in queue 00G5e000001Queue"),
        ({"owner_id": "0055e000001User"}, False, "already owned by 0055e000001User"),
        ({"is_converted": True}, False, "lead already converted"),
        ({"status": "Disqualified"}, False, "lead status Disqualified is closed"),
        ({"status": "Unqualified"}, False, "lead status Unqualified is closed"),
        ({"status": None}, True, "lead open (status none)"),
    ],
)
def test_lead_source_triggers_fire_only_for_open_unowned_leads(kw: dict[str, Any], fired: bool, text: str) -> None:
    for rule, trigger in LEAD_TRIGGERS.items():
        source = {
            "new_business.demo_request": "Demo request",
            "new_business.sales_email": "Sales email",
            "new_business.onboarding_referral": "Onboarding referral",
            "new_business.trust_center": "Trust center",
            "new_business.campaign": "Campaign",
            "new_business.bdr_qualified": "BDR",
        }[rule]
        decision = trigger.decide(lead(lead_source=source, **kw), LeadContext(), POLICY, NOW)
        assert decision.rule == rule
        assert decision.fired is fired, decision.reason
        assert text in decision.reason


@pytest.mark.parametrize("owner_id", [None, "00G5e000001Queue"])
@pytest.mark.parametrize("fast", [False, True])
def test_lead_source_triggers_leave_crm_syncs_own_leads_alone(owner_id: str | None, fast: bool) -> None:
    """A lead crm-sync created was routed, and its owner drawn, when it was created: when the round
    robin put it in a queue, routing it again by LeadSource would draw a second owner, and crm-sync's
    own BDR lead (LeadSource BDR, the BDR team's) would go to a TAE as "manually qualified by a BDR"
    (lead-routing-and-scoring.md lists the BDR team's leads apart from those BDRs qualified). Only
    its BDR's qualified status hands it to a TAE (tests/test_bdr_handover.py), without a new
    `Routing_Rule__c`."""
    ours = lead(
        lead_source="BDR",
        owner_id=owner_id,
        sync_key="crm-sync-acc-1-1",
        routing_rule="bdr.closed_lost_unresponsive",
    )
    winner, decisions = route_lead(ours, LeadContext(), POLICY, NOW, fast=fast)
    assert winner is None
    if not fast:
        decision = next(d for d in decisions if d.rule == "new_business.bdr_qualified")
        assert not decision.fired
        assert decision.reason == (
            "crm-sync's BDR lead (routed by bdr.closed_lost_unresponsive) not qualified by its BDR (status Open): "
            "it stays with the BDR"
        )
    qualified = replace(ours, status="Qualified")
    winner, _ = route_lead(qualified, LeadContext(), POLICY, NOW, fast=fast)
    assert winner is not None and winner.rule == "new_business.bdr_qualified" and winner.team == "TAE"
    assert winner.lead is not None and winner.lead.routing_rule is None  # the BDR episode keeps its rule
    assert "qualified by its BDR (status Qualified)" in winner.reason
    # The same lead created by a person (no Sync_Key__c) is a BDR-qualified lead waiting for a TAE.
    theirs = lead(lead_source="BDR", owner_id=owner_id, routing_rule="bdr.closed_lost_unresponsive")
    winner, _ = route_lead(theirs, LeadContext(), POLICY, NOW, fast=fast)
    assert winner is not None and winner.rule == "new_business.bdr_qualified"


def test_lead_source_unknown_is_named() -> None:
    winner, decisions = route_lead(lead(lead_source=None), LeadContext(), POLICY, NOW)
    assert winner is None
    assert all(d.unknown == ("lead_source",) and "LeadSource unknown" in d.reason for d in decisions)


def test_lead_source_reason() -> None:
    decision = LEAD_TRIGGERS["new_business.trust_center"].decide(
        lead(lead_source="Trust center"), LeadContext(), POLICY, NOW
    )
    assert decision.reason == "LeadSource Trust center; lead open (status Open); unowned"


# -- invariants -----------------------------------------------------------------------------------

_owner_roles = st.dictionaries(
    st.sampled_from(["TAM", "CSM", "Account Executive", "Onboarding Specialist"]), st.just("u1"), min_size=1
).filter(lambda roles: bool({"TAM", "CSM", "Account Executive"} & set(roles)))
_money = st.none() | st.floats(min_value=0, max_value=100_000, allow_nan=False)
_segments = st.frozensets(
    st.sampled_from(["AM referral", "AE referral", "Onboarding referral", "Nurture", "Product-led lead"])
)
_opportunities = st.lists(
    st.builds(
        Opportunity,
        id=st.just("006A"),
        account_id=st.just("001A"),
        stage_name=st.sampled_from(["Closed Lost", "Closed Won", None]),
        close_date=st.none() | st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 1, 1)),
        loss_reason=st.sampled_from(["Unresponsive", "Price", None]),
        owner_id=st.just("005X"),
    ),
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(
    key_roles=_owner_roles,
    mrr=_money,
    forecast=_money,
    plan=st.sampled_from(["scale", "startup", "free", None]),
    icp=st.none() | st.integers(min_value=-10, max_value=40),
    employees=st.none() | st.integers(min_value=0, max_value=20_000),
    users=st.none() | st.integers(min_value=0, max_value=100),
    segments=_segments,
    age=st.integers(min_value=0, max_value=60),
    ends_in=st.integers(min_value=-5, max_value=90),
    credits_used=_money,
    last_invoice=st.floats(min_value=0, max_value=20_000, allow_nan=False),
    opportunities=_opportunities,
)
def test_route_account_never_fires_for_an_owned_account(
    key_roles: dict[str, str],
    mrr: float | None,
    forecast: float | None,
    plan: str | None,
    icp: int | None,
    employees: int | None,
    users: int | None,
    segments: frozenset[str],
    age: int,
    ends_in: int,
    credits_used: float | None,
    last_invoice: float,
    opportunities: list[Opportunity],
) -> None:
    acc = account(
        key_roles=key_roles,
        mrr=mrr,
        forecasted_mrr=forecast,
        plan=plan,
        icp_score=icp,
        employee_count=employees,
        user_count=users,
        country="US",
        first_paid_at=date(2025, 1, 1),
        segments=segments,
        created_at=NOW - timedelta(days=age),
        startup_plan_ends_at=TODAY + timedelta(days=ends_in),
        startup_credits_used=credits_used,
        startup_credits_total=10_000,
        invoices=invoices(last_invoice),
    )
    winner, decisions = route_account(acc, AccountContext(opportunities=tuple(opportunities)), POLICY, NOW)
    assert winner is None
    assert not any(d.fired for d in decisions)
    assert all(d.guarded_by.startswith("already owned (") for d in decisions if d.guarded_by)


@pytest.mark.parametrize("stage", ["Closed lost", "CLOSED LOST", " Closed Lost ", "closed  lost"])
def test_an_opportunity_closed_lost_in_any_spelling_is_closed_for_the_guard_and_the_bdr_rule(stage: str) -> None:
    """lead-routing-and-scoring.md, BDR team: "Closed lost oops 4-6 months old where reason was
    'unresponsive'". The BDR rule read the stage in any case, the open-opportunity guard
    (`AccountContext.open_opportunities`) exactly: an opportunity in "Closed lost" both triggered the
    rule and held the account back as an open opportunity, so the BDRs never got it. The
    opportunity is this file's `opp` (the Opportunity fields crm-sync reads: StageName, CloseDate,
    Loss_Reason__c), with the StageName as an org's own picklist value or an import may spell it."""
    ctx = AccountContext(opportunities=(opp(stage=stage, closed=days_ago(150)),))
    assert ctx.open_opportunities == ()
    assert routing_guard(account(), ctx, POLICY, NOW) is None
    decision = run(closed_lost_unresponsive, account(), ctx)
    assert decision.fired, decision.reason
