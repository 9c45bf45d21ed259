"""qualification.recommendation (plg-lead-qualification.md, rules.md §6)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.model import Account, Invoice, Lead
from rules import Policy, evaluate_account
from rules.context import EMPTY, AccountContext
from rules.policy import QualificationPolicy
from rules.qualification import SIGNALS, monthly_growth, recommend

NOW = datetime(2026, 11, 22, tzinfo=UTC)
# An open lead someone else is working in Salesforce: the account is already worked.
WORKED = AccountContext(leads=(Lead("00Q1", NOW, status="Working"),))


def invoices(*amounts: float) -> tuple[Invoice, ...]:
    return tuple(Invoice(f"2026-{month:02d}", amount) for month, amount in enumerate(amounts, start=8))


def account(**kw: Any) -> Account:
    """A lead that qualifies: $1,500 MRR growing ~22 %/month, two primary products, 64 people, and an
    opening message (two billing page views this month)."""
    base: dict[str, Any] = {
        "id": "acc_1",
        "name": "Acme",
        "updated_at": NOW,
        "mrr": 1500,
        "invoices": invoices(1000, 1200, 1500),
        "product_spend": {"product_analytics": 900, "session_replay": 600},
        "paid_products": ("product_analytics", "session_replay"),
        "activated_products": ("product_analytics", "session_replay"),
        "employee_count": 64,
        "autocapture_pct": 40,
        "custom_event_pct": 30,
        "actions_count": 5,
        "project_count": 1,
        "billing_page_views_30d": 2,
        "data_destinations": (),
    }
    base.update(kw)
    return Account(**base)


def label(acc: Account) -> str:
    decision = recommend(acc, EMPTY, Policy(), NOW)
    assert decision.fired, decision.reason
    return str(decision.inputs["recommendation"])


def test_recommendation_qualifies_with_reason_and_trait() -> None:
    decision = recommend(account(), EMPTY, Policy(), NOW)
    assert decision.fired
    assert decision.rule == "qualification.recommendation"
    assert decision.inputs["recommendation"] == "qualify"
    assert decision.reason == (
        "qualify: growth 22.5 %/month over 3 invoices ≥ 5 %; projected ARR 205,031 in 12 months ≥ 20,000; "
        "paying for 2 primary products ≥ 2; employees 64 ≥ 50; signals: 2 billing page views in 30 days"
    )
    assert decision.traits == {"qualification": f"qualification.recommendation: {decision.reason}"}
    assert decision.segments == frozenset()
    assert decision.manages == {"Nurture"}
    assert decision.signals == ("billing_page_views",)


ONE_PRODUCT: dict[str, Any] = {"paid_products": ("product_analytics",), "activated_products": ("product_analytics",)}

LABELS: list[tuple[str, dict[str, Any], str]] = [
    ("baseline", {}, "qualify"),
    # Quick filter: MRR < 500 with no growth.
    ("low mrr flat", {"mrr": 499, "invoices": invoices(499, 499, 499)}, "disqualify"),
    ("low mrr shrinking", {"mrr": 300, "invoices": invoices(450, 400, 300)}, "disqualify"),
    ("low mrr one invoice", {"mrr": 450, "invoices": invoices(450)}, "disqualify"),
    ("mrr 500 flat: not the quick filter", {"mrr": 500, "invoices": invoices(500, 500, 500)}, "nurture"),
    ("low mrr growing", {"mrr": 450, "invoices": invoices(300, 380, 450)}, "nurture"),
    ("low mrr growing 4 %", {"mrr": 450, "invoices": invoices(416, 433, 450)}, "disqualify"),
    # Quick filter: all spend from one product under 200.
    ("one product 199", {"product_spend": {"product_analytics": 199, "surveys": 0}}, "disqualify"),
    ("one product 200", {"product_spend": {"product_analytics": 200}}, "qualify"),
    ("two products under 200", {"product_spend": {"product_analytics": 150, "surveys": 40}}, "qualify"),
    # Quick filter: startup credits with 12+ months left and low burn.
    (
        "credits 13 months, 20 % used",
        {"startup_credits_total": 50_000, "startup_credits_used": 10_000, "startup_plan_ends_at": date(2027, 12, 22)},
        "disqualify",
    ),
    (
        "credits 11 months left",
        {"startup_credits_total": 50_000, "startup_credits_used": 10_000, "startup_plan_ends_at": date(2027, 11, 21)},
        "qualify",
    ),
    (
        "credits 25 % used is not low burn",
        {"startup_credits_total": 50_000, "startup_credits_used": 12_500, "startup_plan_ends_at": date(2027, 12, 22)},
        "qualify",
    ),
    # Nurture: spend growing but under 1,000 MRR.
    ("growing 900", {"mrr": 900, "invoices": invoices(600, 750, 900)}, "nurture"),
    ("growing 1000", {"mrr": 1000, "invoices": invoices(700, 850, 1000)}, "qualify"),
    # Nurture: implementation early.
    ("early implementation", {"autocapture_pct": 70, "custom_event_pct": 10}, "nurture"),
    ("custom events 10.1 %", {"autocapture_pct": 70, "custom_event_pct": 10.1}, "qualify"),
    ("autocapture 69.9 %", {"autocapture_pct": 69.9, "custom_event_pct": 5}, "qualify"),
    # Qualify needs a realistic path to $20k ARR.
    ("flat 1,600: 19,200 ARR", {"mrr": 1600, "invoices": invoices(1600, 1600, 1600)}, "nurture"),
    ("flat 1,667: 20,004 ARR", {"mrr": 1667, "invoices": invoices(1667, 1667, 1667)}, "qualify"),
    # ... a clear multi-product opportunity.
    ("one paid product", {"paid_products": ("product_analytics",), "activated_products": ()}, "nurture"),
    (
        "activated but unpaid primary",
        {"paid_products": ("product_analytics",), "activated_products": ("Feature flags",)},
        "qualify",
    ),
    (
        "activated non-primary only",
        {"paid_products": ("product_analytics",), "activated_products": ("llm_analytics",)},
        "nurture",
    ),
    ("products unknown", {"paid_products": None, "activated_products": None}, "nurture"),
    # ... and a company that can grow.
    ("49 employees", {"employee_count": 49}, "nurture"),
    (
        "49 employees, funded 365 days ago",
        {"employee_count": 49, "harmonic_last_funding_date": date(2025, 11, 22)},
        "qualify",
    ),
    (
        "49 employees, funded 366 days ago",
        {"employee_count": 49, "harmonic_last_funding_date": date(2025, 11, 21)},
        "nurture",
    ),
    ("headcount +20 %", {"employee_count": None, "harmonic_headcount": 120, "harmonic_headcount_180d": 100}, "qualify"),
    ("headcount +19 %", {"employee_count": None, "harmonic_headcount": 119, "harmonic_headcount_180d": 100}, "nurture"),
    # Step 5, "pass or disqualify".
    (
        "flat, one product, small",
        {
            "mrr": 800,
            "invoices": invoices(800, 800, 800),
            "paid_products": ("product_analytics",),
            "activated_products": (),
            "employee_count": 10,
        },
        "disqualify",
    ),
    # "Spend is flat or declining with no expansion lever", however large the company.
    ("flat, one product, 64 people", {"mrr": 800, "invoices": invoices(800, 800, 800), **ONE_PRODUCT}, "disqualify"),
    ("declining, one product", {"mrr": 800, "invoices": invoices(1000, 900, 800), **ONE_PRODUCT}, "disqualify"),
    ("growing 4 %, one product", {"mrr": 1600, "invoices": invoices(1479, 1538, 1600), **ONE_PRODUCT}, "disqualify"),
    ("flat, two products: a lever", {"mrr": 800, "invoices": invoices(800, 800, 800)}, "nurture"),
    (
        "flat, one product, funded: a lever",
        {
            "mrr": 800,
            "invoices": invoices(800, 800, 800),
            "harmonic_last_funding_date": date(2026, 6, 1),
            **ONE_PRODUCT,
        },
        "nurture",
    ),
    (
        "flat, products unknown: no evidence",
        {"mrr": 800, "invoices": invoices(800, 800, 800), "paid_products": None, "activated_products": None},
        "nurture",
    ),
    # "Company is too small to realistically hit $20k ARR".
    (
        "flat 800, 8 people, two products",
        {"mrr": 800, "invoices": invoices(800, 800, 800), "employee_count": 8},
        "disqualify",
    ),
    (
        "flat 800, size unknown: no evidence",
        {"mrr": 800, "invoices": invoices(800, 800, 800), "employee_count": None},
        "nurture",
    ),
    (
        "flat 1,667, 8 people: on the path already",
        {"mrr": 1667, "invoices": invoices(1667, 1667, 1667), "employee_count": 8},
        "nurture",
    ),
    (
        "growing 900, 10 people: a path",
        {"mrr": 900, "invoices": invoices(600, 750, 900), "employee_count": 10},
        "nurture",
    ),
    (
        "growing 5 % from 450, 10 people: no realistic path",
        {"mrr": 496, "invoices": invoices(450, 472.5, 496), "employee_count": 10},
        "disqualify",
    ),
    # "You have a plausible first message that leads with specific value".
    ("all three, no signal", {"billing_page_views_30d": 0}, "nurture"),
    ("all three, an annual plan to offer", {"billing_page_views_30d": 0, "annual_plan": False}, "qualify"),
    # ... which a risk or a stickiness signal is not (found by a review): reported, no message to lead with
    ("all three, data to a warehouse", {"billing_page_views_30d": 0, "data_destinations": ("Snowflake",)}, "nurture"),
    ("all three, data to a competitor", {"billing_page_views_30d": 0, "data_destinations": ("Amplitude",)}, "nurture"),
    ("all three, 3 projects", {"billing_page_views_30d": 0, "project_count": 3}, "nurture"),
    # A trend one invoice cannot show is no evidence of flat spend (found by a review).
    ("one invoice, one product", {"mrr": 1500, "invoices": invoices(1500), **ONE_PRODUCT}, "nurture"),
]


@pytest.mark.parametrize(("case", "kw", "expected"), LABELS, ids=[case for case, _, _ in LABELS])
def test_recommendation_paths(case: str, kw: dict[str, Any], expected: str) -> None:
    assert label(account(**kw)) == expected


def test_recommendation_already_worked_disqualifies_and_says_why() -> None:
    decision = recommend(account(key_roles={"TAM": "u1"}), EMPTY, Policy(), NOW)
    assert decision.inputs["recommendation"] == "disqualify"
    assert decision.reason.startswith("disqualify: already worked: already owned (TAM key role)")


def test_recommendation_already_worked_ignores_the_cool_off() -> None:
    """A referral may follow a disqualification: the cool-off does not make the lead worked."""
    decision = recommend(account(lead_disqualified_at=NOW.date()), EMPTY, Policy(), NOW)
    assert decision.inputs["recommendation"] == "qualify"


def test_recommendation_nurture_wants_the_nurture_segment() -> None:
    decision = recommend(account(employee_count=10), EMPTY, Policy(), NOW)
    assert decision.inputs["recommendation"] == "nurture"
    assert decision.segments == {"Nurture"}
    assert "potential without an urgency signal" in decision.reason
    assert "company profile can't grow yet (employees 10 < 50)" in decision.reason


def test_recommendation_quick_filter_reasons_name_thresholds() -> None:
    decision = recommend(
        account(mrr=499, invoices=invoices(499, 499, 499), product_spend={"surveys": 150}), EMPTY, Policy(), NOW
    )
    assert decision.reason.startswith(
        "disqualify: mrr 499 < 500 with no growth (growth 0 %/month over 3 invoices < 5 %); "
        "all spend from surveys 150 < 200"
    )


@pytest.mark.parametrize(
    ("kw", "unknown"),
    [
        ({"mrr": None}, ("mrr",)),
        ({"invoices": None}, ("invoices",)),
        ({"mrr": None, "invoices": None}, ("mrr", "invoices")),
    ],
)
def test_recommendation_unknown_key_inputs_do_not_fire(kw: dict[str, Any], unknown: tuple[str, ...]) -> None:
    decision = recommend(account(**kw), EMPTY, Policy(), NOW)
    assert not decision.fired
    assert decision.unknown == unknown
    assert decision.reason == "unknown: " + ", ".join(unknown)
    assert decision.inputs["recommendation"] is None
    assert decision.traits == {}


SIGNAL_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("autocapture_no_actions", {"autocapture_pct": 70, "actions_count": 0}, "autocapture 70 % with 0 actions"),
    ("autocapture_no_actions", {"autocapture_pct": 70, "actions_count": 1}, None),
    ("autocapture_no_actions", {"autocapture_pct": 69, "actions_count": 0}, None),
    ("b2b_no_group_analytics", {"is_b2b": True}, "B2B without group_analytics"),
    ("b2b_no_group_analytics", {"is_b2b": True, "activated_products": ("Group analytics",)}, None),
    ("b2b_no_group_analytics", {"is_b2b": False}, None),
    ("mobile_no_replay", {"has_mobile_app": True}, "mobile app without mobile_replay"),
    ("mobile_no_replay", {"has_mobile_app": True, "paid_products": ("mobile-replay",)}, None),
    ("ai_no_llm_analytics", {"is_ai_product": True}, "AI product without llm_analytics"),
    ("ai_no_llm_analytics", {"is_ai_product": True, "activated_products": ("llm_analytics",)}, None),
    ("flags_no_experiments", {"paid_products": ("feature_flags",)}, "feature_flags without experiments"),
    ("flags_no_experiments", {"paid_products": ("feature_flags",), "activated_products": ("experiments",)}, None),
    ("spend_jump", {"invoices": invoices(1000, 1000, 1500)}, "invoice 2026-10 1,500 up 50 % on 1,000"),
    ("spend_jump", {"invoices": invoices(1000, 1000, 1499)}, None),
    ("billing_page_views", {"billing_page_views_30d": 1}, "1 billing page views in 30 days"),
    ("billing_page_views", {"billing_page_views_30d": 0}, None),
    (
        "billing_limits_close",
        {"billing_limits": {"product_analytics": 990}},
        "billing limit close to spend: product_analytics limit 990 vs spend 900",
    ),
    ("billing_limits_close", {"billing_limits": {"product_analytics": 991}}, None),
    ("competitor_destination", {"data_destinations": ("Amplitude",)}, "data to competitor Amplitude"),
    (
        "competitor_destination",
        {"data_destinations": ("Mixpanel export", "Webhook")},
        "data to competitor Mixpanel export",
    ),
    ("competitor_destination", {"data_destinations": ("amplitudes",)}, None),
    ("warehouse_destination", {"data_destinations": ("Google BigQuery",)}, "data to warehouse Google BigQuery"),
    ("warehouse_destination", {"data_destinations": ("Amazon S3",)}, "data to warehouse Amazon S3"),
    ("warehouse_destination", {"data_destinations": ("bigqueryish",)}, None),
    ("annual_conversion", {"annual_plan": False}, "monthly plan growing 22.5 %/month: annual plan"),
    ("annual_conversion", {"annual_plan": True}, None),
    ("annual_conversion", {"annual_plan": None}, None),
    ("annual_conversion", {"annual_plan": False, "invoices": invoices(1500, 1500, 1500)}, None),
    ("multi_project", {"project_count": 3}, "3 projects ≥ 3"),
    ("multi_project", {"project_count": 2}, None),
]


@pytest.mark.parametrize(("signal", "kw", "text"), SIGNAL_CASES)
def test_recommendation_signals(signal: str, kw: dict[str, Any], text: str | None) -> None:
    decision = recommend(account(**{"billing_page_views_30d": 0, **kw}), EMPTY, Policy(), NOW)  # this one alone
    if text is None:
        assert signal not in decision.signals
    else:
        assert decision.signals == (signal,)
        assert decision.reason.endswith(f"; signals: {text}")
        assert decision.traits["qualification"] == f"qualification.recommendation: {decision.reason}"


def test_recommendation_signals_are_reported_on_disqualified_leads_too() -> None:
    decision = recommend(account(billing_page_views_30d=3), WORKED, Policy(), NOW)
    assert decision.inputs["recommendation"] == "disqualify"
    assert decision.signals == ("billing_page_views",)


def test_recommendation_policy_thresholds_are_tunable() -> None:
    strict = QualificationPolicy(employees_min=100, several_projects=2)
    decision = recommend(account(project_count=2, billing_page_views_30d=0), EMPTY, Policy(qualification=strict), NOW)
    assert decision.inputs["recommendation"] == "nurture"
    assert decision.signals == ("multi_project",)


@pytest.mark.parametrize(
    ("amounts", "growth"),
    [((), None), ((100,), None), ((0, 100, 200), None), ((100, 121), 0.21), ((50, 100, 110, 121), 0.1)],
)
def test_monthly_growth_is_compound_over_the_last_invoices(amounts: tuple[float, ...], growth: float | None) -> None:
    result = monthly_growth(invoices(*amounts))
    assert result == (None if growth is None else pytest.approx(growth))


def test_signal_names_are_the_documented_ones() -> None:
    assert set(SIGNALS) == {name for name, _, _ in SIGNAL_CASES}


money = st.none() | st.floats(min_value=0, max_value=100_000, allow_nan=False)
products = st.none() | st.lists(
    st.sampled_from(
        ["product_analytics", "session_replay", "feature_flags", "surveys", "experiments", "llm_analytics"]
    ),
    max_size=4,
).map(tuple)


@given(
    mrr=money,
    amounts=st.none() | st.lists(st.floats(min_value=0, max_value=100_000, allow_nan=False), max_size=5),
    paid=products,
    activated=products,
    employees=st.none() | st.integers(min_value=0, max_value=5000),
    spend=st.none() | st.dictionaries(st.sampled_from(["product_analytics", "surveys"]), st.floats(0, 5000)),
    autocapture=st.none() | st.floats(0, 100),
    custom=st.none() | st.floats(0, 100),
    worked=st.booleans(),
)
def test_recommendation_label_is_always_one_of_three(
    mrr: float | None,
    amounts: list[float] | None,
    paid: tuple[str, ...] | None,
    activated: tuple[str, ...] | None,
    employees: int | None,
    spend: dict[str, float] | None,
    autocapture: float | None,
    custom: float | None,
    worked: bool,
) -> None:
    acc = account(
        mrr=mrr,
        invoices=None if amounts is None else invoices(*amounts),
        paid_products=paid,
        activated_products=activated,
        employee_count=employees,
        product_spend=spend,
        autocapture_pct=autocapture,
        custom_event_pct=custom,
    )
    decision = recommend(acc, WORKED if worked else EMPTY, Policy(), NOW)
    recommendation = decision.inputs["recommendation"]
    if decision.fired:
        assert recommendation in ("disqualify", "nurture", "qualify")
        assert decision.traits["qualification"] == f"qualification.recommendation: {decision.reason}"
        assert decision.segments == (frozenset({"Nurture"}) if recommendation == "nurture" else frozenset())
    else:
        assert recommendation is None
        assert decision.unknown
    if mrr is None:
        assert recommendation != "qualify"
    assert set(decision.signals) <= set(SIGNALS)


def _low_spend(**more: Any) -> Account:
    # MRR 400, flat over three invoices: the "MRR under $500 with no growth" filter holds.
    return Account(
        id="acc_1",
        name="Rocket",
        updated_at=NOW,
        mrr=400,
        invoices=(Invoice("2026-08", 400), Invoice("2026-09", 400), Invoice("2026-10", 400)),
        paid_products=("product_analytics", "session_replay"),
        activated_products=("product_analytics", "session_replay", "feature_flags"),
        segments=frozenset({"AM referral"}),
        country="US",
        **more,
    )


@pytest.mark.parametrize(
    "trajectory",
    [
        {"harmonic_last_funding_date": date(2026, 10, 1)},  # funded 52 days ago
        {"harmonic_headcount": 300, "harmonic_headcount_180d": 150},  # hiring: +100 % in 180 days
    ],
    ids=["funding", "hiring"],
)
def test_the_growth_trajectory_override_sets_the_spend_filters_aside(trajectory: dict[str, Any]) -> None:
    """plg-lead-qualification.md, step 2: "Recent funding (`harmonic_last_funding_date`), aggressive
    hiring (compare `harmonic_headcount` vs `harmonic_headcount_180d`) [...] can qualify even if
    current spend is below threshold [...] They added a growth trajectory override for exactly this
    reason." Before, the low-spend quick filter disqualified such a company before its funding or
    hiring was read."""
    flat = recommend(_low_spend(), EMPTY, Policy(), NOW)
    assert flat.inputs["recommendation"] == "disqualify"
    assert flat.reason.startswith("disqualify: mrr 400 < 500 with no growth")
    rising = recommend(_low_spend(**trajectory), EMPTY, Policy(), NOW)
    assert rising.inputs["recommendation"] != "disqualify", rising.reason
    assert "growth trajectory override (" in rising.reason
    assert "set aside mrr 400 < 500 with no growth" in rising.reason


def test_the_override_leaves_the_credits_filter() -> None:
    """Only the filters on current spend are set aside: credits with 12+ months left and low burn
    still deprioritise."""
    credits = _low_spend(
        harmonic_last_funding_date=date(2026, 10, 1),
        startup_credits_total=100_000,
        startup_credits_used=1_000,
        startup_plan_ends_at=date(2028, 6, 1),
    )
    verdict = recommend(credits, EMPTY, Policy(), NOW)
    assert verdict.inputs["recommendation"] == "disqualify"
    assert "startup credits with" in verdict.reason and "mrr 400 < 500" not in verdict.reason


def _our_lead(status: str) -> AccountContext:
    """crm-sync's own product-led lead of the account, in `status` (a person's, once it moved)."""
    lead = Lead(
        "00Q9",
        NOW,
        status=status,
        sync_key="crm-sync-acc_1-1",
        routing_rule="product_led.mrr_band",
        lead_source="Product-led",
        owner_id="005TAM",
    )
    return AccountContext(leads=(lead,))


# A lead the rules would nurture: spend growing, MRR under $1,000.
GROWING_SMALL = {"mrr": 900, "invoices": invoices(500, 700, 900)}


@pytest.mark.parametrize(
    ("status", "expected", "segments"),
    [("In progress", "qualify", frozenset()), ("Nurturing", "nurture", frozenset({"Nurture"}))],
)
def test_the_recommendation_follows_the_decision_the_leads_owner_made(
    status: str, expected: str, segments: frozenset[str]
) -> None:
    """plg-lead-qualification.md, step 1: "If the answer is 'not yet,' change status to 'nurturing'
    and come back. If the answer is yes, change status to 'in progress' and move fast." Once the
    TAM moved crm-sync's lead there, the recommendation is theirs: crm-sync no longer writes its own
    "nurture" (and the Nurture segment) over a TAM's "in progress" (found by a handbook audit)."""
    assert label(account(**GROWING_SMALL)) == "nurture"  # what the rules alone say
    decision = recommend(account(**GROWING_SMALL), _our_lead(status), Policy(), NOW)
    assert decision.fired
    assert decision.inputs["recommendation"] == expected
    assert decision.reason.startswith(f"{expected}: decided by the lead's owner: lead 00Q9 status {status}")
    assert decision.segments == segments
    assert str(decision.traits["qualification"]).startswith(f"qualification.recommendation: {expected}: decided by")


@pytest.mark.parametrize("status", ["Open - Not Contacted", "Working - Contacted"])
def test_the_recommendation_is_the_rules_while_nobody_decided(status: str) -> None:
    """Open, or being worked without a decision yet: the rules' recommendation, as before."""
    decision = recommend(account(**GROWING_SMALL), _our_lead(status), Policy(), NOW)
    assert decision.inputs["recommendation"] == "nurture"
    assert "decided by" not in decision.reason


@pytest.mark.parametrize("full", [True, False], ids=["explain", "cycle"])
@pytest.mark.parametrize(
    ("status", "expected", "segments"),
    [
        ("In progress", "qualify", frozenset()),
        ("Nurturing", "nurture", frozenset({"Nurture"})),
        # Account Executive and Leads are the TAM's "yes" whatever the lead's status (found by a review)
        ("Open - Not Contacted", "qualify", frozenset()),
        ("Working - Contacted", "qualify", frozenset()),
    ],
)
def test_the_recommendation_follows_a_tam_who_qualifies_the_handbooks_way(
    full: bool, status: str, expected: str, segments: frozenset[str]
) -> None:
    """plg-lead-qualification.md, step 5: "Add yourself as the Account Executive in Vitally and use
    the 'Leads' segment to track it separately." That makes the account owned: no trigger routes it
    again, and the recommendation, asked only of a routed account, stayed the rules' "nurture"
    written before the TAM's decision (found by a review against the handbook, 2026-12-07). It is
    now asked of an account whose product-led lead its owner decided, routed or not."""
    taken = account(**GROWING_SMALL, key_roles={"Account Executive": "005TAM"}, segments=frozenset({"Leads"}))
    verdicts = {d.rule: d for d in evaluate_account(taken, _our_lead(status), Policy(), NOW, full=full)}
    assert [rule for rule, d in verdicts.items() if d.fired and rule.startswith("product_led.")] == []  # owned
    decision = verdicts["qualification.recommendation"]
    assert decision.fired and decision.inputs["recommendation"] == expected
    # "In progress" with the TAM as Account Executive and the Leads segment reads as the Vitally side says it
    why = f"lead 00Q9 status {status}" if status == "Nurturing" else "Account Executive 005TAM and segment Leads"
    assert decision.reason.startswith(f"{expected}: decided by the lead's owner: {why}")
    assert decision.segments == segments


@pytest.mark.parametrize("status", ["Open - Not Contacted", "Working - Contacted", "Disqualified"])
def test_an_owned_account_whose_lead_nobody_decided_asks_no_recommendation(status: str) -> None:
    """Owned, its lead open, worked or closed: nothing to qualify, as before (a cycle asks nothing)."""
    taken = account(**GROWING_SMALL, key_roles={"Account Executive": "005TAM"})
    verdicts = [d.rule for d in evaluate_account(taken, _our_lead(status), Policy(), NOW, full=False)]
    assert "qualification.recommendation" not in verdicts


def test_a_recommendation_with_nothing_known_says_so() -> None:
    """Size, products and trend unknown: no evidence to pass it, no potential shown (a review found
    "potential without an urgency signal" said of an account that showed none)."""
    unknown = account(mrr=600, invoices=invoices(600), employee_count=None, paid_products=None, activated_products=None)
    decision = recommend(unknown, EMPTY, Policy(), NOW)
    assert decision.inputs["recommendation"] == "nurture"
    assert decision.reason.startswith("nurture: too little known to pass or qualify it")
