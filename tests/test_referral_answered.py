"""A referral a person answered "no" to is not routed again by its segment.

plg-lead-qualification.md: "If the answer is no, simply mark the task as 'disqualified' with your
reasoning." A person's referral (`AM referral`, `AE referral`, `Onboarding referral` segment in
Vitally) skips the cool-off that holds the automated triggers back after a disqualification: a
person asking is new information. But the segment a person added stays on the account (crm-sync
never removes it), so before this, once the TAM or AE disqualified (or converted without an
opportunity) the lead that referral created, the same referral fired again on the next cycle, and
the planner created the account's next lead with a new owner drawn: every "no" was followed by
another lead. crm-sync's closed lead for the team the referral asks (whichever trigger won it: the
referral may only have also matched) now holds it for the cool-off (or the conversion hold, or the
cool-off after its opportunity went Closed Lost); another team's, or a lead crm-sync did not create,
still does not.

Found by a handbook audit (2026-12-05). Salesforce records as the sObject API returns them (the
sandbox); the Vitally account as GET /resources/accounts returns one (tests/support.band_account).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import band_account, example_config_for, person_sets_lead

from core.model import Account, Invoice, Lead, Opportunity
from rules import Decision, Policy, evaluate_account
from rules.context import AccountContext
from sandbox import Sandbox, generate_book
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import load_config
from sync.cycle import run_cycle

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
REFERRALS = [
    ("AM referral", "product_led.am_referral", "AM referral"),
    ("AE referral", "new_business.ae_referral", "AE referral"),
    ("Onboarding referral", "new_business.onboarding_referral", "Onboarding referral"),
]


def _account(segment: str) -> Account:
    # MRR 300: below the product-led band, so only the referral can route the account.
    return Account(
        id="acc_1",
        name="Acme",
        updated_at=NOW,
        mrr=300,
        country="DE",
        segments=frozenset({segment}),
        invoices=(Invoice("2026-10", 300),),
    )


def _our_lead(rule: str, source: str, *, status: str, closed_days_ago: int, **more: Any) -> Lead:
    return Lead(
        id="00QA",
        system_modstamp=NOW - timedelta(days=closed_days_ago),
        created_date=NOW - timedelta(days=closed_days_ago + 7),
        status=status,
        lead_source=source,
        owner_id="005T",
        vitally_account_id="acc_1",
        sync_key="crm-sync-acc_1-1",
        routing_rule=rule,
        **more,
    )


def _converted(rule: str, source: str, days_ago: int, **more: Any) -> Lead:
    """crm-sync's lead for the account, converted `days_ago` days ago."""
    return _our_lead(
        rule,
        source,
        status="Qualified",
        closed_days_ago=days_ago,
        is_converted=True,
        converted_date=(NOW - timedelta(days=days_ago)).date(),
        **more,
    )


def _verdict(account: Account, lead: Lead, rule: str) -> Decision:
    return next(d for d in evaluate_account(account, AccountContext((lead,)), Policy(), NOW) if d.rule == rule)


@pytest.mark.parametrize(("segment", "rule", "source"), REFERRALS)
def test_a_referral_whose_lead_a_person_disqualified_is_held_for_the_cool_off(
    segment: str, rule: str, source: str
) -> None:
    held = _verdict(_account(segment), _our_lead(rule, source, status="Disqualified", closed_days_ago=5), rule)
    assert not held.fired and held.lead is None
    assert (
        held.guarded_by
        == "the team this referral asks answered: lead 00QA disqualified in Salesforce 5 days ago (cool-off 90 days)"
    )
    # After the cool-off the segment, still there, routes the account again (as any trigger would).
    again = _verdict(_account(segment), _our_lead(rule, source, status="Disqualified", closed_days_ago=91), rule)
    assert again.fired and again.lead is not None, again.reason


def test_a_referral_whose_lead_was_converted_without_an_opportunity_is_held() -> None:
    lead = _converted("product_led.am_referral", "AM referral", 2)
    held = _verdict(_account("AM referral"), lead, "product_led.am_referral")
    assert not held.fired
    assert held.guarded_by is not None
    assert held.guarded_by.startswith("the team this referral asks answered: lead 00QA converted")


def test_the_same_teams_no_answers_a_referral_that_only_also_matched() -> None:
    """An account in the product-led band with the `AM referral` segment: product_led.mrr_band
    wins (first in the order) and its lead carries that rule; the referral only also matched. The
    TAM's "no" to that lead answers the referral too (found by a review: the referral, exempt from
    the cool-off, fired on the next cycle)."""
    lead = _our_lead("product_led.mrr_band", "Product-led", status="Disqualified", closed_days_ago=5)
    verdict = _verdict(_account("AM referral"), lead, "product_led.am_referral")
    assert not verdict.fired and verdict.lead is None
    assert verdict.guarded_by is not None and verdict.guarded_by.startswith("the team this referral asks answered")


def test_another_teams_closed_lead_does_not_hold_a_referral_back() -> None:
    """The referral's exemption stays for what it was for: a person asking a team after another
    team's lead for the account was disqualified is new information."""
    lead = _our_lead("new_business.big_fish", "New business signal", status="Disqualified", closed_days_ago=5)
    verdict = _verdict(_account("AM referral"), lead, "product_led.am_referral")
    assert verdict.fired and verdict.lead is not None, verdict.reason


def test_a_referral_whose_lead_became_a_deal_lost_is_answered() -> None:
    """Converted into an opportunity that went Closed Lost: the deal's "no" answers the referral
    for the cool-off, from its close date (found by a review)."""
    lost = Opportunity("006L", "001A", "Closed Lost", NOW.date() - timedelta(days=5), "Price", "005T")
    lead = _converted("new_business.ae_referral", "AE referral", 20, converted_opportunity_id="006L")
    account = _account("AE referral")
    held = next(
        d
        for d in evaluate_account(account, AccountContext((lead,), (lost,)), Policy(), NOW)
        if d.rule == "new_business.ae_referral"
    )
    assert not held.fired
    assert held.guarded_by == (
        f"the team this referral asks answered: lead 00QA converted into opportunity 006L, closed lost "
        f"{NOW.date() - timedelta(days=5)} (5 days ago; cool-off 90 days)"
    )
    won = Opportunity("006L", "001A", "Closed Lost", NOW.date() - timedelta(days=95), "Price", "005T")
    later = evaluate_account(account, AccountContext((lead,), (won,)), Policy(), NOW)
    assert next(d for d in later if d.rule == "new_business.ae_referral").fired


def test_a_person_disqualifying_the_referrals_lead_brings_no_second_lead(tmp_path: Path) -> None:
    """Real cycles against the in-process sandbox: an `AM referral` routes the account, the TAM
    disqualifies the lead through the sObject API, and the next cycles create no second lead and
    draw no second owner, until the 90-day cool-off is over."""
    seed = generate_book(0, now=NOW)  # the sales team of the example pools, no accounts
    account = band_account("acc_ref1", "Referral GmbH", "referral.de")
    account["mrr"] = 300  # below the product-led band: only the referral routes it
    account["segments"] = [{"id": "seg_am", "name": "AM referral"}]
    seed["vitally"]["accounts"] = [account]
    del seed["_cases"]
    with Sandbox(seed, now=NOW) as sandbox:
        config = load_config(example_config_for(sandbox.url, tmp_path / "config.toml"))
        state = StateDB.open(tmp_path / "state.db")

        def cycle() -> None:
            now = sandbox.now()
            report = run_cycle(config, state, make_vitally(config), make_salesforce(config), clock=lambda: now, now=now)
            assert report.counts["failed"] == 0

        def ours() -> list[str]:
            leads = sandbox.state()["salesforce"]["Lead"]
            return sorted(str(lead["Sync_Key__c"]) for lead in leads if lead.get("Sync_Key__c"))

        def advance(seconds: float) -> None:
            sandbox.set_clock(advance_seconds=seconds)

        try:
            cycle()
            [first] = [lead for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c")]
            assert first["Routing_Rule__c"] == "product_led.am_referral"
            advance(3600)
            person_sets_lead(sandbox.url, first["Id"], Status="Disqualified")  # the TAM's "no"
            for _ in range(2):
                advance(86_400)
                cycle()
            assert ours() == ["crm-sync-acc_ref1-1"]
            drawn = "SELECT key FROM assignments WHERE key LIKE 'crm-sync-%' ORDER BY key"
            assert [key for (key,) in state.db.execute(drawn)] == ["crm-sync-acc_ref1-1"]  # one owner drawn
            advance(91 * 86_400)
            cycle()
            assert ours() == ["crm-sync-acc_ref1-1", "crm-sync-acc_ref1-2"]
        finally:
            state.close()


def test_a_lead_crm_sync_did_not_create_does_not_answer_the_referral() -> None:
    """Only crm-sync's own leads (Sync_Key__c) answer: an inbound lead of the same LeadSource,
    disqualified by a person, does not hold the referral back."""
    inbound = Lead(
        id="00QB",
        system_modstamp=NOW - timedelta(days=5),
        created_date=NOW - timedelta(days=9),
        status="Disqualified",
        lead_source="AE referral",
        vitally_account_id="acc_1",
        company="Acme",
    )
    verdict = _verdict(_account("AE referral"), inbound, "new_business.ae_referral")
    assert verdict.fired, verdict.reason
