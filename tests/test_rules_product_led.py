"""product_led.mrr_band with its guards (lead-routing-and-scoring.md, rules.md §1)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from core.model import Account
from rules import Decision, Policy
from rules.context import EMPTY
from rules.product_led import mrr_band as _mrr_band

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def mrr_band(acc: Account, policy: Policy, now: datetime) -> Decision:
    return _mrr_band(acc, EMPTY, policy, now)


def account(**kw: Any) -> Account:
    base: dict[str, Any] = {
        "id": "acc_1",
        "name": "Acme",
        "updated_at": NOW,
        "mrr": 812,
        "employee_count": 64,
        "user_count": 9,
        "country": "DE",
        "first_paid_at": date(2026, 6, 1),
    }
    base.update(kw)
    return Account(**base)


def test_mrr_band_fires_with_the_reason_of_rules_md() -> None:
    decision = mrr_band(account(), Policy(), NOW)
    assert decision.fired
    assert decision.reason == (
        "mrr 812 in [500, 1,667]; employees 64 > 50; users 9 > 7; country DE is ICP; "
        "paying 5 months (since first_paid_at) ≥ 3"
    )
    assert decision.segments == {"Product-led lead"}
    assert decision.team == "TAM"


@pytest.mark.parametrize(
    ("kw", "fired"),
    [
        ({"mrr": 500}, True),
        ({"mrr": 1667}, True),
        ({"mrr": 499.99}, False),
        ({"mrr": 1667.01}, False),
        ({"employee_count": 50}, False),
        ({"employee_count": 51}, True),
        ({"user_count": 7}, False),
        ({"user_count": 8}, True),
        ({"country": "BR"}, False),
        ({"country": "SG"}, True),  # tier 2 is ICP too
        ({"first_paid_at": date(2026, 8, 23)}, False),  # 2 months
        ({"first_paid_at": date(2026, 8, 22)}, True),  # exactly 3 months
        ({"key_roles": {"TAM": "u1"}}, False),
        ({"segments": frozenset({"AM Managed"})}, False),
        ({"segments": frozenset({"Active Trial"})}, False),
        ({"slack_channel": "#posthog-acme"}, False),
        ({"lead_disqualified_at": date(2026, 10, 1)}, False),  # 52 days: cool-off
        ({"lead_disqualified_at": date(2026, 8, 23)}, True),  # 91 days
    ],
)
def test_mrr_band_thresholds_and_guards(kw: dict[str, Any], fired: bool) -> None:
    decision = mrr_band(account(**kw), Policy(), NOW)
    assert decision.fired is fired, decision.reason


def test_mrr_band_unknown_inputs_are_named() -> None:
    decision = mrr_band(account(employee_count=None, first_paid_at=None), Policy(), NOW)
    assert not decision.fired
    assert decision.unknown == ("employee_count", "paying_months")
    assert "employees unknown" in decision.reason


def test_mrr_band_counts_paid_invoices_without_first_paid_at() -> None:
    from core.model import Invoice

    invoices = tuple(Invoice(f"2026-0{m}", 600) for m in (7, 8, 9))
    assert mrr_band(account(first_paid_at=None, invoices=invoices), Policy(), NOW).fired


def test_mrr_band_guard_is_reported() -> None:
    decision = mrr_band(account(key_roles={"Account Executive": "u9"}), Policy(), NOW)
    assert decision.guarded_by == "already owned (Account Executive key role)"


@pytest.mark.parametrize(
    ("first_paid", "today", "fired"),
    [
        (date(2026, 8, 31), date(2026, 11, 30), True),  # Aug 31 + 3 months = Nov 30 (add_months)
        (date(2026, 8, 31), date(2026, 11, 29), False),
        (date(2026, 11, 30), date(2027, 2, 28), True),  # Feb has no 30th: its last day
        (date(2023, 11, 29), date(2024, 2, 29), True),  # a leap year's Feb 29
        (date(2023, 11, 30), date(2024, 2, 28), False),  # ... which is the day, not Feb 28
    ],
)
def test_paying_3_months_is_reached_on_a_short_month_s_last_day(first_paid: date, today: date, fired: bool) -> None:
    """lead-routing-and-scoring.md, product-led 1: "has been paying for at least 3 months". The
    rules' calendar (`rules.base.add_months`: the roll-off window, the BDR window, the scheduler's
    month) says Aug 31 + 3 months = Nov 30, but `months_between` counted 2 months on Nov 30 (its
    day 30 < 31), so an account paying since a month's end waited for the 4th month. The account is
    this file's handbook example (rules.md §1), with only `first_paid_at` and the clock changed."""
    now = datetime(today.year, today.month, today.day, 12, tzinfo=UTC)
    decision = mrr_band(account(first_paid_at=first_paid, updated_at=now), Policy(), now)
    assert decision.fired is fired, decision.reason
