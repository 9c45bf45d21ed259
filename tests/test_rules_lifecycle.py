"""lifecycle.account_review, lifecycle.csm_downgrade and lifecycle.stage, case by case (rules.md §5,
accounts-overview.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.model import Account, Invoice, Lead, Opportunity
from rules import Policy
from rules.context import EMPTY, AccountContext
from rules.episodes import family_of_lead
from rules.lifecycle import account_review, csm_downgrade, stage
from rules.policy import AllocationPolicy, LifecyclePolicy

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def account(**kw: Any) -> Account:
    base: dict[str, Any] = {"id": "acc_1", "name": "Acme", "updated_at": NOW}
    base.update(kw)
    return Account(**base)


def open_lead(source: str | None, lead_id: str = "00Q1", created: datetime | None = None) -> Lead:
    return Lead(lead_id, NOW, lead_source=source, status="Open", created_date=created)


OPEN_OPPORTUNITY = Opportunity("006A", "001A", "Discovery", None, None, "u1")


# lifecycle.account_review


@pytest.mark.parametrize(
    ("kw", "fired", "unknown"),
    [
        ({"mrr": 2000}, True, ()),
        ({"mrr": 1999.99}, False, ()),
        ({"mrr": 1999}, False, ()),
        ({"mrr": 8000}, True, ()),
        ({"mrr": None}, False, ("mrr",)),
        ({"mrr": 2500, "key_roles": {"TAM": "u1"}}, False, ()),
        ({"mrr": 2500, "key_roles": {"CSM": "u1"}}, False, ()),
        ({"mrr": 2500, "key_roles": {"Account Executive": "u1"}}, False, ()),
        ({"mrr": 2500, "segments": frozenset({"AM Managed"})}, False, ()),
        # With its onboarding specialist: not self serve yet (accounts-overview.md's flowchart, the
        # specialist decides "$20k+ potential?"; Account review is self serve's branch), as the stage says.
        ({"mrr": 2500, "key_roles": {"Onboarding Specialist": "u9"}}, False, ()),  # first bill unknown
        (
            {"mrr": 2500, "key_roles": {"Onboarding Specialist": "u9"}, "invoices": (Invoice("2026-09", 2500),)},
            False,
            (),
        ),
        # A key role nobody took away, years after onboarding: self serve again (an adversarial
        # review: held for good, such an account never reached Account review).
        (
            {"mrr": 2500, "key_roles": {"Onboarding Specialist": "u9"}, "invoices": (Invoice("2024-09", 2500),)},
            True,
            (),
        ),
        ({"mrr": 2500, "segments": frozenset({"Onboarding"})}, False, ()),
    ],
)
def test_account_review_table(kw: dict[str, Any], fired: bool, unknown: tuple[str, ...]) -> None:
    decision = account_review(account(**kw), EMPTY, Policy(), NOW)
    assert decision.fired is fired, decision.reason
    assert decision.unknown == unknown
    assert decision.segments == ({"Account review"} if fired else frozenset())
    assert decision.manages == {"Account review"}


def test_account_review_reason_names_mrr_and_threshold() -> None:
    assert account_review(account(mrr=2150), EMPTY, Policy(), NOW).reason == "self serve; mrr 2,150 ≥ 2,000"
    owned = account_review(account(mrr=2150, key_roles={"TAM": "u1"}), EMPTY, Policy(), NOW)
    assert owned.reason == "not self serve (TAM key role)"


@pytest.mark.parametrize(
    ("ctx", "reason"),
    [
        (
            AccountContext(opportunities=(OPEN_OPPORTUNITY,)),
            "not self serve (open opportunity 006A (Discovery) in Salesforce)",
        ),
        (AccountContext(leads=(open_lead("Web"),)), "not self serve (open lead 00Q1 (Open) in Salesforce)"),
    ],
)
def test_account_review_is_for_organic_growth_not_an_account_sales_works(ctx: AccountContext, reason: str) -> None:
    """accounts-overview.md: a self-serve account's "organic growth to $2k+ MRR" goes to Account
    review; one with an open opportunity or someone's open lead is already being worked."""
    decision = account_review(account(mrr=2500), ctx, Policy(), NOW)
    assert decision.fired is False
    assert decision.reason == reason


def test_account_review_is_not_withdrawn_by_the_lead_crm_sync_routed_in_the_same_plan() -> None:
    """The routing trigger that fires with the review creates crm-sync's own lead (its Sync_Key__c):
    on the next cycle that lead is in the context, and the review must stand as it did."""
    ours = Lead("00Q2", NOW, lead_source="Product-led", status="Open", sync_key="crm-sync-acc_1-1")
    first = account_review(account(mrr=2500), EMPTY, Policy(), NOW)
    second = account_review(account(mrr=2500), AccountContext(leads=(ours,)), Policy(), NOW)
    assert first.fired and second.fired
    assert second.reason == first.reason


def test_account_review_threshold_is_configurable() -> None:
    decision = account_review(account(mrr=1500), EMPTY, Policy(lifecycle=LifecyclePolicy(review_mrr=1500)), NOW)
    assert decision.fired is True


# lifecycle.csm_downgrade


@pytest.mark.parametrize(
    ("kw", "fired", "unknown"),
    [
        ({"mrr": 19_999.99 / 12, "key_roles": {"CSM": "u1"}}, True, ()),
        ({"mrr": 20_000 / 12, "key_roles": {"CSM": "u1"}}, False, ()),
        ({"mrr": 1000, "key_roles": {"CSM": "u1"}}, True, ()),
        ({"mrr": 5000, "key_roles": {"CSM": "u1"}}, False, ()),
        ({"mrr": None, "key_roles": {"CSM": "u1"}}, False, ("mrr",)),
        ({"mrr": 1000, "key_roles": {"TAM": "u1"}}, False, ()),
        ({"mrr": 1000}, False, ()),
    ],
)
def test_csm_downgrade_table(kw: dict[str, Any], fired: bool, unknown: tuple[str, ...]) -> None:
    decision = csm_downgrade(account(**kw), EMPTY, Policy(), NOW)
    assert decision.fired is fired, decision.reason
    assert decision.review is fired
    assert decision.unknown == unknown
    assert decision.segments == ({"Account review"} if fired else frozenset())
    assert decision.manages == {"Account review"}


def test_csm_downgrade_reason_asks_back_to_self_serve() -> None:
    decision = csm_downgrade(account(mrr=19_999.99 / 12, key_roles={"CSM": "u1"}), EMPTY, Policy(), NOW)
    assert decision.reason == "CSM-owned (u1); ARR 19,999.99 < 20,000: back to self serve?"


def test_csm_downgrade_follows_the_allocation_threshold() -> None:
    policy = Policy(allocation=AllocationPolicy(arr_threshold=30_000))
    decision = csm_downgrade(account(mrr=2000, key_roles={"CSM": "u1"}), EMPTY, policy, NOW)
    assert decision.fired is True
    assert "ARR 24,000 < 30,000" in decision.reason


# lifecycle.stage


@pytest.mark.parametrize(
    ("kw", "ctx", "expected"),
    [
        ({"mrr": 100, "key_roles": {"CSM": "u1", "TAM": "u2"}}, EMPTY, "Customer success manager"),
        ({"mrr": 100, "key_roles": {"TAM": "u2", "Account Executive": "u3"}}, EMPTY, "Technical account manager"),
        ({"mrr": 100, "segments": frozenset({"AM Managed"})}, EMPTY, "Technical account manager"),
        ({"mrr": 100, "key_roles": {"Account Executive": "u3"}}, EMPTY, "Technical account executive"),
        # A TAM takes the Account Executive role to qualify (plg-lead-qualification.md) and keeps
        # it once the account is in their managed book.
        (
            {"mrr": 100, "key_roles": {"Account Executive": "u3"}, "segments": frozenset({"AM Managed"})},
            EMPTY,
            "Technical account manager",
        ),
        ({"mrr": 100}, AccountContext(opportunities=(OPEN_OPPORTUNITY,)), "Technical account executive"),
        ({"mrr": 100}, AccountContext(leads=(open_lead("Demo request"),)), "New business lead"),
        ({"mrr": 100}, AccountContext(leads=(open_lead("Onboarding referral"),)), "New business lead"),
        ({"mrr": 100}, AccountContext(leads=(open_lead(None),)), "New business lead"),
        ({"mrr": 100}, AccountContext(leads=(open_lead("Product-led"),)), "Expansion lead"),
        ({"mrr": 100}, AccountContext(leads=(open_lead("AM referral"),)), "Expansion lead"),
        # A BDR's own lead (owned by the BDR; one waiting in the queue is handed to the TAEs).
        ({"mrr": 100}, AccountContext(leads=(replace(open_lead("BDR"), owner_id="005BDR"),)), "BDR"),
        ({"mrr": 100, "segments": frozenset({"Product-led lead"})}, EMPTY, "Expansion lead"),
        ({"mrr": 100, "segments": frozenset({"AE referral"})}, EMPTY, "New business lead"),
        ({"mrr": 100, "segments": frozenset({"Account review"})}, EMPTY, "Account review"),
        ({"mrr": 100, "key_roles": {"Onboarding Specialist": "u9"}}, EMPTY, "Onboarding specialist"),
        ({"mrr": 100, "segments": frozenset({"Onboarding"})}, EMPTY, "Onboarding specialist"),
        ({"mrr": None, "segments": frozenset({"Onboarding"})}, EMPTY, "Onboarding specialist"),
        ({"mrr": 2000}, EMPTY, "Account review"),
        ({"mrr": 1999.99}, EMPTY, "Self serve"),
        ({"mrr": 0}, EMPTY, "Self serve"),
        # A closed lead is history, not a stage.
        (
            {"mrr": 100},
            AccountContext(leads=(Lead("00Q9", NOW, lead_source="BDR", status="Disqualified"),)),
            "Self serve",
        ),
    ],
)
def test_stage_table(kw: dict[str, Any], ctx: AccountContext, expected: str) -> None:
    decision = stage(account(**kw), ctx, Policy(), NOW)
    assert decision.fired is True, decision.reason
    assert decision.traits == {"lifecycle_stage": expected}
    assert decision.reason.endswith(f"→ {expected}")


def test_stage_covers_every_flowchart_stage() -> None:
    assert set(LifecyclePolicy.STAGES) == {
        "Self serve",
        "Onboarding specialist",
        "Technical account executive",
        "Technical account manager",
        "Customer success manager",
        "Account review",
        "New business lead",
        "Expansion lead",
        "BDR",
    }


def test_stage_newest_open_lead_decides() -> None:
    older = open_lead("BDR", "00Q1", datetime(2026, 9, 1, tzinfo=UTC))
    newer = open_lead("Product-led", "00Q2", datetime(2026, 11, 1, tzinfo=UTC))
    decision = stage(account(mrr=100), AccountContext(leads=(newer, older)), Policy(), NOW)
    assert decision.traits == {"lifecycle_stage": "Expansion lead"}
    assert decision.reason == "open lead 00Q2 (source Product-led) → Expansion lead"


def test_stage_unknown_mrr_without_other_signals_does_not_fire() -> None:
    decision = stage(account(mrr=None), EMPTY, Policy(), NOW)
    assert decision.fired is False
    assert decision.unknown == ("mrr",)
    assert decision.traits == {}


def test_stage_reason_names_the_deciding_input() -> None:
    decision = stage(account(mrr=2150), EMPTY, Policy(), NOW)
    assert decision.reason == "no owner; mrr 2,150 ≥ 2,000 → Account review"
    decision = stage(account(mrr=100, key_roles={"CSM": "u1"}), EMPTY, Policy(), NOW)
    assert decision.reason == "CSM key role (u1) → Customer success manager"


ROLES = st.dictionaries(
    st.sampled_from(["CSM", "TAM", "Account Executive", "Onboarding Specialist", "Other"]), st.just("u1")
)
SEGMENTS = st.frozensets(
    st.sampled_from(
        [
            "AM Managed",
            "Account review",
            "Onboarding",
            "Product-led lead",
            "AM referral",
            "AE referral",
            "Onboarding referral",
            "Annual Plan",
            "Nurture",
        ]
    )
)
LEADS = st.lists(
    st.builds(
        Lead,
        id=st.sampled_from(["00Q1", "00Q2"]),
        system_modstamp=st.just(NOW),
        lead_source=st.none() | st.sampled_from(["BDR", "Product-led", "Demo request", "AM referral", "Campaign"]),
        status=st.none() | st.sampled_from(["Open", "Working", "Disqualified", "Converted"]),
        is_converted=st.booleans(),
        created_date=st.none() | st.datetimes(timezones=st.just(UTC)),
    ),
    max_size=3,
)
OPPORTUNITIES = st.lists(
    st.builds(
        Opportunity,
        id=st.just("006A"),
        account_id=st.just("001A"),
        stage_name=st.none() | st.sampled_from(["Discovery", "Closed Won", "Closed Lost"]),
        close_date=st.none(),
        loss_reason=st.none(),
        owner_id=st.just("u1"),
    ),
    max_size=2,
)


@given(
    mrr=st.none() | st.floats(min_value=0, max_value=1e7, allow_nan=False),
    roles=ROLES,
    segments=SEGMENTS,
    leads=LEADS,
    opportunities=OPPORTUNITIES,
)
def test_stage_is_always_a_configured_stage(
    mrr: float | None,
    roles: dict[str, str],
    segments: frozenset[str],
    leads: list[Lead],
    opportunities: list[Opportunity],
) -> None:
    acc = account(mrr=mrr, key_roles=roles, segments=segments)
    decision = stage(acc, AccountContext(tuple(leads), tuple(opportunities)), Policy(), NOW)
    if decision.fired:
        assert decision.traits["lifecycle_stage"] in LifecyclePolicy.STAGES
    else:
        assert mrr is None and decision.unknown == ("mrr",) and decision.traits == {}


@pytest.mark.parametrize(
    ("source", "expected", "family"),
    [
        ("bdr", "BDR", "bdr"),
        (" BDR ", "BDR", "bdr"),
        ("product-led", "Expansion lead", "product_led"),
        ("AM  referral", "Expansion lead", "product_led"),
        ("Demo request", "New business lead", "new_business"),
    ],
)
def test_a_leads_source_is_read_in_any_case_and_spacing(source: str, expected: str, family: str) -> None:
    """The lifecycle stage and the episode's family read an open lead's LeadSource as the routing
    triggers match it (any case, a run of spaces as one): a `bdr` lead is the BDR's, as `BDR` is.
    Before, both compared it exactly, so a `bdr` lead made a "New business lead" stage. (Owned by
    a BDR: one waiting for routing is new_business.bdr_qualified's, a new business lead.)"""
    lead = Lead(id="00QA", system_modstamp=NOW, lead_source=source, status="Open - Not Contacted", owner_id="005BDR")
    account = Account(id="acc_1", name="Acme", updated_at=NOW, mrr=100)
    decision = stage(account, AccountContext((lead,)), Policy(), NOW)
    assert decision.traits["lifecycle_stage"] == expected, decision.reason
    assert family_of_lead(lead, Policy()) == family


# A TAM qualifying a product-led lead (plg-lead-qualification.md, step 5): "Add yourself as the
# Account Executive in Vitally and use the 'Leads' segment to track it separately" and "It does not
# mean adding it to your managed book yet". The Account Executive key role is then the TAM's.

QUALIFYING = {"mrr": 900, "key_roles": {"Account Executive": "u_tam"}}


def our_product_led_lead(status: str = "In progress") -> Lead:
    return Lead(
        "00Qx",
        NOW,
        status=status,
        sync_key="crm-sync-acc_1-1",
        routing_rule="product_led.mrr_band",
        lead_source="Product-led",
    )


@pytest.mark.parametrize(
    ("kw", "ctx", "why"),
    [
        ({"segments": frozenset({"Leads"})}, EMPTY, "segment Leads"),
        ({}, AccountContext(leads=(our_product_led_lead(),)), "open lead 00Qx"),
        ({"segments": frozenset({"Leads"})}, AccountContext(leads=(our_product_led_lead(),)), "segment Leads"),
    ],
)
def test_an_account_executive_qualifying_a_product_led_lead_is_an_expansion_lead(
    kw: dict[str, Any], ctx: AccountContext, why: str
) -> None:
    """Found by a handbook audit: following the qualification step to the letter read as a TAE's
    account ("Technical account executive")."""
    decision = stage(account(**QUALIFYING, **kw), ctx, Policy(), NOW)
    assert decision.traits == {"lifecycle_stage": "Expansion lead"}
    assert decision.reason == (
        f"Account Executive key role (u_tam) qualifying a product-led lead ({why}) → Expansion lead"
    )


@pytest.mark.parametrize(
    ("kw", "ctx", "expected"),
    [
        # A TAE's account: no Leads segment, no product-led lead (a new-business lead, or none).
        ({}, EMPTY, "Technical account executive"),
        ({}, AccountContext(leads=(open_lead("Demo request"),)), "Technical account executive"),
        # In the TAM's managed book: theirs, whatever the segment Leads still says.
        ({"segments": frozenset({"Leads", "AM Managed"})}, EMPTY, "Technical account manager"),
    ],
)
def test_an_account_executive_otherwise_is_still_a_tae_or_in_the_book(
    kw: dict[str, Any], ctx: AccountContext, expected: str
) -> None:
    assert stage(account(**QUALIFYING, **kw), ctx, Policy(), NOW).traits == {"lifecycle_stage": expected}


def test_a_bdr_lead_a_bdr_qualified_for_a_tae_is_a_new_business_lead() -> None:
    """lead-routing-and-scoring.md lists "Outbound leads manually qualified by BDRs" among the new
    business team's leads; new_business.bdr_qualified routes such a lead (LeadSource BDR, handed
    back to the queue) to a TAE. Its LeadSource is still the BDRs' own, which made the stage "BDR"
    (found by a handbook audit). Waiting for that routing and once routed: "New business lead". A
    BDR's lead they still own, or crm-sync's own BDR lead, stays "BDR"."""
    queue = Policy().routing.queue_id_prefix + "000000000001"

    def staged(**fields: Any) -> str:
        lead = Lead("00QB", NOW, lead_source="BDR", status="Working", **fields)
        return str(stage(account(mrr=100), AccountContext(leads=(lead,)), Policy(), NOW).traits["lifecycle_stage"])

    assert staged(routing_rule="new_business.bdr_qualified", owner_id="005TAE") == "New business lead"
    assert staged(owner_id=queue) == "New business lead"  # waiting for new_business.bdr_qualified
    assert staged(owner_id="005BDR") == "BDR"
    assert staged(owner_id="005BDR", routing_rule="bdr.low_usage", sync_key="crm-sync-acc_1-1") == "BDR"
    disabled = Policy(enabled={"new_business.bdr_qualified": False})
    lead = Lead("00QB", NOW, lead_source="BDR", status="Working", owner_id=queue)
    assert stage(account(mrr=100), AccountContext(leads=(lead,)), disabled, NOW).traits == {"lifecycle_stage": "BDR"}


@pytest.mark.parametrize(
    ("status", "reviewed"),
    [("Working - Contacted", False), ("Nurturing", False), ("In progress", False), ("Open - Not Contacted", True)],
)
def test_account_review_not_while_a_person_works_crm_sync_s_lead(status: str, reviewed: bool) -> None:
    """crm-sync's product-led lead that a TAM works: the account is an expansion lead with Sales, not
    self serve growing organically (found by a review). One nobody has moved yet is no one's
    engagement: the account routed and reviewed in one cycle stays in review on the next."""
    ours = replace(
        open_lead("Product-led"), status=status, sync_key="crm-sync-acc_1-1", routing_rule="product_led.mrr_band"
    )
    decision = account_review(account(mrr=2500), AccountContext(leads=(ours,)), Policy(), NOW)
    assert decision.fired is reviewed, decision.reason
    if not reviewed:
        assert f"crm-sync's product-led lead 00Q1 ({status}) being worked" in decision.reason


def test_the_stage_and_account_review_agree_on_a_key_role_left_from_onboarding() -> None:
    """A second adversarial review: Account review read an Onboarding Specialist key role years after
    the first bill as self serve, while the stage still said "Onboarding specialist" for good."""
    aged = account(mrr=1500, key_roles={"Onboarding Specialist": "u9"}, invoices=(Invoice("2024-09", 1500),))
    current = account(mrr=1500, key_roles={"Onboarding Specialist": "u9"}, invoices=(Invoice("2026-10", 1500),))

    assert account_review(aged, EMPTY, Policy(), NOW).reason == "self serve; mrr 1,500 < 2,000"
    assert stage(aged, EMPTY, Policy(), NOW).traits == {"lifecycle_stage": "Self serve"}
    assert stage(current, EMPTY, Policy(), NOW).traits == {"lifecycle_stage": "Onboarding specialist"}
