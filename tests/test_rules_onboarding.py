"""onboarding.lead, onboarding.direct_handover and onboarding.circle_back, case by case (rules.md §5,
sales-handover.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from core.model import Account, Invoice, Lead, Opportunity
from rules import Policy, evaluate_account
from rules.base import TaskIntent
from rules.context import EMPTY, AccountContext
from rules.onboarding import circle_back, direct_handover, lead, task_period
from rules.policy import OnboardingPolicy

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
RULES = OnboardingPolicy()
MONTHS = ("2026-03", "2026-04", "2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10")


def invoices(*amounts: float) -> tuple[Invoice, ...]:
    """Invoices ending in 2026-10 (the last full month before NOW), oldest first."""
    return tuple(Invoice(month, amount) for month, amount in zip(MONTHS[-len(amounts) :], amounts, strict=True))


def account(**kw: Any) -> Account:
    base: dict[str, Any] = {"id": "acc_1", "name": "Acme", "updated_at": NOW}
    base.update(kw)
    return Account(**base)


ONBOARDING = frozenset({"Onboarding"})
STABLE = {
    "mrr": 1450.0,
    "invoices": invoices(1380, 1420, 1450),
    "product_spend": {"product_analytics": 667, "session_replay": 500, "feature_flags": 283},
}


# onboarding.lead


def onboarding_lead(acc: Account, ctx: AccountContext = EMPTY, *, otherwise_lead: bool = False) -> Any:
    return lead(acc, replace(ctx, otherwise_lead=otherwise_lead), Policy(onboarding=RULES), NOW)


@pytest.mark.parametrize(
    ("kw", "fired", "unknown"),
    [
        ({"invoices": invoices(100), "business_email": True}, True, ()),
        ({"invoices": invoices(99.99), "business_email": True}, False, ()),
        ({"invoices": invoices(99, 500), "business_email": True}, False, ()),  # the first bill counts
        ({"invoices": invoices(0, 0, 150), "business_email": True}, True, ()),  # free months are not bills
        ({"invoices": invoices(0, 0), "business_email": True}, False, ()),
        ({"invoices": (), "business_email": True}, False, ()),
        ({"invoices": invoices(100), "business_email": False}, False, ()),
        ({"invoices": invoices(100), "business_email": None}, False, ("business_email",)),
        ({"invoices": None, "business_email": True}, False, ("invoices",)),
        ({"invoices": None, "business_email": None}, False, ("invoices", "business_email")),
        ({"invoices": (Invoice("2026-08", 100),), "business_email": True}, True, ()),  # 3 months old
        ({"invoices": (Invoice("2026-07", 100),), "business_email": True}, False, ()),  # 4 months old
    ],
)
def test_lead_table(kw: dict[str, Any], fired: bool, unknown: tuple[str, ...]) -> None:
    decision = onboarding_lead(account(**kw))
    assert decision.fired is fired, decision.reason
    assert decision.unknown == unknown
    assert decision.segments == ({"Onboarding"} if fired else frozenset())
    assert decision.manages == {"Onboarding"}
    assert decision.team == "Onboarding"


def test_lead_reason_names_inputs_and_thresholds() -> None:
    decision = onboarding_lead(account(invoices=invoices(0, 120, 300), business_email=True))
    assert decision.reason == "first invoice 120 (2026-09) ≥ 100; first billed 2 months ago ≤ 3; business email"


def test_lead_unknown_business_email_is_named_in_the_reason() -> None:
    decision = onboarding_lead(account(invoices=invoices(150), business_email=None))
    assert decision.reason == "business email unknown"


@pytest.mark.parametrize(
    ("kw", "ctx", "otherwise", "guard"),
    [
        ({}, EMPTY, True, "a routing rule fired"),
        ({"key_roles": {"Account Executive": "u1"}}, EMPTY, False, "already owned (Account Executive key role)"),
        ({"key_roles": {"TAM": "u1"}}, EMPTY, False, "already owned (TAM key role)"),
        ({"segments": frozenset({"AM Managed"})}, EMPTY, False, "in segment AM Managed"),
        ({"segments": frozenset({"Active Trial"})}, EMPTY, False, "in segment Active Trial"),
        ({}, AccountContext(leads=(Lead("00Q1", NOW, status="Open"),)), False, "open lead 00Q1 in Salesforce"),
        (
            {},
            AccountContext(opportunities=(Opportunity("006A", "001A", "Discovery", None, None, "u1"),)),
            False,
            "open opportunity 006A in Salesforce",
        ),
    ],
)
def test_lead_not_when_otherwise_a_lead(kw: dict[str, Any], ctx: AccountContext, otherwise: bool, guard: str) -> None:
    acc = account(invoices=invoices(150), business_email=True, **kw)
    decision = onboarding_lead(acc, ctx, otherwise_lead=otherwise)
    assert decision.fired is False
    assert decision.guarded_by == guard
    assert decision.reason.endswith(f"; but otherwise a lead: {guard}")
    assert decision.segments == frozenset()


def test_lead_closed_lead_does_not_make_it_otherwise_a_lead() -> None:
    ctx = AccountContext(leads=(Lead("00Q1", NOW, status="Disqualified"),))
    assert onboarding_lead(account(invoices=invoices(150), business_email=True), ctx).fired is True


def test_lead_keeps_the_segment_while_a_specialist_works_the_account() -> None:
    acc = account(invoices=invoices(150), business_email=True, key_roles={"Onboarding Specialist": "u9"})
    decision = onboarding_lead(acc)
    assert decision.fired is True
    assert decision.segments == {"Onboarding"}
    assert decision.reason.endswith("; with onboarding specialist u9")


def test_lead_first_bill_can_include_free_months_when_configured() -> None:
    rules = OnboardingPolicy(first_bill_skips_zero=False)
    decision = lead(account(invoices=invoices(0, 150), business_email=True), EMPTY, Policy(onboarding=rules), NOW)
    assert decision.fired is False
    assert "first invoice 0 (2026-09) < 100" in decision.reason


# onboarding.direct_handover


def handover(acc: Account, ctx: AccountContext = EMPTY, rules: OnboardingPolicy = RULES) -> Any:
    return direct_handover(acc, ctx, Policy(onboarding=rules), NOW)


def test_direct_handover_reason_names_every_check() -> None:
    decision = handover(account(**STABLE))
    assert decision.fired is True
    assert decision.reason == (
        "in onboarding (first billed 3 months ago ≤ 3); mrr 1,450 > 1,000; last 3 invoices 1,380–1,450 within "
        "25 %; no spike; largest product product_analytics 46 % of spend"
    )
    assert decision.team == "TAE"
    assert decision.traits == {"routing_reason": f"onboarding.direct_handover: {decision.reason}"}
    assert decision.segments == frozenset()


@pytest.mark.parametrize(
    ("mrr", "fired"),
    [(1000, False), (1000.01, True), (999, False), (5000, False)],  # 5,000 is a spike over ~1,400 invoices
)
def test_direct_handover_mrr_threshold(mrr: float, fired: bool) -> None:
    decision = handover(account(**{**STABLE, "mrr": mrr, "invoices": invoices(1000, 1000, 1000)}))
    assert decision.fired is fired, decision.reason


@pytest.mark.parametrize(
    ("amounts", "fired", "text"),
    [
        ((1200, 1250, 1500), True, "last 3 invoices 1,200–1,500 within 25 %"),  # max/min exactly 1.25
        ((1200, 1250, 1500.01), False, "last 3 invoices 1,200–1,500.01 vary 25.001 % > 25 %"),
        ((1500, 1200, 1300), True, "within 25 %"),  # order does not matter
        ((800, 1400, 1450), False, "last 3 invoices 800–1,450 vary 81.2 % > 25 %"),
        ((0, 1400, 1450), False, "include a month without spend"),
        ((1400, 1450), False, "only 2 invoices (need 3)"),
    ],
)
def test_direct_handover_stability_band(amounts: tuple[float, ...], fired: bool, text: str) -> None:
    decision = handover(account(**{**STABLE, "mrr": 1450, "invoices": invoices(*amounts)}))
    assert decision.fired is fired, decision.reason
    assert text in decision.reason


def test_direct_handover_band_is_configurable() -> None:
    acc = account(**{**STABLE, "invoices": invoices(1000, 1100, 1450)})
    assert handover(acc).fired is False
    assert handover(acc, rules=OnboardingPolicy(stability_band=1.5)).fired is True


@pytest.mark.parametrize(
    ("amounts", "mrr", "fired", "text"),
    [
        # A step up: the three stable months are each more than 2× the months before them.
        ((300, 300, 300, 1400, 1450, 1420), 1450, False, "spike: 2026-08 invoice 1,400 > 2× median 300"),
        # Exactly 2× the median of the months before is not a spike.
        ((700, 700, 700, 1400, 1400, 1400), 1400, True, "no spike"),
        # The step is old enough: the months before the recent ones are mostly high already.
        ((300, 300, 1400, 1420, 1400, 1450, 1420), 1450, True, "no spike"),
        # The current month runs away from the invoices.
        ((1400, 1450, 1420), 3000, False, "spike: mrr 3,000 > 2× median 1,420 of the last 3 invoices"),
        ((1400, 1450, 1420), 2840, True, "no spike"),
    ],
)
def test_direct_handover_spike(amounts: tuple[float, ...], mrr: float, fired: bool, text: str) -> None:
    # In the Onboarding segment: the longer histories' first bills are older than a new payer's.
    decision = handover(account(**{**STABLE, "mrr": mrr, "invoices": invoices(*amounts)}, segments=ONBOARDING))
    assert decision.fired is fired, decision.reason
    assert text in decision.reason


def test_direct_handover_spike_factor_is_configurable() -> None:
    acc = account(**{**STABLE, "mrr": 3000, "invoices": invoices(1400, 1450, 1420)})
    assert handover(acc, rules=OnboardingPolicy(spike_factor=3)).fired is True


@pytest.mark.parametrize(
    ("spend", "fired", "text"),
    [
        ({"session_replay": 1160, "product_analytics": 290}, True, "largest product session_replay 80 % of spend"),
        (
            {"session_replay": 1160.1, "product_analytics": 289.9},
            False,
            "concentrated: session_replay 80.01 % of spend > 80 % (possible misconfiguration)",
        ),
        ({"session_replay": 1300, "product_analytics": 150}, False, "concentrated: session_replay 89.7 % of spend"),
        ({"feature_flags": 1450}, False, "concentrated: feature_flags 100 % of spend > 80 %"),
        ({}, False, "product spend empty"),
    ],
)
def test_direct_handover_concentration(spend: dict[str, float], fired: bool, text: str) -> None:
    decision = handover(account(**{**STABLE, "product_spend": spend}))
    assert decision.fired is fired, decision.reason
    assert text in decision.reason


def test_direct_handover_share_exactly_at_the_limit_is_not_concentrated() -> None:
    decision = handover(account(**{**STABLE, "product_spend": {"session_replay": 80, "surveys": 20}}))
    assert decision.fired is True, decision.reason


@pytest.mark.parametrize(
    ("kw", "unknown"),
    [
        ({"mrr": None}, ("mrr",)),
        ({"invoices": None}, ("invoices",)),
        ({"product_spend": None}, ("product_spend",)),
        ({"product_spend": {}}, ("product_spend",)),
    ],
)
def test_direct_handover_unknown_inputs_do_not_fire(kw: dict[str, Any], unknown: tuple[str, ...]) -> None:
    decision = handover(account(**{**STABLE, **kw}))
    assert decision.fired is False
    assert decision.unknown == unknown


@pytest.mark.parametrize(
    ("kw", "ctx", "guard"),
    [
        ({"key_roles": {"Account Executive": "u1"}}, EMPTY, "already owned (Account Executive key role)"),
        ({"segments": frozenset({"Annual Plan"})}, EMPTY, "in active sales segment Annual Plan"),
        ({}, AccountContext(leads=(Lead("00Q1", NOW, status="Open"),)), "open lead 00Q1 (Open) in Salesforce"),
    ],
)
def test_direct_handover_guarded_when_already_with_sales(kw: dict[str, Any], ctx: AccountContext, guard: str) -> None:
    decision = handover(account(**{**STABLE, **kw}), ctx)
    assert decision.fired is False
    assert decision.guarded_by == guard


# onboarding.circle_back


def circle(acc: Account, now: datetime = NOW, rules: OnboardingPolicy = RULES) -> Any:
    return circle_back(acc, EMPTY, Policy(onboarding=rules), now)


@pytest.mark.parametrize(
    ("mrr", "amounts", "fired"),
    [
        (640, (400, 520, 610), True),  # strictly increasing
        (1000, (400, 520, 610), True),  # at the threshold is still below the handover threshold
        (1000.01, (400, 520, 610), False),
        (640, (500, 700, 600), True),  # not increasing, but +20 % over 2 months
        (640, (500, 450, 599), False),  # +19.8 %, not increasing
        (640, (500, 400, 600), True),  # exactly +20 %
        (640, (600, 600, 600), False),  # flat
        (640, (700, 650, 610), False),  # shrinking
        (90, (60, 80, 99), False),  # too small to be worth a task
        (120, (60, 80, 100), True),
        (640, (520, 610), False),  # too little history
    ],
)
def test_circle_back_table(mrr: float, amounts: tuple[float, ...], fired: bool) -> None:
    decision = circle(account(mrr=mrr, invoices=invoices(*amounts)))
    assert decision.fired is fired, decision.reason
    assert (decision.task is not None) is fired


@pytest.mark.parametrize(("kw", "unknown"), [({"mrr": None}, ("mrr",)), ({"invoices": None}, ("invoices",))])
def test_circle_back_unknown_inputs_do_not_fire(kw: dict[str, Any], unknown: tuple[str, ...]) -> None:
    decision = circle(account(**{"mrr": 640, "invoices": invoices(400, 520, 610), **kw}))
    assert decision.fired is False
    assert decision.unknown == unknown


def test_circle_back_task_for_the_specialist() -> None:
    acc = account(mrr=640, invoices=invoices(400, 520, 610), key_roles={"Onboarding Specialist": "u9"})
    decision = circle(acc)
    assert decision.reason == (
        "in onboarding (Onboarding Specialist u9); mrr 640 ≤ 1,000; last invoice 610 ≥ 100; "
        "last 3 invoices 400 → 520 → 610 strictly increasing; growth 52.5 % over 2 months ≥ 20 %"
    )
    assert decision.task == TaskIntent(
        key="onboarding.circle_back:acc_1:2026-Q4",
        account_id="acc_1",
        title="Circle back: growing account",
        description=decision.reason,
        due=date(2026, 12, 22),
        assignee="u9",
        tags=("crm-sync",),
    )


def test_circle_back_task_unassigned_without_specialist() -> None:
    decision = circle(account(mrr=640, invoices=invoices(400, 520, 610)))
    assert decision.task is not None and decision.task.assignee is None


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (datetime(2026, 11, 22, 10, 0, tzinfo=UTC), "2026-12-22"),
        (datetime(2026, 12, 15, 23, 0, tzinfo=UTC), "2027-01-14"),
        (datetime(2027, 2, 1, 0, 0, tzinfo=UTC), "2027-03-03"),
    ],
)
def test_circle_back_due_in_30_days(now: datetime, due: str) -> None:
    decision = circle(account(mrr=640, invoices=invoices(400, 520, 610), segments=ONBOARDING), now)
    assert decision.task is not None and decision.task.due.isoformat() == due


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 31, 23, 59, tzinfo=UTC), True),
        (datetime(2026, 11, 22, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC), True),
        (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), False),
        (datetime(2026, 9, 30, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC), False),
    ],
)
def test_circle_back_task_key_stable_within_a_quarter(first: datetime, second: datetime, same: bool) -> None:
    acc = account(mrr=640, invoices=invoices(400, 520, 610), segments=ONBOARDING)
    one, two = circle(acc, first).task, circle(acc, second).task
    assert one is not None and two is not None
    assert (one.key == two.key) is same


def test_circle_back_monthly_period_changes_the_task_key_every_month() -> None:
    acc = account(mrr=640, invoices=invoices(400, 520, 610), segments=ONBOARDING)
    rules = OnboardingPolicy(task_period="month")
    nov, dec = circle(acc, NOW, rules).task, circle(acc, datetime(2026, 12, 1, tzinfo=UTC), rules).task
    assert nov is not None and dec is not None
    assert nov.key == "onboarding.circle_back:acc_1:2026-11"
    assert dec.key == "onboarding.circle_back:acc_1:2026-12"


@pytest.mark.parametrize(
    ("now", "period", "expected"),
    [
        (datetime(2026, 1, 1, tzinfo=UTC), "quarter", "2026-Q1"),
        (datetime(2026, 3, 31, tzinfo=UTC), "quarter", "2026-Q1"),
        (datetime(2026, 4, 1, tzinfo=UTC), "quarter", "2026-Q2"),
        (datetime(2026, 11, 22, tzinfo=UTC), "quarter", "2026-Q4"),
        (datetime(2026, 2, 5, tzinfo=UTC), "month", "2026-02"),
    ],
)
def test_task_period_names_the_calendar_period(now: datetime, period: Any, expected: str) -> None:
    assert task_period(now, period) == expected


def test_circle_back_not_for_accounts_already_with_sales() -> None:
    acc = account(mrr=640, invoices=invoices(400, 520, 610), key_roles={"TAM": "u1"})
    decision = circle(acc)
    assert decision.fired is False
    assert decision.task is None
    assert decision.guarded_by == "already owned (TAM key role)"


@pytest.mark.parametrize("status", ["Working - Contacted", "Open - Not Contacted"])
def test_circle_back_not_while_crm_sync_s_own_lead_is_open(status: str) -> None:
    """A direct handover's lead (crm-sync's) is with a TAE; the MRR dipped to $990 while the
    invoices still grow: the specialist is not asked to circle back to an account Sales has (found
    by a review: the routing guard leaves crm-sync's own leads to the trigger that made them)."""
    ours = Lead(
        id="00Q9",
        system_modstamp=NOW,
        created_date=datetime(2026, 11, 1, tzinfo=UTC),
        status=status,
        sync_key="crm-sync-acc_1-1",
        routing_rule="onboarding.direct_handover",
        lead_source="Onboarding referral",
        vitally_account_id="acc_1",
    )
    acc = account(mrr=990, invoices=invoices(700, 850, 990), key_roles={"Onboarding Specialist": "u9"})

    decision = circle_back(acc, AccountContext(leads=(ours,)), Policy(onboarding=RULES), NOW)

    assert decision.fired is False and decision.task is None
    assert decision.guarded_by == "open lead 00Q9 in Salesforce"


# The onboarding team's scope (sales-handover.md is the onboarding specialists' page; in the
# accounts-overview flowchart a self-serve account reaches Sales only through Account review or an
# expansion trigger, never as an onboarding referral).

TWO_YEARS = tuple(Invoice(f"{y}-{m:02d}", 1200) for y, months in ((2025, 13), (2026, 11)) for m in range(1, months))
LONG_STANDING = {
    "mrr": 1200.0,
    "invoices": TWO_YEARS,
    "product_spend": {"product_analytics": 600, "session_replay": 600},
}


def test_a_long_standing_self_serve_customer_is_not_handed_over_as_an_onboarding_referral() -> None:
    """Two years of stable $1,200 a month, no onboarding segment or specialist: no TAE lead."""
    decision = handover(account(**LONG_STANDING))
    assert decision.fired is False
    assert decision.reason.startswith(
        "not in onboarding (not in segment Onboarding, no Onboarding Specialist, first billed 22 months ago > 3)"
    )
    assert decision.lead is None


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"segments": frozenset({"Onboarding"})}, "in onboarding (segment Onboarding)"),
        ({"key_roles": {"Onboarding Specialist": "u9"}}, "in onboarding (Onboarding Specialist u9)"),
    ],
)
def test_an_account_in_onboarding_is_handed_over_whatever_its_first_bill(kw: dict[str, Any], why: str) -> None:
    decision = handover(account(**LONG_STANDING, **kw))
    assert decision.fired is True, decision.reason
    assert decision.reason.startswith(why)


@pytest.mark.parametrize(("first", "fired"), [("2026-08", True), ("2026-07", False)])
def test_a_new_payer_skips_onboarding_within_the_first_bill_window(first: str, fired: bool) -> None:
    """A new payer (first billed at most `first_bill_max_age_months`, 3, ago) whose spend is high and
    stable from the start is the direct handover's case: "skipping onboarding"."""
    months = [month for month in ("2026-07", "2026-08", "2026-09", "2026-10") if month >= first]
    acc = account(**{**STABLE, "invoices": tuple(Invoice(month, 1400.0) for month in months)})
    assert handover(acc).fired is fired


def test_the_scope_can_be_switched_off() -> None:
    rules = OnboardingPolicy(onboarding_only=False)
    assert handover(account(**LONG_STANDING), rules=rules).fired is True
    growing = account(mrr=640, invoices=(*TWO_YEARS[:-3], *invoices(400, 520, 610)))
    assert circle(growing).fired is False
    assert circle(growing, NOW, rules).fired is True


def test_a_growing_self_serve_account_gets_no_circle_back_task_outside_onboarding() -> None:
    """The circle back is the specialist's own reminder ("set a task in Vitally assigned to
    yourself"): a long-standing account growing under the threshold gets none."""
    history = tuple(Invoice(f"2025-{m:02d}", 300) for m in range(1, 13))
    decision = circle(account(mrr=640, invoices=(*history, *invoices(400, 520, 610))))
    assert decision.fired is False and decision.task is None
    assert decision.reason.startswith("not in onboarding")


# "Not otherwise a lead" (accounts-overview.md): a lead by the criteria, held back, is not an
# onboarding lead instead. Found by two reviews against the handbook (2026-12-07): a TAM's "no" to
# crm-sync's product-led lead made the account an onboarding lead in the same cycle (segment,
# specialist drawn, task), and the first bill's age dropped it again weeks later.


def _band_payer(**kw: Any) -> Account:
    """A new payer product_led.mrr_band matches: MRR 600 for three months, 51 employees, 8 users, US."""
    base: dict[str, Any] = {
        "mrr": 600,
        "employee_count": 51,
        "user_count": 8,
        "country": "US",
        "first_paid_at": date(2026, 8, 22),
        "business_email": True,
        "invoices": invoices(600, 600, 600),
    }
    return account(**{**base, **kw})


def _their_no(days: int = 3) -> AccountContext:
    """crm-sync's product-led lead, disqualified by its TAM `days` days ago."""
    ours = Lead(
        id="00QA",
        system_modstamp=NOW,
        created_date=datetime(2026, 11, 1, tzinfo=UTC),
        status="Disqualified",
        status_since=datetime(2026, 11, 22 - days, 10, tzinfo=UTC),
        sync_key="crm-sync-acc_1-1",
        routing_rule="product_led.mrr_band",
        lead_source="Product-led",
        vitally_account_id="acc_1",
    )
    return AccountContext(leads=(ours,))


@pytest.mark.parametrize("full", [True, False], ids=["explain", "cycle"])
@pytest.mark.parametrize(
    ("acc", "ctx"),
    [
        (_band_payer(), _their_no()),
        (_band_payer(lead_disqualified_at=date(2026, 11, 19)), EMPTY),  # the Vitally trait says it
    ],
    ids=["lead-disqualified-in-salesforce", "trait-lead-disqualified-at"],
)
def test_an_account_held_by_the_cool_off_is_not_an_onboarding_lead(
    acc: Account, ctx: AccountContext, full: bool
) -> None:
    verdicts = {d.rule: d for d in evaluate_account(acc, ctx, Policy(), NOW, full=full)}
    assert [rule for rule, d in verdicts.items() if d.fired and rule != "lifecycle.stage"] == []
    onboarding = verdicts["onboarding.lead"]
    assert onboarding.guarded_by is not None
    assert onboarding.guarded_by.startswith("product_led.mrr_band matched, held back: ")
    assert "cool-off 90 days" in onboarding.reason


def test_a_new_payer_no_trigger_matches_is_still_an_onboarding_lead() -> None:
    """The same payer below the band's employee count: no trigger matches, onboarding.lead fires."""
    for full in (True, False):
        verdicts = evaluate_account(_band_payer(employee_count=20), EMPTY, Policy(), NOW, full=full)
        assert [d.rule for d in verdicts if d.fired and d.rule != "lifecycle.stage"] == ["onboarding.lead"]
