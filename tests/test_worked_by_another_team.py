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


@pytest.mark.parametrize(
    ("rule", "status", "source"),
    [
        ("new_business.ae_referral", "Open - Not Contacted", "AE referral"),  # nobody works it yet
        ("product_led.mrr_band", "Working - Contacted", "Product-led"),  # its own family: the lead it routed
    ],
)
def test_an_untouched_lead_or_one_of_the_same_family_holds_nothing_back(rule: str, status: str, source: str) -> None:
    for full in (True, False):
        assert _verdicts(_band(), _ours(rule, status, source), full)["product_led.mrr_band"].fired


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
