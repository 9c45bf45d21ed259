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

# (input name, passed: True / False / None when unknown, text for the reason)
Check = tuple[str, bool | None, str]


def paying_months(account: Account, now: datetime) -> tuple[int | None, str]:
    """Months the account has been paying: from `first_paid_at`, else its paid invoices."""
    if account.first_paid_at is not None:
        return months_between(account.first_paid_at, now), "since first_paid_at"
    if account.invoices is not None:
        return sum(1 for inv in account.invoices if inv.amount > 0), "paid invoices"
    return None, ""


def _above(name: str, label: str, value: int | None, limit: int) -> Check:
    if value is None:
        return name, None, f"{label} unknown"
    ok = value > limit
    return name, ok, f"{label} {value} {'>' if ok else '≤'} {limit}"


def _checks(account: Account, policy: Policy, now: datetime) -> list[Check]:
    rules = policy.product_led
    checks: list[Check] = []
    mrr = account.mrr
    band = f"[{fmt_num(rules.mrr_min)}, {fmt_num(rules.mrr_max)}]"
    if mrr is None:
        checks.append(("mrr", None, "mrr unknown"))
    else:
        inside = rules.mrr_min <= mrr <= rules.mrr_max
        checks.append(("mrr", inside, f"mrr {fmt_num(mrr)} {'in' if inside else 'not in'} {band}"))
    checks.append(_above("employee_count", "employees", account.employee_count, rules.employees_above))
    checks.append(_above("user_count", "users", account.user_count, rules.users_above))
    country = account.country
    if country is None:
        checks.append(("country", None, "country unknown"))
    else:
        icp = country in policy.icp_countries
        checks.append(("country", icp, f"country {country} {'is' if icp else 'is not'} ICP"))
    months, source = paying_months(account, now)
    if months is None:
        checks.append(("paying_months", None, "paying months unknown (no first_paid_at or invoices)"))
    else:
        ok = months >= rules.min_paying_months
        checks.append(
            (
                "paying_months",
                ok,
                f"paying {months} months ({source}) {'≥' if ok else '<'} {rules.min_paying_months}",
            )
        )
    return checks


def mrr_band(account: Account, policy: Policy, now: datetime) -> Decision:
    """Customers with MRR between $500 and $1,667, more than 50 employees and 7 users, in an ICP
    country and paying for at least 3 months become a product-led lead for a TAM."""
    manages = frozenset({policy.product_led.segment})
    checks = _checks(account, policy, now)
    inputs: dict[str, object] = {
        "mrr": account.mrr,
        "employee_count": account.employee_count,
        "user_count": account.user_count,
        "country": account.country,
        "paying_months": paying_months(account, now)[0],
    }
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
