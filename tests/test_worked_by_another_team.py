"""A lead crm-sync created for one team that a person of that team is working holds back the
triggers of the other teams (plg-lead-qualification.md: "Pass or disqualify when ... Already being
worked by someone else"; "Product-led leads can overlap with onboarding referrals, TAE pipeline
... coordinate"). Found by a review (2026-12-07): a TAE working an AE referral's lead, the account
grew into the product-led band, and crm-sync marked it a TAM's product-led lead (segments
`Product-led lead` and `Nurture`, a qualification trait) while the TAE's lead stayed open. crm-sync's
own lead of the same family is the lead an earlier cycle routed, and still holds nothing back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from test_support_requests import NOW, _band

from core.model import Account, Lead
from rules import Policy, evaluate_account
from rules.context import AccountContext


def _ours(rule: str, status: str, source: str) -> Lead:
    """A lead crm-sync created for `rule`, in `status`."""
    return Lead(
        id="00Q2",
        system_modstamp=NOW - timedelta(days=2),
        created_date=NOW - timedelta(days=10),
        status=status,
        sync_key="crm-sync-acc_1-1",
        routing_rule=rule,
        lead_source=source,
        vitally_account_id="acc_1",
        owner_id="005TAE",
    )


def _verdicts(account: Account, lead: Lead, full: bool) -> dict[str, Any]:
    return {d.rule: d for d in evaluate_account(account, AccountContext(leads=(lead,)), Policy(), NOW, full=full)}


@pytest.mark.parametrize("full", [True, False], ids=["explain", "cycle"])
@pytest.mark.parametrize("status", ["Working - Contacted", "In progress", "Nurturing"])
def test_a_tae_working_crm_syncs_referral_lead_holds_the_product_led_triggers_back(full: bool, status: str) -> None:
    verdicts = _verdicts(_band(), _ours("new_business.ae_referral", status, "AE referral"), full)
    band = verdicts["product_led.mrr_band"]
    assert not band.fired
    assert band.guarded_by == f"crm-sync's new-business lead 00Q2 ({status}) being worked in Salesforce"
    assert not any(d.fired and "Product-led lead" in d.segments for d in verdicts.values())
    assert "qualification.recommendation" not in verdicts or not verdicts["qualification.recommendation"].fired


@pytest.mark.parametrize("full", [True, False], ids=["explain", "cycle"])
def test_the_referral_itself_still_holds_its_own_lead(full: bool) -> None:
    """The AE referral segment and its lead being worked: the referral's trigger is the winner, as
    before (its own family's lead), and the product-led band is held back."""
    account = _band(segments=frozenset({"AE referral"}))
    verdicts = _verdicts(account, _ours("new_business.ae_referral", "Working - Contacted", "AE referral"), full)
    assert verdicts["new_business.ae_referral"].fired
    assert not verdicts["product_led.mrr_band"].fired


def test_a_lead_of_the_same_family_holds_nothing_back() -> None:
    for full in (True, False):  # its own family: the lead it routed
        assert _verdicts(_band(), _ours("product_led.mrr_band", "Working - Contacted", "Product-led"), full)[
            "product_led.mrr_band"
        ].fired


@pytest.mark.parametrize("full", [True, False], ids=["explain", "cycle"])
def test_an_untouched_lead_of_another_family_holds_the_other_triggers_back(full: bool) -> None:
    """Nobody works crm-sync's AE referral lead yet, but it is open: no second lead goes out beside it
    (`sync.plan`), and its trigger keeps the account's reason. Before, the product-led band won
    meanwhile and rewrote the account's segments for a lead it could not create (found by a review
    once a person's referral came first in `[rules] order`: the same from the other side)."""
    verdicts = _verdicts(_band(), _ours("new_business.ae_referral", "Open - Not Contacted", "AE referral"), full)
    band = verdicts["product_led.mrr_band"]
    assert not band.fired
    assert band.guarded_by == "crm-sync's new-business lead 00Q2 (Open - Not Contacted) is open in Salesforce"


@pytest.mark.parametrize("full", [True, False], ids=["explain", "cycle"])
def test_a_config_defined_tam_trigger_is_held_back_too(full: bool) -> None:
    """The guards of every routing rule and custom trigger (docs/rules.md): a custom trigger's family
    is its team's (a TAM's: product-led). A review found custom triggers left out."""
    from rules.expressions import CustomTrigger, compile_trigger

    policy = Policy()
    custom = [
        compile_trigger(
            CustomTrigger(id="custom.big_mrr", team="TAM", when="mrr > 500", reason="mrr {mrr}"), policy=policy
        )
    ]
    lead = _ours("new_business.ae_referral", "Working - Contacted", "AE referral")
    verdicts = {
        d.rule: d for d in evaluate_account(_band(), AccountContext(leads=(lead,)), policy, NOW, custom, full=full)
    }
    assert not verdicts["custom.big_mrr"].fired
    assert verdicts["custom.big_mrr"].guarded_by == (
        "crm-sync's new-business lead 00Q2 (Working - Contacted) being worked in Salesforce"
    )
    # a TAE trigger of the config is of the lead's own family: the lead it routed holds nothing back
    tae = [
        compile_trigger(CustomTrigger(id="custom.tae", team="TAE", when="mrr > 500", reason="mrr {mrr}"), policy=policy)
    ]
    mine = {d.rule: d for d in evaluate_account(_band(), AccountContext(leads=(lead,)), policy, NOW, tae, full=full)}
    assert mine["custom.tae"].guarded_by is None


@pytest.mark.parametrize("full", [True, False], ids=["explain", "cycle"])
def test_a_referral_added_beside_crm_sync_s_open_lead_of_another_team_waits_for_it(full: bool) -> None:
    """The review's case: the account routed by the product-led band, its lead open and untouched,
    and a person adds `AE referral`. The referral comes first in `[rules] order`; winning, it rewrote
    the account's routing reason and took the `Product-led lead` and `Nurture` segments away, while
    no second lead could go out. It waits for the TAM's lead now, and the band keeps its segment."""
    account = _band(segments=frozenset({"AE referral"}))
    verdicts = _verdicts(account, _ours("product_led.mrr_band", "Open - Not Contacted", "Product-led"), full)
    referral = verdicts["new_business.ae_referral"]
    assert not referral.fired
    assert referral.guarded_by == "crm-sync's product-led lead 00Q2 (Open - Not Contacted) is open in Salesforce"
    assert verdicts["product_led.mrr_band"].fired and "Product-led lead" in verdicts["product_led.mrr_band"].segments
