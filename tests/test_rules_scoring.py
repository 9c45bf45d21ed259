"""scoring.lead_score: the handbook's score out of 70 (lead-routing-and-scoring.md, rules.md §2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.model import Lead
from rules.base import LeadIntent
from rules.context import LeadContext
from rules.policy import Policy, ScoringPolicy
from rules.scoring import lead_score, score_components

NOW = datetime(2026, 11, 22, tzinfo=UTC)
POLICY = ScoringPolicy()


def lead(**kw: Any) -> Lead:
    base: dict[str, Any] = {
        "id": "00Q000000000001",
        "system_modstamp": NOW,
        "employees": 64,
        "annual_revenue": 12_000_000,
        "role": "engineering",
        "sub_role": "software_engineer",
        "country": "DE",
        "status": "Open - Not Contacted",
    }
    base.update(kw)
    return Lead(**base)


def points(name: str, **kw: Any) -> int:
    return next(c.points for c in score_components(lead(**kw), POLICY) if c.name == name)


def test_lead_score_fires_with_the_reason_of_the_brief() -> None:
    decision = lead_score(lead(), LeadContext(), Policy(scoring=POLICY), NOW)
    assert decision.rule == "scoring.lead_score"
    assert decision.record == "00Q000000000001"
    assert decision.fired
    assert decision.reason == (
        "employees 64 → 10; revenue 12,000,000 → 10; role engineering → 10; sub-role software_engineer → 10; "
        "country DE (tier 1) → 10; score 50/70"
    )
    assert decision.lead == LeadIntent(score=50)
    assert decision.unknown == ()


@pytest.mark.parametrize(
    ("employees", "expected"),
    [(0, 0), (1, 0), (10, 0), (11, 10), (999, 10), (1000, 20), (1001, 20), (250_000, 20)],
)
def test_score_components_employee_band_edges(employees: int, expected: int) -> None:
    """The handbook's table reads "11-1000 → 10" and "1000+ → 20": the two overlap at 1,000. "1000+"
    is 1,000 or more, as the revenue rows' "$100m+" (which scores $100m 20) and Big Fish's "1000+
    employees" (new_business.big_fish: ≥ 1,000) read it, so 1,000 employees score 20."""
    assert points("employees", employees=employees) == expected


@pytest.mark.parametrize(
    ("revenue", "expected"),
    [
        (0, 0),
        (999_999, 0),
        (999_999.99, 0),
        (1_000_000, 5),
        (9_999_999, 5),
        (10_000_000, 10),
        (99_999_999, 10),
        (100_000_000, 20),
        (5_000_000_000, 20),
    ],
)
def test_score_components_revenue_band_edges(revenue: float, expected: int) -> None:
    assert points("annual_revenue", annual_revenue=revenue) == expected


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("engineering", 10),
        ("product", 10),
        ("leadership", 10),
        ("founder", 10),
        ("Founder", 10),
        ("leadership/founder", 10),  # the handbook's row as a picklist may spell it
        ("Leadership/Founder", 10),
        ("marketing", 5),
        ("other", 0),
        ("sales", 0),  # not in the list: "other", known
    ],
)
def test_score_components_role_points(role: str, expected: int) -> None:
    assert points("role", role=role) == expected
    assert "role" not in lead_score(lead(role=role), LeadContext(), Policy(scoring=POLICY), NOW).unknown


@pytest.mark.parametrize(
    ("sub_role", "expected"),
    [
        ("data_science_engineer", 10),
        ("project_engineer", 10),
        ("software_engineer", 10),
        ("web_engineer", 10),
        ("founder", 10),
        ("ceo", 10),
        ("founder/ceo", 10),
        ("other", 0),
        ("account_executive", 0),
    ],
)
def test_score_components_sub_role_points(sub_role: str, expected: int) -> None:
    assert points("sub_role", sub_role=sub_role) == expected


@pytest.mark.parametrize(
    ("country", "expected", "text"),
    [
        ("DE", 10, "country DE (tier 1) → 10"),
        ("United Kingdom", 10, "country GB (United Kingdom, tier 1) → 10"),
        ("UK", 10, "country GB (UK, tier 1) → 10"),
        ("USA", 10, "country US (USA, tier 1) → 10"),
        ("Deutschland", 10, "country DE (Deutschland, tier 1) → 10"),
        ("Netherlands", 5, "country NL (Netherlands, tier 2) → 5"),
        # As people type it into a CRM: the article is not part of the name.
        ("The Netherlands", 5, "country NL (The Netherlands, tier 2) → 5"),
        ("the UK", 10, "country GB (the UK, tier 1) → 10"),
        ("Theland", 0, "country 'Theland' not recognised → 0"),
        ("sg", 5, "country SG (tier 2) → 5"),
        ("BR", 0, "country BR (other) → 0"),
        ("Narnia", 0, "country 'Narnia' not recognised → 0"),
    ],
)
def test_score_components_country_tiers_accept_names(country: str, expected: int, text: str) -> None:
    component = next(c for c in score_components(lead(country=country), POLICY) if c.name == "country")
    assert (component.points, component.text) == (expected, text)


def test_lead_score_maximum_is_70() -> None:
    decision = lead_score(
        lead(employees=5000, annual_revenue=2e9, role="founder", sub_role="ceo", country="US"),
        LeadContext(),
        Policy(scoring=POLICY),
        NOW,
    )
    assert decision.lead == LeadIntent(score=70)
    assert decision.reason.endswith("score 70/70")


def test_scoring_policy_default_maxima_sum_to_max_score() -> None:
    maxima = (
        max(p for _, p in POLICY.employee_bands)
        + max(p for _, p in POLICY.revenue_bands)
        + max(POLICY.role_points.values())
        + max(POLICY.sub_role_points.values())
        + POLICY.tier1_points
    )
    assert maxima == POLICY.max_score == 70


def test_lead_score_all_unknown_is_zero_and_incomplete() -> None:
    decision = lead_score(
        lead(employees=None, annual_revenue=None, role=None, sub_role="  ", country=None),
        LeadContext(),
        Policy(scoring=POLICY),
        NOW,
    )
    assert decision.fired
    assert decision.lead == LeadIntent(score=0)
    assert decision.unknown == ("employees", "annual_revenue", "role", "sub_role", "country")
    assert decision.inputs["incomplete"] is True
    assert "employees unknown → 0" in decision.reason
    assert decision.reason.endswith(
        "score 0/70, incomplete (unknown: employees, annual_revenue, role, sub_role, country)"
    )


def test_lead_score_one_unknown_still_writes_the_partial_score() -> None:
    decision = lead_score(lead(annual_revenue=None), LeadContext(), Policy(scoring=POLICY), NOW)
    assert decision.fired
    assert decision.lead == LeadIntent(score=40)
    assert decision.unknown == ("annual_revenue",)
    assert "incomplete" in decision.reason


@pytest.mark.parametrize(
    ("kw", "fired", "reason_end"),
    [
        ({"lead_score": 50.0}, False, "score unchanged at 50/70"),
        ({"lead_score": 40.0}, True, "score 50/70 (was 40)"),
        ({"lead_score": None}, True, "score 50/70"),
        ({"is_converted": True, "lead_score": 10.0}, False, "lead converted"),
        ({"status": "Disqualified", "lead_score": 10.0}, False, "lead closed (status Disqualified)"),
        ({"status": "Converted", "lead_score": None}, False, "lead closed (status Converted)"),
        ({"status": None, "lead_score": None}, True, "score 50/70"),
    ],
)
def test_lead_score_fires_only_for_open_leads_whose_score_changed(
    kw: dict[str, Any], fired: bool, reason_end: str
) -> None:
    decision = lead_score(lead(**kw), LeadContext(), Policy(scoring=POLICY), NOW)
    assert decision.fired is fired
    assert decision.reason.endswith(reason_end)
    assert (decision.lead is not None) is fired


def test_lead_score_follows_a_changed_table() -> None:
    policy = ScoringPolicy(employee_bands=((0, 0), (50, 15)), tier2_countries=("DE",), tier1_countries=(), max_score=60)
    decision = lead_score(lead(), LeadContext(), Policy(scoring=policy), NOW)
    assert decision.lead == LeadIntent(score=15 + 10 + 10 + 10 + 5)
    assert "country DE (tier 2) → 5" in decision.reason
    assert decision.reason.endswith("score 50/60")


_texts = st.one_of(st.none(), st.text(max_size=12))
_leads = st.builds(
    Lead,
    id=st.just("00Q1"),
    system_modstamp=st.just(NOW),
    employees=st.one_of(st.none(), st.integers(min_value=0, max_value=10**7)),
    annual_revenue=st.one_of(st.none(), st.floats(min_value=0, max_value=1e13, allow_nan=False)),
    role=st.one_of(_texts, st.sampled_from(["engineering", "product", "leadership", "founder", "marketing"])),
    sub_role=st.one_of(_texts, st.sampled_from(["software_engineer", "ceo", "founder", "other"])),
    country=st.one_of(_texts, st.sampled_from(["US", "United Kingdom", "UK", "NL", "BR", "Georgia"])),
    lead_score=st.one_of(st.none(), st.integers(min_value=0, max_value=70).map(float)),
    is_converted=st.booleans(),
)


@given(_leads)
def test_lead_score_is_a_multiple_of_5_within_0_and_70(any_lead: Lead) -> None:
    decision = lead_score(any_lead, LeadContext(), Policy(scoring=POLICY), NOW)
    score = decision.inputs["score"]
    assert isinstance(score, int)
    assert 0 <= score <= 70
    assert score % 5 == 0
    assert decision.inputs["incomplete"] is bool(decision.unknown)
    if decision.fired:
        assert decision.lead == LeadIntent(score=score)
