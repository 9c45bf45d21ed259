"""The `invoices` trait in whatever order the billing export lists it. Every rule reads the last
invoice as the latest month's ("had a last invoice greater than $1500", "… greater than $5000",
lead-routing-and-scoring.md; the onboarding team's first bill, stable and growing spend), and the
trait's list was read in the order it came: newest first, "the last invoice" was the oldest one
(found by a review against the handbook). The invoices are now ordered by month when an account
is parsed, on both of its paths (`parse_account` and the typed decoding from the stored JSON).
The trait's shape is the one tests/test_records_json.py and the sandbox use:
`[{"month": "YYYY-MM", "amount": n}, ...]`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from core.records import parse_account, parse_account_json
from rules import Policy
from rules.context import EMPTY
from rules.new_business import startup_credits
from rules.product_led import last_invoice, startup_rolloff

NOW = datetime(2026, 11, 22, tzinfo=UTC)
NEWEST_FIRST = [
    {"month": "2026-10", "amount": 6000},
    {"month": "2026-08", "amount": 700},
    {"month": "2026-09", "amount": 900},
]


def _raw(**traits: Any) -> dict[str, Any]:
    return {
        "id": "acc_inv",
        "name": "Invoices Inc",
        "createdAt": "2025-01-01T00:00:00.000Z",
        "updatedAt": "2026-11-20T09:00:00.000Z",
        "mrr": 800,
        "traits": {"invoices": NEWEST_FIRST, **traits},
        "keyRoles": [],
        "segments": [],
    }


def test_invoices_are_read_oldest_first_whatever_order_the_trait_lists_them() -> None:
    raw = _raw()
    parsed = parse_account(raw)
    typed = parse_account_json(json.dumps(raw))

    assert parsed.invoices is not None and [i.month for i in parsed.invoices] == ["2026-08", "2026-09", "2026-10"]
    assert typed == parsed  # the typed path orders them alike
    assert last_invoice(parsed) == 6000


def test_the_last_invoice_of_the_routing_triggers_is_the_latest_month_s() -> None:
    rolling_off = parse_account(_raw(plan="startup", startup_plan_ends_at=date(2026, 12, 15).isoformat()))
    credits = parse_account(_raw(startup_credits_total=50_000, startup_credits_used=40_000))

    rolloff = startup_rolloff(rolling_off, EMPTY, Policy(), NOW)
    used = startup_credits(credits, EMPTY, Policy(), NOW)

    assert rolloff.fired, rolloff.reason
    assert "last invoice 6,000 > 1,500" in rolloff.reason
    assert used.fired, used.reason
    assert "last invoice 6,000 > 5,000" in used.reason
