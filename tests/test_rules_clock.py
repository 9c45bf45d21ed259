"""When the clock alone may change a verdict (rules/clock.py): the day each comparison of a date
with the rules' day says, and, over whole evaluations, that it is the first day what a plan reads
of the verdicts changes (found by judging the account on every day after)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from support import acted
from test_disqualified_statuses import strong_demo_request

from core.model import Account, Invoice, Lead, Opportunity
from rules import Policy, evaluate_account, evaluate_lead
from rules.base import add_months, months_between
from rules.clock import (
    changes_on,
    changes_on_month,
    changes_when_days_reach,
    changes_when_month_shift_reaches,
    changes_when_months_reach,
    holds_between,
    unwatched,
    watching,
)
from rules.context import AccountContext, LeadContext
from rules.demo import SCHEDULER_RULE
from rules.expressions import CustomTrigger, compile_trigger

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
POLICY = Policy()


# -- the helpers -----------------------------------------------------------------------------------


def test_outside_a_watch_nothing_is_collected_and_inside_the_earliest_day_after_today_is() -> None:
    changes_on(TODAY + timedelta(days=3))  # no watch: a no-op
    with watching(NOW) as horizon:
        assert horizon.day is None
        changes_on(TODAY)  # today or before: passed already
        changes_when_days_reach(TODAY - timedelta(days=100), 30)  # reached 70 days ago
        assert horizon.day is None
        changes_on(TODAY + timedelta(days=9))
        changes_when_days_reach(TODAY - timedelta(days=10), 5, 14, 90)  # 5 passed; 14 in 4 days
        changes_on(TODAY + timedelta(days=30))
        assert horizon.day == TODAY + timedelta(days=4)
        changes_on(TODAY + timedelta(days=1))
        assert horizon.day == TODAY + timedelta(days=1)


def test_a_count_stepping_at_instants_narrows_the_watch_to_the_latest_past_and_earliest_next_one() -> None:
    holds_between(NOW - timedelta(hours=3), NOW + timedelta(hours=5))  # no watch: a no-op
    with watching(NOW) as horizon:
        holds_between(None, None)
        assert (horizon.since, horizon.until) == (None, None)
        holds_between(NOW - timedelta(hours=3), NOW + timedelta(hours=5))
        holds_between(NOW - timedelta(hours=7), NOW + timedelta(days=2))  # wider: nothing narrower
        holds_between(NOW - timedelta(hours=1), None)
        holds_between(None, NOW)  # now or before is no next step
        assert (horizon.since, horizon.until) == (NOW - timedelta(hours=1), NOW + timedelta(hours=5))
        assert horizon.day is None
        horizon.clear()
        assert (horizon.since, horizon.until) == (None, None)
        holds_between(datetime(2026, 11, 20), datetime(2026, 11, 30))  # naive against an aware now
        assert horizon.since == horizon.until == NOW  # no window: judged at every cycle


def _in_another_thread(seen: list[object]) -> None:
    changes_on(TODAY + timedelta(days=1))  # no watch in this thread: a no-op
    seen.append("ran")


def test_a_watch_is_per_context_nested_and_per_thread() -> None:
    seen: list[object] = []
    with watching(NOW) as outer:
        with watching(NOW) as inner:
            changes_on(TODAY + timedelta(days=2))
        thread = threading.Thread(target=_in_another_thread, args=(seen,))
        thread.start()
        thread.join()
        changes_on(TODAY + timedelta(days=5))
    assert inner.day == TODAY + timedelta(days=2)
    assert outer.day == TODAY + timedelta(days=5)  # neither the nested watch's day nor the thread's
    assert seen == ["ran"]


def test_nothing_is_collected_while_unwatched_and_the_watch_goes_on_after() -> None:
    with watching(NOW) as horizon:
        with unwatched():
            changes_on(TODAY + timedelta(days=1))
            holds_between(None, NOW + timedelta(hours=1))
        assert horizon.day is None and horizon.until is None
        changes_on(TODAY + timedelta(days=5))
    assert horizon.day == TODAY + timedelta(days=5)


def test_days_beyond_the_calendar_are_never_reached() -> None:
    with watching(NOW) as horizon:
        changes_when_days_reach(date(9999, 12, 30), 5)
        changes_when_months_reach(date(9999, 11, 30), 3)
        changes_when_month_shift_reaches(date(9999, 12, 31), -2)
        changes_on_month(10_000 * 12 + 1)
    assert horizon.day is None


@given(start=st.dates(date(2000, 1, 1), date(2040, 12, 31)), count=st.integers(-30, 30))
def test_the_months_count_becomes_count_on_the_day_noted(start: date, count: int) -> None:
    """`rules.base.months_between` from `start` is `count` from the day noted on, and less the day
    before (add_months clamps: from Aug 31, Nov 30 is 3 months)."""
    today = add_months(start, count) - timedelta(days=40)
    with watching(datetime.combine(today, datetime.min.time(), tzinfo=UTC)) as horizon:
        changes_when_months_reach(start, count)
    day = horizon.day
    assert day is not None
    assert months_between(start, day) == count
    assert months_between(start, day - timedelta(days=1)) < count


@given(day=st.dates(date(2000, 1, 1), date(2040, 12, 31)), months=st.integers(-12, 12))
def test_a_month_shift_reaches_a_day_on_the_first_day_noted(day: date, months: int) -> None:
    """`day <= add_months(d, months)` holds from the day noted on, and not the day before."""
    today = day - timedelta(days=450)
    with watching(datetime.combine(today, datetime.min.time(), tzinfo=UTC)) as horizon:
        changes_when_month_shift_reaches(day, months)
    first = horizon.day
    assert first is not None
    assert add_months(first, months) >= day
    assert add_months(first - timedelta(days=1), months) < day


def test_a_month_is_counted_as_year_times_twelve_plus_month() -> None:
    with watching(NOW) as horizon:
        changes_on_month(2027 * 12 + 1)
    assert horizon.day == date(2027, 1, 1)


# -- whole evaluations: the day noted is the first day a plan reads something else -----------------


def _first_change(account: Account, ctx: AccountContext, days: int = 800) -> date | None:
    """The first day after today on which what a plan reads of the account's verdicts differs."""
    today = acted(evaluate_account(account, ctx, POLICY, NOW, full=False))
    for n in range(1, days):
        if acted(evaluate_account(account, ctx, POLICY, NOW + timedelta(days=n), full=False)) != today:
            return TODAY + timedelta(days=n)
    return None


def _noted(account: Account, ctx: AccountContext) -> date | None:
    with watching(NOW) as horizon:
        evaluate_account(account, ctx, POLICY, NOW, full=False)
    return horizon.day


# In the product-led MRR band, paying for more than 3 months: product_led.mrr_band fires unless
# something holds the account back.
BAND: dict[str, Any] = {"mrr": 900, "employee_count": 64, "user_count": 9, "country": "DE"}


def _account(**kw: Any) -> Account:
    return Account(**{"id": "acc_1", "name": "Acme", "updated_at": NOW, **kw})


def _lead(status: str, changed: date, **kw: Any) -> Lead:
    moment = datetime.combine(changed, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    base: dict[str, Any] = {
        "id": "00QA",
        "system_modstamp": moment,
        "created_date": moment - timedelta(days=30),
        "status": status,
        "lead_source": "Product-led",
        "owner_id": "005T",
        "vitally_account_id": "acc_1",
        "sync_key": "crm-sync-acc_1-1",
        "routing_rule": "product_led.mrr_band",
    }
    return Lead(**{**base, **kw})


def _opportunity(stage: str, closed: date, reason: str | None = None) -> Opportunity:
    return Opportunity(
        id="006A", account_id="001A", stage_name=stage, close_date=closed, loss_reason=reason, owner_id="005T"
    )


def _case(name: str) -> tuple[Account, AccountContext, date]:
    """An account, its context, and the day the handbook says its verdicts change."""
    ago = TODAY - timedelta(days=10)
    if name == "disqualified lead's cool-off":  # a person's "no": 90 days before a signal routes again
        over = ago + timedelta(days=POLICY.guards.cool_off_days)
        return _account(**BAND, first_paid_at=date(2025, 1, 5)), AccountContext((_lead("Disqualified", ago),)), over
    if name == "conversion without an opportunity":
        lead = _lead("Closed - Converted", ago, is_converted=True, converted_date=ago)
        over = ago + timedelta(days=POLICY.guards.converted_hold_days)
        return _account(**BAND, first_paid_at=date(2025, 1, 5)), AccountContext((lead,)), over
    if name == "opportunity lost after a conversion":  # a person's "no" on the deal: the cool-off
        lead = _lead("Closed - Converted", ago, is_converted=True, converted_date=ago, converted_opportunity_id="006A")
        lost = AccountContext((lead,), (_opportunity("Closed Lost", ago, "Price"),))
        over = ago + timedelta(days=POLICY.guards.cool_off_days)
        return _account(**BAND, first_paid_at=date(2025, 1, 5)), lost, over
    if name == "paying months":  # paying since a month ago: 3 months on the same day two months on
        paid = add_months(TODAY, -1)
        return _account(**BAND, first_paid_at=paid), AccountContext(()), add_months(paid, 3)
    if name == "closed won nurture":  # the TAE nurtures for 12 months after the close
        closed = date(2026, 5, 31)
        won = AccountContext((), (_opportunity("Closed Won", closed),))
        return _account(mrr=3000, paid_products=("Product analytics",), country="US"), won, add_months(closed, 12)
    if name == "closed lost, unresponsive":  # a BDR's window: closed 4 to 6 months ago
        closed = date(2026, 7, 31)
        lost = AccountContext((), (_opportunity("Closed Lost", closed, "Unresponsive"),))
        return _account(mrr=100), lost, date(2026, 12, 1)  # Dec 1 is the first day 4 months after Jul 31
    if name == "startup plan rolling off":  # ends within the next two months
        ends = date(2027, 3, 31)
        account = _account(plan="Startup", startup_plan_ends_at=ends, invoices=(Invoice("2026-10", 2000.0),))
        return account, AccountContext(()), date(2027, 1, 31)
    if name == "startup plan ended":  # rolling off now; not once the plan has ended
        ends = TODAY + timedelta(days=20)
        account = _account(plan="Startup", startup_plan_ends_at=ends, invoices=(Invoice("2026-10", 2000.0),))
        return account, AccountContext(()), ends + timedelta(days=1)
    if name == "first bill":  # an onboarding lead while the first bill is at most 3 months old
        account = _account(business_email=True, mrr=150, invoices=(Invoice("2026-10", 150.0),))
        assert POLICY.onboarding.first_bill_max_age_months == 3
        return account, AccountContext(()), date(2027, 2, 1)  # 3 months old in January, 4 in February
    if name == "funding trajectory":  # a small company funded within the year can still grow
        funded = TODAY - timedelta(days=20)
        invoices = tuple(Invoice(month, 520.0) for month in ("2026-08", "2026-09", "2026-10"))
        account = _account(
            mrr=520, employee_count=10, user_count=9, country="DE", icp_score=12, plan="Scale", invoices=invoices,
            harmonic_last_funding_date=funded, paid_products=("Product analytics",),
            product_spend={"Product analytics": 520.0},
        )  # fmt: skip
        return account, AccountContext(()), funded + timedelta(days=POLICY.qualification.funding_within_days + 1)
    if name == "startup credits' months left":  # a year or more of credits at a low burn: not yet
        ends = add_months(TODAY, POLICY.qualification.credits_months_left + 2)  # 14 months
        invoices = tuple(Invoice(month, 520.0) for month in ("2026-08", "2026-09", "2026-10"))
        account = _account(
            mrr=520, employee_count=60, user_count=9, country="DE", icp_score=12, plan="Scale", invoices=invoices,
            paid_products=("Product analytics",), product_spend={"Product analytics": 520.0},
            activated_products=("Feature flags",),  # a lever: flat spend without one is passed on anyway
            startup_credits_total=10_000.0, startup_credits_used=100.0, startup_plan_ends_at=ends,
        )  # fmt: skip
        return account, AccountContext(()), date(2027, 1, 23)  # 11 months left: 2027-01-23 → 2028-01-22
    if name == "big fish":  # a signup of 1,000+ employees within 14 days
        account = _account(employee_count=2500, created_at=NOW - timedelta(days=3))
        return account, AccountContext(()), TODAY + timedelta(days=POLICY.routing.big_fish_days + 1 - 3)
    if name == "fundraise":  # $0 spend, funded within 90 days
        funded = TODAY - timedelta(days=20)
        account = _account(mrr=0, user_count=5, harmonic_last_funding_date=funded)
        return account, AccountContext(()), funded + timedelta(days=POLICY.zero_spend.fundraise_days + 1)
    if name == "low usage":  # a BDR's low-usage org, once signed up 90 days ago
        account = _account(
            mrr=4, user_count=1, employee_count=60, business_email=True, created_at=NOW - timedelta(days=30)
        )
        return account, AccountContext(()), TODAY + timedelta(days=POLICY.low_usage.min_age_days - 30)
    if name == "circle back each quarter":  # a growing account's task, once per quarter
        invoices = (Invoice("2026-08", 300.0), Invoice("2026-09", 400.0), Invoice("2026-10", 500.0))
        assert POLICY.onboarding.task_period == "quarter"
        onboarding = frozenset({POLICY.onboarding.segment})
        return _account(mrr=500, invoices=invoices, segments=onboarding), AccountContext(()), date(2027, 1, 1)
    if name == "onboarding window":  # a new payer's circle back, until its first bill is 4 months old
        invoices = (Invoice("2026-08", 300.0), Invoice("2026-09", 400.0), Invoice("2026-10", 500.0))
        assert POLICY.onboarding.first_bill_max_age_months == 3
        return _account(mrr=500, invoices=invoices), AccountContext(()), date(2026, 12, 1)
    raise AssertionError(name)


CASES = (
    "disqualified lead's cool-off",
    "conversion without an opportunity",
    "opportunity lost after a conversion",
    "paying months",
    "closed won nurture",
    "closed lost, unresponsive",
    "startup plan rolling off",
    "startup plan ended",
    "first bill",
    "circle back each quarter",
    "onboarding window",
    "funding trajectory",
    "startup credits' months left",
    "big fish",
    "fundraise",
    "low usage",
)


def test_each_date_the_handbook_counts_is_noted_on_the_day_the_plan_changes() -> None:
    for name in CASES:
        account, ctx, day = _case(name)
        first = _first_change(account, ctx)
        assert first is not None, name  # the case really changes by the clock
        assert (first, _noted(account, ctx)) == (day, day), name


def test_a_demo_requests_block_after_a_company_disqualification_ends_on_the_day_noted() -> None:
    """The instant scheduler is not shown while a lead of the company was disqualified within the
    last month (on or after the same day a month ago): disqualified on 10 November, the block holds
    through 10 December and ends on the 11th, the day noted (a lead's judgement holds until then)."""
    lead = strong_demo_request(Company="Acme", Vitally_Account_Id__c=None)  # shown unless a block holds
    assert POLICY.demo.disqualified_block_months == 1
    context = LeadContext(company_disqualified_at=date(2026, 11, 10))

    def shown(day: date) -> bool:
        when = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
        return next(d for d in evaluate_lead(lead, context, POLICY, when) if d.rule == SCHEDULER_RULE).fired

    with watching(NOW) as horizon:
        evaluate_lead(lead, context, POLICY, NOW)
    assert horizon.day == date(2026, 12, 11)
    assert not shown(date(2026, 12, 10)) and shown(date(2026, 12, 11))
    with watching(NOW) as horizon:  # no disqualification: no day
        evaluate_lead(lead, LeadContext(), POLICY, NOW)
    assert horizon.day is None


def test_a_custom_triggers_days_since_created_says_when_its_when_may_change_not_its_text() -> None:
    """`days_since_created` grows every day at `created_at`'s time of day: read by `when` in
    `days_since_created < 31` of an account 30 days old, the verdict holds until the count becomes 31
    (the same time tomorrow) and changes then; read by the reason template only, the text counts a
    day more but what a plan reads (`support.acted`) stays the same, and nothing is said."""
    account = Account(id="a", name="A", updated_at=NOW, created_at=NOW - timedelta(days=30), mrr=900.0)
    by_when = compile_trigger(
        CustomTrigger(id="custom.young", team="TAM", when="days_since_created < 31", reason="young"), policy=POLICY
    )
    by_text = compile_trigger(
        CustomTrigger(id="custom.big", team="TAM", when="mrr > 500", reason="{days_since_created} days old"),
        policy=POLICY,
    )
    assert by_when.clock_steps == {"days_since_created": (31,)} and by_text.clock_steps == {}
    tomorrow = NOW + timedelta(days=1)
    with watching(NOW) as horizon:
        fired = by_when.evaluate(account, AccountContext(), NOW)
    assert (horizon.day, horizon.since, horizon.until) == (None, None, tomorrow)
    assert fired.fired and by_when.evaluate(account, AccountContext(), tomorrow - timedelta(microseconds=1)).fired
    assert not by_when.evaluate(account, AccountContext(), tomorrow).fired
    with watching(NOW) as horizon:
        today = by_text.evaluate(account, AccountContext(), NOW)
        assert horizon.day is None and horizon.until is None
        changes_on(TODAY + timedelta(days=9))  # the watch goes on after the text
    later = by_text.evaluate(account, AccountContext(), tomorrow)
    assert (today.reason, later.reason) == ("30 days old", "31 days old")
    assert acted([today]) == acted([later])
    assert horizon.day == TODAY + timedelta(days=9)


_OPERATORS = ("<", "<=", ">", ">=", "==", "!=")


@given(
    variable=st.sampled_from(("days_since_created", "paying_months")),
    comparisons=st.lists(
        st.tuples(
            st.sampled_from(_OPERATORS),
            st.integers(-3, 14) | st.sampled_from((2.5, 10.5, -0.5)),
            st.booleans(),
        ),
        min_size=1,
        max_size=2,
    ),
    joined=st.sampled_from((" and ", " or ")),
    age_minutes=st.integers(-2 * 1440, 14 * 1440),
    now_minutes=st.integers(0, 1439),
)
def test_a_triggers_verdict_holds_over_its_window_and_changes_at_its_end_when_it_compares_a_count(
    variable: str, comparisons: list[tuple[str, float, bool]], joined: str, age_minutes: int, now_minutes: int
) -> None:
    """For `when` comparing `days_since_created` or `paying_months` with numbers (either side, any
    of the six comparisons, joined by `and` / `or`), the verdict is the same over the window the
    watch says (`sync.incremental.clock_window`): at its start, at instants inside and just before
    its end. For one comparison the window is exact: the verdict differs at its end."""
    from sync.incremental import clock_window

    terms = [f"{variable} {op} {number}" if left else f"{number} {op} {variable}" for op, number, left in comparisons]
    trigger = compile_trigger(CustomTrigger(id="custom.t", team="TAM", when=joined.join(terms), reason="r"))
    now = datetime.combine(TODAY, datetime.min.time(), tzinfo=UTC) + timedelta(minutes=now_minutes)
    since = now - timedelta(minutes=age_minutes)
    account = Account(id="a", name="A", updated_at=NOW, created_at=since, first_paid_at=since.date())

    def fired(at: datetime) -> bool:
        return trigger.evaluate(account, AccountContext(), at).fired

    with watching(now) as horizon:
        verdict = fired(now)
    start, end = clock_window(now, until=horizon.day, since=horizon.since, until_at=horizon.until)
    assert start <= now < end
    last = min(end, now + timedelta(days=3 * 365)) - timedelta(microseconds=1)
    for at in (start, last, start + (last - start) / 3, start + (last - start) * 2 / 3):
        assert fired(at) == verdict, (at, start, end)
    if len(comparisons) == 1 and end.year < 9999:  # each step of one comparison changes it
        assert fired(end) != verdict, (start, end)
