"""Routing triggers read from company signals and usage, for companies that use PostHog without
paying for it (accounts-overview.md, lead-routing-and-scoring.md):

- the flowchart's new-business leads "Using PostHog, $0 spend, trigger for hiring increase,
  web/social increase, fundraise" and "'Cool company' in ocean.io", for a Technical Account
  Executive (`new_business.*`);
- the BDR team's "low usage orgs" (`bdr.low_usage`).

The company signals are Vitally traits synced from Harmonic (`harmonic_headcount`,
`harmonic_headcount_180d`, `harmonic_last_funding_date`, `harmonic_web_traffic`,
`harmonic_web_traffic_180d`, `harmonic_social_followers`, `harmonic_social_followers_180d`) and
from ocean.io (`ocean_cool_company`). Thresholds are `[rules.zero_spend]` and `[rules.low_usage]`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from core.model import Account
from rules import clock
from rules.base import AccountRule, Decision, Rule, Team, fmt_num
from rules.guards import Check, day_of, days_since, trigger_decision

if TYPE_CHECKING:
    from rules.context import AccountContext
    from rules.policy import Policy, ZeroSpendPolicy

__all__ = [
    "COOL_COMPANY",
    "FUNDRAISE",
    "HIRING_INCREASE",
    "LOW_USAGE",
    "WEB_SOCIAL_INCREASE",
    "cool_company",
    "fundraise",
    "hiring_increase",
    "low_usage",
    "web_social_increase",
]

TAE: Team = "TAE"
BDR: Team = "BDR"


def _zero_spend(account: Account, rules: ZeroSpendPolicy) -> list[Check]:
    """Using PostHog ($0 spend, at least the minimum of users)."""
    checks: list[Check] = []
    if account.mrr is None:
        checks.append(Check("mrr", None, "mrr unknown"))
    else:
        ok = account.mrr <= rules.mrr_max
        checks.append(
            Check("mrr", ok, f"spend: mrr {fmt_num(account.mrr)} {'≤' if ok else '>'} {fmt_num(rules.mrr_max)}")
        )
    if account.user_count is None:
        checks.append(Check("user_count", None, "users unknown"))
    else:
        ok = account.user_count >= rules.min_users
        checks.append(
            Check("user_count", ok, f"using PostHog: users {account.user_count} {'≥' if ok else '<'} {rules.min_users}")
        )
    return checks


def _may_zero_spend(account: Account, rules: ZeroSpendPolicy) -> bool:
    # Most accounts pay: the MRR test fails first (a cycle asks this of every account, three times).
    mrr = account.mrr
    return mrr is not None and mrr <= rules.mrr_max and (account.user_count or 0) >= rules.min_users


def _growth(name: str, label: str, now: int | None, before: int | None, pct: float, floor: int) -> Check:
    """`now` against `before` (180 days ago): at least `pct` % up, from at least `floor` now."""
    if now is None or before is None:
        return Check(name, None, f"{label} unknown")
    if now < floor:
        return Check(name, False, f"{label} {fmt_num(now)} < {fmt_num(floor)}")
    if before <= 0:
        return Check(name, True, f"{label} {fmt_num(before)} → {fmt_num(now)} (from nothing)")
    growth = round(100 * (now / before - 1), 9)  # 120 vs 100 is +20 %, not +19.999...
    ok = growth >= pct
    shown = f"{'+' if growth >= 0 else ''}{fmt_num(round(growth, 1))} %"
    return Check(
        name, ok, f"{label} {fmt_num(before)} → {fmt_num(now)} ({shown}) {'≥' if ok else '<'} {fmt_num(pct)} %"
    )


def _either(first: Check, second: Check) -> Check:
    """One of two signals: passed when either passed; unknown (named) when neither passed and one
    is unknown; failed otherwise."""
    passed = [check for check in (first, second) if check.passed]
    if passed:
        return Check(passed[0].name, True, " and ".join(check.text for check in passed))
    unknown = [check for check in (first, second) if check.passed is None]
    return Check((unknown or [first])[0].name, None if unknown else False, f"{first.text}; {second.text}")


def _decide(
    rule: str,
    account: Account,
    ctx: AccountContext,
    policy: Policy,
    now: datetime,
    checks: list[Check],
    inputs: dict[str, object],
    team: Team = TAE,
) -> Decision:
    return trigger_decision(rule, account, ctx, policy, now, checks, inputs, team=team)


# -- new business: $0 spend and a growth signal ------------------------------------------------


def _grew(now: int | None, before: int | None, pct: float, floor: int) -> bool:
    """`_growth`'s check, without its words (the reason rounds to 9 decimals: so does this, within 1e-6)."""
    if now is None or before is None or now < floor:
        return False
    return before <= 0 or 100 * (now / before - 1) >= pct - 1e-6


def _may_hiring(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """$0 spend with users, and headcount up enough from at least the floor."""
    rules = policy.zero_spend
    mrr = account.mrr
    if mrr is None or mrr > rules.mrr_max:
        return False
    return _may_zero_spend(account, rules) and _grew(
        account.harmonic_headcount, account.harmonic_headcount_180d, rules.hiring_growth_pct, rules.hiring_min_headcount
    )


def hiring_increase(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A company using PostHog for free whose headcount grew 20 % or more in 180 days (at least 10
    people now) becomes a new business lead for a TAE."""
    rules = policy.zero_spend
    head, before = account.harmonic_headcount, account.harmonic_headcount_180d
    checks = [
        *_zero_spend(account, rules),
        _growth("harmonic_headcount", "headcount", head, before, rules.hiring_growth_pct, rules.hiring_min_headcount),
    ]
    inputs: dict[str, object] = {
        "mrr": account.mrr,
        "user_count": account.user_count,
        "harmonic_headcount": head,
        "harmonic_headcount_180d": before,
    }
    return _decide("new_business.hiring_increase", account, ctx, policy, now, checks, inputs)


HIRING_INCREASE: AccountRule = Rule("new_business.hiring_increase", hiring_increase, _may_hiring)


def _may_web_social(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """$0 spend with users, and web traffic or social followers up enough from their floor."""
    rules = policy.zero_spend
    mrr = account.mrr
    if mrr is None or mrr > rules.mrr_max:
        return False
    return _may_zero_spend(account, rules) and (
        _grew(
            account.harmonic_web_traffic,
            account.harmonic_web_traffic_180d,
            rules.web_traffic_growth_pct,
            rules.web_traffic_min,
        )
        or _grew(
            account.harmonic_social_followers,
            account.harmonic_social_followers_180d,
            rules.social_growth_pct,
            rules.social_followers_min,
        )
    )


def web_social_increase(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A company using PostHog for free whose web traffic grew 50 % or more in 180 days (at least 5,000
    visits a month now), or whose social followers grew 30 % or more (at least 500 now), becomes a new
    business lead for a TAE."""
    rules = policy.zero_spend
    web = _growth(
        "harmonic_web_traffic",
        "web traffic",
        account.harmonic_web_traffic,
        account.harmonic_web_traffic_180d,
        rules.web_traffic_growth_pct,
        rules.web_traffic_min,
    )
    social = _growth(
        "harmonic_social_followers",
        "social followers",
        account.harmonic_social_followers,
        account.harmonic_social_followers_180d,
        rules.social_growth_pct,
        rules.social_followers_min,
    )
    checks = [*_zero_spend(account, rules), _either(web, social)]
    inputs: dict[str, object] = {
        "mrr": account.mrr,
        "user_count": account.user_count,
        "harmonic_web_traffic": account.harmonic_web_traffic,
        "harmonic_web_traffic_180d": account.harmonic_web_traffic_180d,
        "harmonic_social_followers": account.harmonic_social_followers,
        "harmonic_social_followers_180d": account.harmonic_social_followers_180d,
    }
    return _decide("new_business.web_social_increase", account, ctx, policy, now, checks, inputs)


WEB_SOCIAL_INCREASE: AccountRule = Rule("new_business.web_social_increase", web_social_increase, _may_web_social)


def _may_fundraise(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """$0 spend with users, and funded within the window."""
    funded = account.harmonic_last_funding_date
    if funded is None or account.mrr is None or not _may_zero_spend(account, policy.zero_spend):
        return False
    clock.changes_when_days_reach(funded, 0, policy.zero_spend.fundraise_days + 1)
    return 0 <= days_since(funded, now) <= policy.zero_spend.fundraise_days


def fundraise(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A company using PostHog for free that raised funding in the last 90 days becomes a new business
    lead for a TAE."""
    rules = policy.zero_spend
    funded = account.harmonic_last_funding_date
    checks = _zero_spend(account, rules)
    days: int | None = None
    if funded is None:
        checks.append(Check("harmonic_last_funding_date", None, "last funding date unknown"))
    else:
        days = days_since(funded, now)
        clock.changes_when_days_reach(funded, 0, rules.fundraise_days + 1)
        if days < 0:
            checks.append(Check("harmonic_last_funding_date", False, f"funding date {funded} is in the future"))
        else:
            ok = days <= rules.fundraise_days
            text = f"funded {funded} ({days} days ago) {'≤' if ok else '>'} {rules.fundraise_days} days"
            checks.append(Check("harmonic_last_funding_date", ok, text))
    inputs: dict[str, object] = {
        "mrr": account.mrr,
        "user_count": account.user_count,
        "harmonic_last_funding_date": funded,
        "days_since_funding": days,
    }
    return _decide("new_business.fundraise", account, ctx, policy, now, checks, inputs)


FUNDRAISE: AccountRule = Rule("new_business.fundraise", fundraise, _may_fundraise)


def _may_cool_company(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """Flagged a cool company."""
    return account.ocean_cool_company is True


def cool_company(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A company flagged a 'cool company' in ocean.io (trait `ocean_cool_company`) becomes a new
    business lead for a TAE."""
    flag = account.ocean_cool_company
    if flag is None:
        check = Check("ocean_cool_company", None, "ocean.io cool company unknown")
    else:
        check = Check(
            "ocean_cool_company", flag, "'cool company' in ocean.io" if flag else "not a cool company in ocean.io"
        )
    inputs: dict[str, object] = {"ocean_cool_company": flag}
    return _decide("new_business.cool_company", account, ctx, policy, now, [check], inputs)


COOL_COMPANY: AccountRule = Rule("new_business.cool_company", cool_company, _may_cool_company)


# -- BDR: low usage orgs ---------------------------------------------------------------------------


def _may_low_usage(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A business email, known MRR below the bar, known users at most the cap, employees above the floor."""
    rules = policy.low_usage
    mrr = account.mrr
    return (
        mrr is not None
        and mrr < rules.mrr_below
        and account.business_email is True
        and account.user_count is not None
        and account.user_count <= rules.max_users
        and (account.employee_count or 0) > rules.employees_above
    )


def _low_usage_checks(account: Account, policy: Policy, now: datetime) -> list[Check]:
    rules = policy.low_usage
    checks: list[Check] = []
    employees = account.employee_count
    if employees is None:
        checks.append(Check("employee_count", None, "employees unknown"))
    else:
        ok = employees > rules.employees_above
        checks.append(
            Check("employee_count", ok, f"employees {fmt_num(employees)} {'>' if ok else '≤'} {rules.employees_above}")
        )
    if account.business_email is None:
        checks.append(Check("business_email", None, "business email unknown"))
    else:
        checks.append(
            Check(
                "business_email",
                account.business_email,
                "business email" if account.business_email else "no business email",
            )
        )
    if account.created_at is None:
        checks.append(Check("created_at", None, "created at unknown"))
    else:
        age = days_since(account.created_at, now)
        clock.changes_when_days_reach(day_of(account.created_at, now), rules.min_age_days)
        ok = age >= rules.min_age_days
        checks.append(Check("created_at", ok, f"signed up {age} days ago {'≥' if ok else '<'} {rules.min_age_days}"))
    if account.user_count is None:
        checks.append(Check("user_count", None, "users unknown"))
    else:
        ok = account.user_count <= rules.max_users
        checks.append(Check("user_count", ok, f"users {account.user_count} {'≤' if ok else '>'} {rules.max_users}"))
    if account.mrr is None:
        checks.append(Check("mrr", None, "mrr unknown"))
    else:
        ok = account.mrr < rules.mrr_below
        checks.append(Check("mrr", ok, f"mrr {fmt_num(account.mrr)} {'<' if ok else '≥'} {fmt_num(rules.mrr_below)}"))
    return checks


def low_usage(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A company of more than 50 people with a business email that signed up 90 days ago or more and
    still has at most 2 users and spends under $100 a month is a low-usage org for a BDR."""
    inputs: dict[str, object] = {
        "employee_count": account.employee_count,
        "business_email": account.business_email,
        "created_at": account.created_at,
        "user_count": account.user_count,
        "mrr": account.mrr,
    }
    return _decide("bdr.low_usage", account, ctx, policy, now, _low_usage_checks(account, policy, now), inputs, BDR)


LOW_USAGE: AccountRule = Rule("bdr.low_usage", low_usage, _may_low_usage)
