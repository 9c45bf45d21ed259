"""Product-led routing: paying customers worth a Technical Account Manager's time
(lead-routing-and-scoring.md, product-led sales team)."""

from __future__ import annotations

from datetime import datetime

from rules.base import Decision, fmt_num, months_between
from rules.guards import routing_guard
from rules.model import Account
from rules.policy import Policy

__all__ = ["mrr_band", "paying_months"]

RULE_ID = "product_led.mrr_band"


def paying_months(account: Account, now: datetime) -> tuple[int | None, str]:
    """Months the account has been paying: from `first_paid_at`, else its paid invoices."""
    if account.first_paid_at is not None:
        return months_between(account.first_paid_at, now), "since first_paid_at"
    if account.invoices is not None:
        return sum(1 for inv in account.invoices if inv.amount > 0), "paid invoices"
    return None, ""


def mrr_band(account: Account, policy: Policy, now: datetime) -> Decision:
    """Customers with MRR between $500 and $1,667, more than 50 employees and 7 users, in an ICP
    country and paying for at least 3 months become a product-led lead for a TAM."""
    rules = policy.product_led
    manages = frozenset({rules.segment})
    months, months_source = paying_months(account, now)
    inputs: dict[str, object] = {
        "mrr": account.mrr,
        "employee_count": account.employee_count,
        "user_count": account.user_count,
        "country": account.country,
        "paying_months": months,
    }
    checks: list[tuple[str, bool | None, str]] = []
    mrr = account.mrr
    checks.append(
        (
            "mrr",
            None if mrr is None else rules.mrr_min <= mrr <= rules.mrr_max,
            f"mrr {fmt_num(mrr)} {'in' if mrr is not None and rules.mrr_min <= mrr <= rules.mrr_max else 'not in'} "
            f"[{fmt_num(rules.mrr_min)}, {fmt_num(rules.mrr_max)}]"
            if mrr is not None
            else "mrr unknown",
        )
    )
    emp = account.employee_count
    checks.append(
        (
            "employee_count",
            None if emp is None else emp > rules.employees_above,
            f"employees {emp} {'>' if emp is not None and emp > rules.employees_above else '≤'} {rules.employees_above}"
            if emp is not None
            else "employees unknown",
        )
    )
    users = account.user_count
    checks.append(
        (
            "user_count",
            None if users is None else users > rules.users_above,
            f"users {users} {'>' if users is not None and users > rules.users_above else '≤'} {rules.users_above}"
            if users is not None
            else "users unknown",
        )
    )
    country = account.country
    icp = policy.icp_countries
    checks.append(
        (
            "country",
            None if country is None else country in icp,
            f"country {country} {'is' if country in icp else 'is not'} ICP" if country else "country unknown",
        )
    )
    checks.append(
        (
            "paying_months",
            None if months is None else months >= rules.min_paying_months,
            f"paying {months} months ({months_source}) "
            f"{'≥' if months is not None and months >= rules.min_paying_months else '<'} {rules.min_paying_months}"
            if months is not None
            else "paying months unknown (no first_paid_at or invoices)",
        )
    )
    unknown = tuple(name for name, ok, _ in checks if ok is None)
    failed = [text for _, ok, text in checks if ok is False]
    if failed or unknown:
        reason = "; ".join(failed + [text for _, ok, text in checks if ok is None])
        return Decision(RULE_ID, account.id, False, reason, inputs, unknown, manages=manages, team="TAM")
    reason = "; ".join(text for _, _, text in checks)
    guard = routing_guard(account, policy, now)
    if guard is not None:
        return Decision(
            RULE_ID,
            account.id,
            False,
            f"{reason}; but {guard}",
            inputs,
            manages=manages,
            team="TAM",
            guarded_by=guard,
        )
    return Decision(
        RULE_ID,
        account.id,
        True,
        reason,
        inputs,
        traits={"routing_reason": f"{RULE_ID}: {reason}"},
        segments=manages,
        manages=manages,
        team="TAM",
    )
