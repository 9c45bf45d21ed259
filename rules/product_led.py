"""Product-led routing: paying customers worth a Technical Account Manager's time
(lead-routing-and-scoring.md, product-led sales team)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from core.model import Account
from rules import clock
from rules.base import AccountRule, Decision, Rule, Team, add_months, fmt_num, months_between, per_policy
from rules.guards import Check, days_since, trigger_decision

if TYPE_CHECKING:
    from rules.context import AccountContext
    from rules.policy import Policy

__all__ = [
    "AM_REFERRAL",
    "FORECAST_SPIKE",
    "MRR_BAND",
    "SCALE_HIGH_ICP",
    "STARTUP_ROLLOFF",
    "am_referral",
    "forecast_spike",
    "last_invoice",
    "mrr_band",
    "paying_months",
    "scale_high_icp",
    "startup_rolloff",
]

TEAM: Team = "TAM"


def paying_months(account: Account, now: datetime) -> tuple[int | None, str]:
    """Months the account has been paying: from `first_paid_at`, else its paid invoices."""
    if account.first_paid_at is not None:
        return months_between(account.first_paid_at, now), "since first_paid_at"
    if account.invoices is not None:
        return sum(1 for inv in account.invoices if inv.amount > 0), "paid invoices"
    return None, ""


def _above(name: str, label: str, value: int | None, limit: int) -> Check:
    if value is None:
        return Check(name, None, f"{label} unknown")
    ok = value > limit
    return Check(name, ok, f"{label} {value} {'>' if ok else '≤'} {limit}")


def _checks(account: Account, policy: Policy, months: int | None, source: str) -> list[Check]:
    rules = policy.product_led
    checks: list[Check] = []
    mrr = account.mrr
    band = f"[{fmt_num(rules.mrr_min)}, {fmt_num(rules.mrr_max)}]"
    if mrr is None:
        checks.append(Check("mrr", None, "mrr unknown"))
    else:
        inside = rules.mrr_min <= mrr <= rules.mrr_max
        checks.append(Check("mrr", inside, f"mrr {fmt_num(mrr)} {'in' if inside else 'not in'} {band}"))
    checks.append(_above("employee_count", "employees", account.employee_count, rules.employees_above))
    checks.append(_above("user_count", "users", account.user_count, rules.users_above))
    country = account.country
    if country is None:
        checks.append(Check("country", None, "country unknown"))
    else:
        icp = country in _icp_countries(policy)
        checks.append(Check("country", icp, f"country {country} {'is' if icp else 'is not'} ICP"))
    if months is None:
        checks.append(Check("paying_months", None, "paying months unknown (no first_paid_at or invoices)"))
    else:
        ok = months >= rules.min_paying_months
        checks.append(
            Check(
                "paying_months",
                ok,
                f"paying {months} months ({source}) {'≥' if ok else '<'} {rules.min_paying_months}",
            )
        )
    return checks


@per_policy
def _icp_countries(policy: Policy) -> frozenset[str]:
    """`policy.icp_countries` (the property builds the set on every read)."""
    return policy.icp_countries


def _may_mrr_band(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """In the MRR band, with more employees and users than the floors (an unknown count is not more),
    in an ICP country."""
    rules = policy.product_led
    return (
        account.mrr is not None
        and rules.mrr_min <= account.mrr <= rules.mrr_max
        and (account.employee_count or 0) > rules.employees_above
        and (account.user_count or 0) > rules.users_above
        and account.country in _icp_countries(policy)
    )


def mrr_band(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """Customers with MRR between $500 and $1,667, more than 50 employees and 7 users, in an ICP
    country and paying for at least 3 months become a product-led lead for a TAM."""
    months, source = paying_months(account, now)
    if account.first_paid_at is not None:  # counted by the clock: paying long enough from that day on
        clock.changes_when_months_reach(account.first_paid_at, policy.product_led.min_paying_months)
    inputs: dict[str, object] = {
        "mrr": account.mrr,
        "employee_count": account.employee_count,
        "user_count": account.user_count,
        "country": account.country,
        "paying_months": months,
    }
    checks = _checks(account, policy, months, source)
    return _decide("product_led.mrr_band", account, ctx, policy, now, checks, inputs)


MRR_BAND: AccountRule = Rule("product_led.mrr_band", mrr_band, _may_mrr_band)


def _may_scale_high_icp(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A known ICP score at or above the threshold, on the Scale plan (a third of the accounts have
    the score: the plan is what rejects most of them)."""
    icp, plan = account.icp_score, account.plan
    return (
        icp is not None
        and icp >= policy.routing.high_icp_threshold
        and plan is not None
        and _same_plan(plan, policy.routing.scale_plan)
    )


def scale_high_icp(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """Customers with a high ICP score (10 or more) on the Scale plan become a product-led lead for a TAM."""
    routing = policy.routing
    checks = [
        _at_least("icp_score", "icp score", account.icp_score, routing.high_icp_threshold),
        _plan_is(account, routing.scale_plan),
    ]
    inputs: dict[str, object] = {"icp_score": account.icp_score, "plan": account.plan}
    return _decide("product_led.scale_high_icp", account, ctx, policy, now, checks, inputs)


SCALE_HIGH_ICP: AccountRule = Rule("product_led.scale_high_icp", scale_high_icp, _may_scale_high_icp)


def _may_startup_rolloff(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A known end of the startup plan, on the startup plan, with a last invoice above the floor."""
    routing = policy.routing
    plan, last = account.plan, last_invoice(account)
    return (
        account.startup_plan_ends_at is not None
        and plan is not None
        and _same_plan(plan, routing.startup_plan)
        and last is not None
        and last > routing.rolloff_last_invoice_above
    )


def startup_rolloff(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """Customers rolling off the startup plan in the next two months whose last invoice was more than
    $1,500 become a product-led lead for a TAM. "The next two months" are calendar months: the plan
    ends today or later, and no later than the same day two months ahead (2026-11-22 → 2027-01-22;
    the month's last day when it has no such day)."""
    routing = policy.routing
    checks = [_plan_is(account, routing.startup_plan)]
    ends = account.startup_plan_ends_at
    days_left: int | None = None
    if ends is None:
        checks.append(Check("startup_plan_ends_at", None, "startup plan end unknown"))
    else:
        days_left = -days_since(ends, now)
        if days_left < 0:
            checks.append(Check("startup_plan_ends_at", False, f"startup plan ended {ends} ({-days_left} days ago)"))
        else:
            clock.changes_when_days_reach(ends, 1)  # the plan has ended
            clock.changes_when_month_shift_reaches(ends, routing.rolloff_months)  # it ends within the months
            horizon = add_months(now.date(), routing.rolloff_months)
            ok = ends <= horizon
            within = f"{'within' if ok else 'after'} {routing.rolloff_months} months ({horizon})"
            checks.append(Check("startup_plan_ends_at", ok, f"startup plan ends {ends} in {days_left} days, {within}"))
    last = last_invoice(account)
    checks.append(_money_above("last_invoice", "last invoice", last, routing.rolloff_last_invoice_above))
    inputs: dict[str, object] = {
        "plan": account.plan,
        "startup_plan_ends_at": ends,
        "days_left": days_left,
        "last_invoice": last,
    }
    return _decide("product_led.startup_rolloff", account, ctx, policy, now, checks, inputs)


STARTUP_ROLLOFF: AccountRule = Rule("product_led.startup_rolloff", startup_rolloff, _may_startup_rolloff)


def _may_forecast_spike(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """MRR above the floor and a forecast above the ratio, both known."""
    routing = policy.routing
    return (
        account.mrr is not None
        and account.mrr > routing.forecast_mrr_above
        and account.forecasted_mrr is not None
        and account.forecasted_mrr > routing.forecast_ratio_above * account.mrr
    )


def forecast_spike(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """Customers with MRR over $1,000 whose forecasted MRR this month is more than 50 % higher
    become a product-led lead for a TAM."""
    routing = policy.routing
    mrr, forecast = account.mrr, account.forecasted_mrr
    checks = [_money_above("mrr", "mrr", mrr, routing.forecast_mrr_above)]
    ratio = fmt_num(routing.forecast_ratio_above)
    if forecast is None:
        checks.append(Check("forecasted_mrr", None, "forecasted mrr unknown"))
    elif mrr is not None:
        limit = routing.forecast_ratio_above * mrr
        ok = forecast > limit
        checks.append(
            Check(
                "forecasted_mrr",
                ok,
                f"forecasted mrr {fmt_num(forecast)} {'>' if ok else '≤'} {ratio} × mrr = {fmt_num(round(limit, 2))}",
            )
        )
    inputs: dict[str, object] = {"mrr": mrr, "forecasted_mrr": forecast}
    return _decide("product_led.forecast_spike", account, ctx, policy, now, checks, inputs)


FORECAST_SPIKE: AccountRule = Rule("product_led.forecast_spike", forecast_spike, _may_forecast_spike)


def _may_am_referral(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """In the AM referral segment."""
    return policy.routing.am_referral_segment in account.segments


def am_referral(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """An account someone put in the `AM referral` segment becomes a product-led lead for a TAM
    (a person's referral: the cool-off after a disqualification does not apply)."""
    segment = policy.routing.am_referral_segment
    inside = segment in account.segments
    checks: list[Check] = [Check("segments", inside, f"{'in' if inside else 'not in'} segment {segment}")]
    inputs: dict[str, object] = {"segments": sorted(account.segments)}
    return _decide("product_led.am_referral", account, ctx, policy, now, checks, inputs, manual=True)


AM_REFERRAL: AccountRule = Rule("product_led.am_referral", am_referral, _may_am_referral)


def last_invoice(account: Account) -> float | None:
    """The amount of the account's most recent invoice (invoices are oldest first), or None."""
    return account.invoices[-1].amount if account.invoices else None


def _decide(
    rule: str,
    account: Account,
    ctx: AccountContext,
    policy: Policy,
    now: datetime,
    checks: list[Check],
    inputs: dict[str, object],
    *,
    manual: bool = False,
) -> Decision:
    return trigger_decision(
        rule,
        account,
        ctx,
        policy,
        now,
        checks,
        inputs,
        team=TEAM,
        segment=policy.routing.product_led_segment,
        manual=manual,
    )


def _at_least(name: str, label: str, value: float | None, limit: float) -> Check:
    if value is None:
        return Check(name, None, f"{label} unknown")
    ok = value >= limit
    return Check(name, ok, f"{label} {fmt_num(value)} {'≥' if ok else '<'} {fmt_num(limit)}")


def _money_above(name: str, label: str, value: float | None, limit: float) -> Check:
    if value is None:
        return Check(name, None, f"{label} unknown")
    ok = value > limit
    return Check(name, ok, f"{label} {fmt_num(value)} {'>' if ok else '≤'} {fmt_num(limit)}")


@lru_cache(maxsize=256)
def _same_plan(plan: str, expected: str) -> bool:
    """`_plan_is`'s test: the account's plan is `expected`, case- and outer-space-insensitively
    (cached: a book has a handful of plans, asked of every account with a high ICP score)."""
    return plan.strip().casefold() == expected.casefold()


def _plan_is(account: Account, plan: str) -> Check:
    if account.plan is None:
        return Check("plan", None, "plan unknown")
    ok = _same_plan(account.plan, plan)
    return Check("plan", ok, f"plan {account.plan}" + ("" if ok else f" is not {plan}"))
