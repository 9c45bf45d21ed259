"""Routing and allocation where the handbook's ranges meet, and the guard segments the handbook
names.

plg-lead-qualification.md (step 4: "Check segments (TAM/CSM Candidate, Annual Plan, Active Trial)")
and sales-handover.md ("Segments (e.g. TAM/CSM Candidate, $20k MRR, Active Trial, Active
Self-serve Trial, Annual Plan, etc.)") list `TAM/CSM Candidate` and `$20k MRR` among the signs
that someone already works an account: a routing trigger must not make it a lead. But crm-sync
itself puts a $20k+ account without an owner in `TAM/CSM Candidate` (`allocation.new_owner`), and
the product-led band's top (MRR 1,667) is ARR 20,004: the handbook routes that account (its cases
say the band's top fires) and allocates it. Guarding on crm-sync's own segment would route it on
the first cycle and hold it on the next, taking its lead's segment away; so the segment guards only
while allocation does not put the account there itself, as crm-sync's own open lead is no guard.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from core.model import Account, Invoice
from rules import Policy, evaluate_account
from rules.base import Decision
from rules.context import EMPTY

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
POLICY = Policy()
CANDIDATE = POLICY.allocation.segment


def account(**kw: Any) -> Account:
    """An account product_led.mrr_band routes: in the band, big enough, in an ICP country, paying
    for months, no owner."""
    base: dict[str, Any] = {
        "id": "acc_1",
        "name": "Acme",
        "updated_at": NOW,
        "mrr": 1200,
        "employee_count": 64,
        "user_count": 9,
        "country": "DE",
        "users_by_country": {"DE": 9},
        "first_paid_at": date(2026, 6, 1),
        "paid_products": ("product_analytics", "session_replay"),
        "activated_products": ("product_analytics", "session_replay", "feature_flags"),
        "invoices": tuple(Invoice(f"2026-{m:02d}", a) for m, a in enumerate((900, 1100, 1300, 1667), start=7)),
    }
    base.update(kw)
    return Account(**base)


def decisions(acc: Account, *, full: bool) -> dict[str, Decision]:
    return {d.rule: d for d in evaluate_account(acc, EMPTY, POLICY, NOW, full=full)}


def test_the_handbooks_guard_segments_are_the_defaults() -> None:
    assert {"TAM/CSM Candidate", "$20k MRR"} <= set(POLICY.guards.active_sales_segments)


@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize("segment", ["TAM/CSM Candidate", "$20k MRR"])
def test_an_account_someone_marked_is_not_routed(segment: str, full: bool) -> None:
    # ARR 14,400: no allocation. Also crm-sync's own candidate, once the account fell below $20k:
    # held until crm-sync takes its segment away (one cycle), never routed and held in turn.
    judged = decisions(account(segments=frozenset({segment})), full=full)
    band = judged["product_led.mrr_band"]
    assert not band.fired or not band.traits
    assert f"in active sales segment {segment}" in band.reason
    assert "allocation.new_owner" not in judged or not judged["allocation.new_owner"].fired


@pytest.mark.parametrize("full", [True, False])
def test_the_band_top_is_routed_and_allocated_and_stays_so_once_in_the_candidate_segment(full: bool) -> None:
    first = decisions(account(mrr=1667), full=full)  # ARR 20,004
    assert first["product_led.mrr_band"].fired
    assert first["allocation.new_owner"].fired
    assert CANDIDATE in first["allocation.new_owner"].segments
    # The next cycle: Vitally's Playbooks have put the account in both segments crm-sync set.
    segments = frozenset({CANDIDATE, POLICY.routing.product_led_segment})
    second = decisions(account(mrr=1667, segments=segments), full=full)
    for rule in ("product_led.mrr_band", "allocation.new_owner", "qualification.recommendation"):
        assert second[rule].fired, second[rule].reason
        assert second[rule].reason == first[rule].reason
        assert second[rule].segments == first[rule].segments
        assert second[rule].traits == first[rule].traits


@pytest.mark.parametrize("full", [True, False])
def test_with_allocation_switched_off_the_candidate_segment_is_a_persons_and_holds_routing(full: bool) -> None:
    policy = replace(POLICY, enabled={**POLICY.enabled, "allocation.new_owner": False})
    acc = account(mrr=1667, segments=frozenset({CANDIDATE}))
    judged = {d.rule: d for d in evaluate_account(acc, EMPTY, policy, NOW, full=full)}
    band = judged["product_led.mrr_band"]
    assert not band.traits
    assert f"in active sales segment {CANDIDATE}" in band.reason


@pytest.mark.parametrize("full", [True, False])
def test_a_switched_off_allocation_does_not_make_the_account_a_lead_for_the_onboarding_rules(full: bool) -> None:
    """`onboarding.lead` is held for an account that is "otherwise a lead" (routed, or allocated):
    with allocation switched off, no allocation is made, so nothing holds the onboarding lead."""
    # $20k+ from its first bill, a business email, unowned; too new and small for routing.
    acc = account(
        mrr=1700,
        employee_count=20,
        user_count=2,
        first_paid_at=date(2026, 11, 1),
        business_email=True,
        invoices=(Invoice("2026-11", 1700),),
    )
    on = {d.rule: d for d in evaluate_account(acc, EMPTY, POLICY, NOW, full=full)}
    policy = replace(POLICY, enabled={**POLICY.enabled, "allocation.new_owner": False})
    off = {d.rule: d for d in evaluate_account(acc, EMPTY, policy, NOW, full=full)}
    assert on["allocation.new_owner"].fired
    assert not any(d.fired and d.team == "TAM" and d.rule != "allocation.new_owner" for d in on.values())
    assert "otherwise a lead" in on["onboarding.lead"].reason  # allocation makes it a lead for a TAM
    assert off["onboarding.lead"].fired, off["onboarding.lead"].reason
