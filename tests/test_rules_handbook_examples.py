"""The handbook's own examples and the invariants the issue names, as executable checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from core.model import Account, Invoice, Lead
from rules import Policy
from rules.allocation import new_owner
from rules.context import EMPTY, LeadContext
from rules.policy import QualificationPolicy, ScoringPolicy
from rules.qualification import recommend
from rules.scoring import lead_score

NOW = datetime(2026, 11, 22, tzinfo=UTC)
RANK = {"disqualify": 0, "nurture": 1, "qualify": 2}


def invoices(*amounts: float) -> tuple[Invoice, ...]:
    return tuple(Invoice(f"2026-{month:02d}", amount) for month, amount in enumerate(amounts, start=8))


def account(**kw: Any) -> Account:
    base: dict[str, Any] = {
        "id": "acc_1",
        "name": "Acme",
        "updated_at": NOW,
        "paid_products": ("product_analytics", "session_replay"),
        "activated_products": ("product_analytics", "session_replay", "feature_flags"),
        "employee_count": 80,
        "autocapture_pct": 40,
        "custom_event_pct": 30,
        "actions_count": 5,
        "project_count": 1,
    }
    base.update(kw)
    return Account(**base)


def recommendation(acc: Account) -> str:
    decision = recommend(acc, EMPTY, Policy(qualification=QualificationPolicy()), NOW)
    assert decision.fired, decision.reason
    return str(decision.inputs["recommendation"])


def priority(acc: Account) -> tuple[int, float]:
    """How a TAM would order two leads: the recommendation, then the projected ARR it rests on."""
    decision = recommend(acc, EMPTY, Policy(qualification=QualificationPolicy()), NOW)
    projected = decision.inputs["projected_arr"]
    assert isinstance(projected, int | float)
    return RANK[str(decision.inputs["recommendation"])], float(projected)


def test_handbook_600_growing_30_percent_beats_flat_1200() -> None:
    """plg-lead-qualification.md: "A $600 MRR account growing 30% month over month is more
    interesting than a flat $1,200 account.\""""
    growing = account(
        mrr=600, invoices=invoices(355, 461.5, 600), product_spend={"product_analytics": 400, "session_replay": 200}
    )
    flat = account(
        mrr=1200, invoices=invoices(1200, 1200, 1200), product_spend={"product_analytics": 800, "session_replay": 400}
    )
    assert priority(growing) > priority(flat)
    # Both are "not yet" leads (under $1,000 MRR; flat with no path to $20k): neither is dropped.
    assert recommendation(growing) == recommendation(flat) == "nurture"


def test_handbook_negative_icp_score_does_not_stop_a_well_funded_engineering_company() -> None:
    """ "A -5 ICP score on a well-funded, engineer-heavy company should not stop you.\""""
    funded = account(
        mrr=1500,
        invoices=invoices(1000, 1250, 1500),
        product_spend={"product_analytics": 900, "session_replay": 600},
        icp_score=-5,
        employee_count=30,
        harmonic_last_funding_date=date(2026, 9, 1),
        harmonic_headcount=60,
        harmonic_headcount_180d=40,
    )
    assert recommendation(funded) == "qualify"


def lead(**kw: Any) -> Lead:
    base: dict[str, Any] = {"id": "00Q1", "system_modstamp": NOW, "status": "Open - Not Contacted"}
    base.update(kw)
    return Lead(**base)


EMPLOYEES = st.one_of(st.none(), st.integers(min_value=0, max_value=100_000))
REVENUE = st.one_of(st.none(), st.floats(min_value=0, max_value=1e12, allow_nan=False))
ROLES = st.one_of(st.none(), st.sampled_from(["engineering", "product", "leadership", "founder", "marketing", "other"]))
SUB_ROLES = st.one_of(
    st.none(), st.sampled_from(["data_science_engineer", "software_engineer", "ceo", "founder", "other"])
)
COUNTRIES = st.one_of(st.none(), st.sampled_from(["US", "DE", "SG", "PL", "BR", "IN", "GB"]))


def score(candidate: Lead) -> int:
    value = lead_score(candidate, LeadContext(), Policy(scoring=ScoringPolicy()), NOW).inputs["score"]
    assert isinstance(value, int)
    return value


@given(EMPLOYEES, REVENUE, ROLES, SUB_ROLES, COUNTRIES, st.data())
def test_score_never_decreases_when_one_component_improves(
    employees: int | None,
    revenue: float | None,
    role: str | None,
    sub_role: str | None,
    country: str | None,
    data: st.DataObject,
) -> None:
    base = lead(employees=employees, annual_revenue=revenue, role=role, sub_role=sub_role, country=country)
    before = score(base)
    assert 0 <= before <= 70
    improved = data.draw(
        st.sampled_from(
            [
                replace(base, employees=(employees or 0) + data.draw(st.integers(0, 10_000))),
                replace(base, annual_revenue=(revenue or 0) + data.draw(st.floats(0, 1e9, allow_nan=False))),
                replace(base, role="engineering"),
                replace(base, sub_role="software_engineer"),
                replace(base, country="US"),
            ]
        )
    )
    assert score(improved) >= before


OWNER_VALUES = {"US TAM", "US CSM", "EU TAM", "EU CSM", "Singapore TAM"}
PRODUCTS = ["product_analytics", "session_replay", "feature_flags", "surveys", "data_warehouse", "error_tracking"]


@given(
    mrr=st.floats(min_value=20_000 / 12, max_value=1e6, allow_nan=False),
    products=st.lists(st.sampled_from(PRODUCTS), max_size=6, unique=True),
    users=st.dictionaries(st.sampled_from(["US", "DE", "SG", "BR", "JP", "FR", "IN"]), st.integers(0, 50), max_size=5),
    country=st.sampled_from(["US", "DE", "SG", "BR", "JP", "GB"]),
)
def test_every_unowned_20k_account_gets_exactly_one_new_owner_value(
    mrr: float, products: list[str], users: dict[str, int], country: str
) -> None:
    decision = new_owner(
        account(mrr=mrr, paid_products=tuple(products), users_by_country=users, country=country), EMPTY, Policy(), NOW
    )
    assert decision.fired, decision.reason
    assert decision.traits["new_owner"] in OWNER_VALUES
    if decision.review:
        assert "review" in decision.reason
