"""A customer a Technical Account Executive closed is theirs to nurture for 12 months.

accounts-overview.md's flowchart: "TECHNICAL ACCOUNT EXECUTIVE → $20k+ potential? (TAE decides)
→ Yes → Close then nurture for 12 months → … (Simon decides)" TAM or CSM; "No → SELF SERVE" (no
deal is closed on that branch). Before, only an open opportunity or an Account Executive key role
held such an account: with the key role unset in Vitally, the day after a TAE's deal closed won a
product-led signal handed the customer to the TAM round robin, the onboarding specialist got it
as a new payer, and its growth sent it to Account review. A deal Closed Won within
`[rules.allocation] handover_after_close_months` (12) now holds it, as allocation already waited
for it (rules/allocation.py: `_after_sale` with the key role, `_sale_in_salesforce` without it, since
2026-12-06). Found by a handbook audit (2026-12-05).

Opportunities as the REST API's query returns them (parsed: core.model.Opportunity).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from core.model import Account, Invoice, Opportunity
from rules import Decision, Policy, evaluate_account
from rules.context import AccountContext

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _won(days_ago: int, stage: str = "Closed Won") -> AccountContext:
    closed = NOW.date() - timedelta(days=days_ago)
    return AccountContext(opportunities=(Opportunity("006W", "001A", stage, closed, None, "005TAE"),))


def _verdicts(account: Account, ctx: AccountContext) -> dict[str, Decision]:
    return {d.rule: d for d in evaluate_account(account, ctx, Policy(), NOW)}


def _band() -> Account:
    # product_led.mrr_band: MRR in [500, 1,667], 64 employees, 9 users, DE, paying since January.
    return Account(
        id="acc_1",
        name="Acme",
        updated_at=NOW,
        mrr=900,
        employee_count=64,
        user_count=9,
        country="DE",
        first_paid_at=date(2026, 1, 5),
        invoices=(Invoice("2026-09", 900), Invoice("2026-10", 900)),
    )


def test_a_customer_closed_won_last_week_is_not_a_product_led_lead() -> None:
    routed = _verdicts(_band(), AccountContext())["product_led.mrr_band"]
    assert routed.fired and routed.lead is not None
    held = _verdicts(_band(), _won(10))["product_led.mrr_band"]
    assert not held.fired and held.lead is None
    assert held.guarded_by == (
        f"opportunity 006W closed won {NOW.date() - timedelta(days=10)} (0 months ago): "
        "the Account Executive nurtures it for 12 months"
    )


@pytest.mark.parametrize(("days_ago", "held"), [(364, True), (366, False)])
def test_the_nurture_ends_after_twelve_months(days_ago: int, held: bool) -> None:
    verdict = _verdicts(_band(), _won(days_ago))["product_led.mrr_band"]
    assert verdict.fired is not held, verdict.reason


def test_a_deal_closed_lost_holds_nothing() -> None:
    assert _verdicts(_band(), _won(10, stage="Closed Lost"))["product_led.mrr_band"].fired


def test_the_customer_is_not_an_onboarding_lead_nor_in_account_review() -> None:
    """A TAE's new customer pays its first bill: it is "otherwise a lead" (the TAE's), not the
    onboarding specialist's; and its growth is the TAE's to nurture, not organic self-serve growth
    for Account review."""
    new_payer = Account(
        id="acc_2",
        name="Globex",
        updated_at=NOW,
        mrr=2500,
        business_email=True,
        invoices=(Invoice("2026-10", 2500),),
    )
    free = _verdicts(new_payer, AccountContext())
    assert free["onboarding.lead"].fired and free["lifecycle.account_review"].fired
    won = _verdicts(new_payer, _won(30))
    assert not won["onboarding.lead"].fired
    assert "the Account Executive nurtures it" in won["onboarding.lead"].reason
    assert not won["lifecycle.account_review"].fired
    assert "the Account Executive nurtures it" in won["lifecycle.account_review"].reason


def test_the_lifecycle_stage_says_the_account_executive_nurtures_it() -> None:
    """The `lifecycle_stage` trait agrees with the guards (found by a review): a customer whose deal
    closed won 30 days ago is the Technical Account Executive's, not "Account review" by its MRR
    of 2,500, nor "Self serve"."""
    customer = Account(id="acc_3", name="Initech", updated_at=NOW, mrr=2500)
    assert _verdicts(customer, AccountContext())["lifecycle.stage"].traits["lifecycle_stage"] == "Account review"
    nurtured = _verdicts(customer, _won(30))["lifecycle.stage"]
    assert nurtured.traits["lifecycle_stage"] == "Technical account executive"
    assert "the Account Executive nurtures it" in nurtured.reason
    after = _verdicts(customer, _won(400))["lifecycle.stage"]
    assert after.traits["lifecycle_stage"] == "Account review"


def _twenty_k() -> Account:
    """$20k+ ARR (MRR 1,700) on two primary products, no key role in Vitally: `allocation.new_owner`
    would propose a TAM."""
    return Account(
        id="acc_4",
        name="Umbrella",
        updated_at=NOW,
        mrr=1700,
        country="DE",
        users_by_country={"DE": 12},
        paid_products=("product_analytics", "session_replay"),
    )


def test_allocation_waits_for_the_nurture_without_the_account_executive_key_role() -> None:
    """The routing guards and the stage hold a customer closed won within 12 months "with or
    without an Account Executive key role in Vitally"; allocation held it only with the key role,
    so with it unset a New Owner (EU TAM, segment TAM/CSM Candidate) was proposed while the stage
    said the Account Executive nurtures it (found by a review, 2026-12-06)."""
    assert _verdicts(_twenty_k(), AccountContext())["allocation.new_owner"].traits == {"new_owner": "EU TAM"}
    held = _verdicts(_twenty_k(), _won(300))
    owner = held["allocation.new_owner"]
    assert not owner.fired and owner.traits == {} and not owner.segments
    assert f"closed won {NOW.date() - timedelta(days=300)} (9 months ago): the Account Executive nurtures it" in (
        owner.reason
    )
    assert held["lifecycle.stage"].traits["lifecycle_stage"] == "Technical account executive"
    assert _verdicts(_twenty_k(), _won(400))["allocation.new_owner"].traits == {"new_owner": "EU TAM"}
    assert _verdicts(_twenty_k(), _won(30, stage="Closed Lost"))["allocation.new_owner"].fired


def test_allocation_waits_for_an_open_deal_without_the_account_executive_key_role() -> None:
    """account-allocation.md: "TAE -> TAM … after the initial contract is signed": a deal still open
    in Salesforce is the Account Executive's, whether or not Vitally names one."""
    open_deal = AccountContext(opportunities=(Opportunity("006D", "001A", "Discovery", None, None, "005TAE"),))
    owner = _verdicts(_twenty_k(), open_deal)["allocation.new_owner"]
    assert not owner.fired and owner.traits == {}
    assert "opportunity 006D is still open (Discovery): hand over after the initial contract is signed" in owner.reason
