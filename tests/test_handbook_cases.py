"""The handbook, case by case: every situation the generator builds on purpose gets the decision
the handbook asks for, through a real cycle's mirror of a sandbox and the cycle's `Decider`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from support import sandbox_org_config

from rules import Decision
from rules.policy import ROUTING_RULE_IDS
from sandbox import Sandbox, generate_book
from state import StateDB
from sync.accounts import iter_accounts
from sync.app import make_salesforce, make_vitally
from sync.cycle import run_cycle
from sync.decider import Decider
from sync.facts import SalesforceFacts
from sync.wire import lead_fields, vitally_task

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def judged() -> Iterator[dict[str, Any]]:
    """Decisions per record of a 300-account book, and its `_cases`."""

    book = generate_book(300, seed=11, now=NOW)
    with Sandbox(book, now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)  # inbound leads wait with the org's default lead owner
        state = StateDB.memory()
        run_cycle(
            config, state, make_vitally(config), make_salesforce(config), clock=lambda: NOW, now=NOW, dry_run=True
        )
        facts = SalesforceFacts.load(state)
        decider = Decider.of(config, facts, NOW)
        decisions: dict[str, dict[str, Decision]] = {}
        for account in iter_accounts(state, config):
            decisions[account.id] = {d.rule: d for d in decider.account(account)}
        for lead, _ in facts.iter_leads():
            decisions[lead.id] = {d.rule: d for d in decider.lead(lead)}
        yield {"decisions": decisions, "cases": book["_cases"]}


def records(judged: dict[str, Any], kind: str, case: str) -> list[tuple[str, dict[str, Decision]]]:
    found = [
        (record, judged["decisions"][record])
        for record, cases in judged["cases"][kind].items()
        if case in cases and record in judged["decisions"]
    ]
    assert found, f"the book has no {kind} for case {case}"
    return found


ACCOUNT_TRIGGERS = [rule for rule in ROUTING_RULE_IDS if rule.startswith(("product_led.", "bdr.")) or rule in (
    "new_business.big_fish", "new_business.startup_credits", "new_business.ae_referral",
    "new_business.onboarding_referral")]  # fmt: skip
LEAD_SOURCES = ["new_business.demo_request", "new_business.sales_email", "new_business.trust_center",
                "new_business.campaign", "new_business.bdr_qualified"]  # fmt: skip


@pytest.mark.parametrize("rule", ACCOUNT_TRIGGERS)
def test_handbook_account_trigger_fires(judged: dict[str, Any], rule: str) -> None:
    for record, decisions in records(judged, "accounts", rule):
        assert decisions[rule].fired, f"{record}: {decisions[rule].reason}"


@pytest.mark.parametrize("rule", LEAD_SOURCES)
def test_handbook_lead_source_routes_open_unowned_leads(judged: dict[str, Any], rule: str) -> None:
    for record, decisions in records(judged, "leads", rule):
        if set(judged["cases"]["leads"][record]) & {"demo.classify_support", "demo.classify_spam"}:
            continue  # support and spam skip the round robin (test_handbook_demo_classification)
        assert decisions[rule].fired, f"{record}: {decisions[rule].reason}"
        assert lead_fields(decisions[rule].lead)["Routing_Rule__c"] == rule


NEAR_MISSES = [
    "near_miss.product_led.mrr_band.mrr_499", "near_miss.product_led.mrr_band.mrr_1668",
    "near_miss.product_led.mrr_band.employees_50", "near_miss.product_led.mrr_band.users_7",
    "near_miss.product_led.mrr_band.paying_2_months", "near_miss.product_led.mrr_band.non_icp_country",
    "near_miss.product_led.scale_high_icp.icp_9", "near_miss.product_led.scale_high_icp.not_scale",
    "near_miss.product_led.startup_rolloff.ends_in_63_days", "near_miss.product_led.startup_rolloff.last_invoice_1500",
    "near_miss.product_led.forecast_spike.forecast_1_5x", "near_miss.product_led.forecast_spike.mrr_1000",
    "near_miss.new_business.big_fish.created_15_days_ago", "near_miss.new_business.big_fish.employees_999",
    "near_miss.new_business.startup_credits.last_invoice_5000", "near_miss.new_business.startup_credits.used_49pct",
    "near_miss.bdr.closed_lost_unresponsive.closed_100_days", "near_miss.bdr.closed_lost_unresponsive.closed_200_days",
    "near_miss.bdr.closed_lost_unresponsive.other_loss_reason", "near_miss.allocation.new_owner.arr_19999",
    "near_miss.lifecycle.account_review.mrr_1999", "near_miss.lifecycle.csm_downgrade.arr_20000",
    "near_miss.onboarding.lead.first_invoice_99", "near_miss.onboarding.direct_handover.self_serve",
]  # fmt: skip


@pytest.mark.parametrize("case", NEAR_MISSES)
def test_handbook_near_miss_does_not_fire(judged: dict[str, Any], case: str) -> None:
    rule = ".".join(case.split(".")[1:3])
    for record, decisions in records(judged, "accounts", case):
        assert not decisions[rule].fired, f"{record}: {decisions[rule].reason}"


@pytest.mark.parametrize(
    "case",
    ["boundary.product_led.mrr_band.mrr_500", "boundary.product_led.mrr_band.mrr_1667",
     "boundary.product_led.scale_high_icp.icp_10", "boundary.new_business.startup_credits.used_50pct",
     "boundary.allocation.new_owner.arr_20000"],
)  # fmt: skip
def test_handbook_boundary_fires(judged: dict[str, Any], case: str) -> None:
    rule = ".".join(case.split(".")[1:3])
    for record, decisions in records(judged, "accounts", case):
        assert decisions[rule].fired, f"{record}: {decisions[rule].reason}"


@pytest.mark.parametrize(
    "case",
    ["guard.owned_key_role", "guard.am_managed", "guard.open_lead", "guard.open_opportunity",
     "guard.active_sales_segment", "guard.cool_off", "guard.slack_channel"],
)  # fmt: skip
def test_handbook_guard_stops_routing(judged: dict[str, Any], case: str) -> None:
    for record, decisions in records(judged, "accounts", case):
        routing = [decisions[r] for r in ROUTING_RULE_IDS if r in decisions]
        assert not any(d.fired and d.traits for d in routing), record
        assert any(d.guarded_by for d in routing), f"{record}: no routing rule reports the guard"


@pytest.mark.parametrize(
    ("case", "owner"),
    [("allocation.region_us", "US "), ("allocation.region_eu", "EU "), ("allocation.region_singapore", "Singapore "),
     ("allocation.unowned_tam", " TAM"), ("allocation.unowned_csm", " CSM"), ("allocation.tam_to_csm", " CSM"),
     ("allocation.tae_handover", ""), ("allocation.singapore_csm_fallback", "Singapore TAM")],
)  # fmt: skip
def test_handbook_allocation_new_owner(judged: dict[str, Any], case: str, owner: str) -> None:
    for record, decisions in records(judged, "accounts", case):
        decision = decisions["allocation.new_owner"]
        assert decision.fired, f"{record}: {decision.reason}"
        assert owner in str(decision.traits["new_owner"])
        assert decision.review is (case == "allocation.singapore_csm_fallback")


@pytest.mark.parametrize(
    ("case", "rule", "fired"),
    [("lifecycle.account_review", "lifecycle.account_review", True),
     ("lifecycle.csm_downgrade", "lifecycle.csm_downgrade", True),
     ("onboarding.lead", "onboarding.lead", True), ("onboarding.not_business_email", "onboarding.lead", False),
     ("onboarding.direct_handover", "onboarding.direct_handover", True),
     ("onboarding.spike", "onboarding.direct_handover", False),
     ("onboarding.misconfigured", "onboarding.direct_handover", False),
     ("onboarding.circle_back", "onboarding.circle_back", True)],
)  # fmt: skip
def test_handbook_onboarding_and_lifecycle(judged: dict[str, Any], case: str, rule: str, fired: bool) -> None:
    for record, decisions in records(judged, "accounts", case):
        assert decisions[rule].fired is fired, f"{record}: {decisions[rule].reason}"


def test_handbook_circle_back_task_is_keyed_by_account_and_quarter(judged: dict[str, Any]) -> None:
    for record, decisions in records(judged, "accounts", "onboarding.circle_back"):
        task = decisions["onboarding.circle_back"].task
        assert (
            task is not None and vitally_task(task)["externalId"] == f"crm-sync:onboarding.circle_back:{record}:2026-Q4"
        )


@pytest.mark.parametrize(
    ("case", "label"),
    [("demo.classify_sales", "sales"), ("demo.classify_support", "support"), ("demo.classify_spam", "spam")],
)
def test_handbook_demo_classification(judged: dict[str, Any], case: str, label: str) -> None:
    for record, decisions in records(judged, "leads", case):
        decision = decisions["demo.classification"]
        assert decision.inputs["label"] == label, f"{record}: {decision.reason}"
        if label != "sales":
            assert not lead_fields(decisions["new_business.demo_request"].lead), "support and spam skip the round robin"


@pytest.mark.parametrize(
    ("case", "eligible"),
    [("demo.scheduler_eligible", True), ("demo.scheduler_weak_fit", False),
     ("demo.scheduler_recent_disqualification", False)],
)  # fmt: skip
def test_handbook_instant_scheduler(judged: dict[str, Any], case: str, eligible: bool) -> None:
    for record, decisions in records(judged, "leads", case):
        decision = decisions["demo.instant_scheduler"]
        assert decision.fired is eligible, f"{record}: {decision.reason}"


@pytest.mark.parametrize(("case", "score"), [("scoring.max_70", 70), ("scoring.zero", 0)])
def test_handbook_lead_score_extremes(judged: dict[str, Any], case: str, score: int) -> None:
    for record, decisions in records(judged, "leads", case):
        assert decisions["scoring.lead_score"].inputs["score"] == score, record


@pytest.mark.parametrize(
    ("case", "label"),
    [("qualification.disqualify_low_mrr", "disqualify"), ("qualification.disqualify_single_product", "disqualify"),
     ("qualification.disqualify_credits", "disqualify"), ("qualification.nurture_growing", "nurture"),
     ("qualification.nurture_early_implementation", "nurture"), ("qualification.qualify", "qualify")],
)  # fmt: skip
def test_handbook_qualification_recommendation(judged: dict[str, Any], case: str, label: str) -> None:
    for record, decisions in records(judged, "accounts", case):
        decision = decisions["qualification.recommendation"]
        assert decision.inputs.get("recommendation") == label, f"{record}: {decision.reason}"
