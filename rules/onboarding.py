"""Onboarding and handover: new payers for the onboarding specialists, healthy high spenders straight to
Sales, and growing accounts to circle back on (sales-handover.md, accounts-overview.md, rules.md §5)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from operator import itemgetter, lt
from typing import TYPE_CHECKING

from core.model import Account, Invoice
from rules import clock
from rules.base import AccountRule, Decision, Rule, TaskIntent, fmt_num
from rules.guards import Check, nurtured_after_close, owned_by, routing_guard, summarise, trigger_decision
from rules.policy import OnboardingPolicy, Period

if TYPE_CHECKING:
    from rules.context import AccountContext
    from rules.policy import Policy

__all__ = [
    "CIRCLE_BACK",
    "DIRECT_HANDOVER",
    "LEAD",
    "circle_back",
    "direct_handover",
    "lead",
    "task_period",
]

_LEAD = "onboarding.lead"
_DIRECT_HANDOVER = "onboarding.direct_handover"
_CIRCLE_BACK = "onboarding.circle_back"


def task_period(now: datetime, period: Period) -> str:
    """The calendar period `now` falls in: '2026-Q4' for a quarter, '2026-11' for a month."""
    if period == "month":
        return f"{now.year}-{now.month:02d}"
    return f"{now.year}-Q{(now.month - 1) // 3 + 1}"


def _next_period(now: datetime, period: Period) -> int:
    """The month the period after `now`'s starts, as `year * 12 + month`."""
    month = now.year * 12 + now.month
    return month + 1 if period == "month" else month + 3 - (now.month - 1) % 3


# Every circle-back task of a cycle has the same period and due date.
_task_period = lru_cache(maxsize=16)(task_period)


@lru_cache(maxsize=16)
def _due(now: datetime, days: int) -> date:
    """The day `days` after `now`."""
    return (now + timedelta(days=days)).date()


def _month_start(month: str) -> date | None:
    try:
        return date(int(month[:4]), int(month[5:7]), 1)
    except ValueError:
        return None


def _pct(share: float, beside: float | None = None) -> str:
    """A share as a percentage with one decimal, more when that would print the same as `beside`."""
    if share == 0 or beside == 0:  # 0.0 and -0.0 are one key of a cache, but print differently
        return _pct_text(share, beside)
    return _cached_pct(share, beside)


def _pct_text(share: float, beside: float | None) -> str:

    def show(value: float, digits: int) -> str:
        return f"{value * 100:,.{digits}f}".rstrip("0").rstrip(".") + " %"

    for digits in (1, 2, 3, 4):
        text = show(share, digits)
        if beside is None or share == beside or text != show(beside, digits):
            break
    return text


# The thresholds' percentages repeat in every reason; shares often do.
_cached_pct = lru_cache(maxsize=4096, typed=True)(_pct_text)


def _already_a_lead(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> str | None:
    """Why the account is already with Sales (owned, being worked, has an open lead or opportunity,
    or a deal closed won that its Account Executive still nurtures: `rules.guards.nurtured_after_close`)."""
    owners = owned_by(account, policy)
    if owners is not None:
        return f"already owned ({owners})"
    for segment in (*policy.guards.owned_segments, *policy.guards.active_sales_segments):
        if segment in account.segments:
            return f"in segment {segment}"
    if ctx.open_leads:
        return f"open lead {ctx.open_leads[0].id} in Salesforce"
    if ctx.open_opportunities:
        return f"open opportunity {ctx.open_opportunities[0].id} in Salesforce"
    return nurtured_after_close(ctx, policy, now)


def _first_bill(invoices: Sequence[Invoice], skip_zero: bool) -> Invoice | None:
    for invoice in invoices:
        if invoice.amount > 0 or not skip_zero:
            return invoice
    return None


def _may_lead(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A business email and a first bill of at least the minimum, recent enough."""
    if account.business_email is not True:
        return False
    rules = policy.onboarding
    invoices = account.invoices
    first = _first_bill(invoices, rules.first_bill_skips_zero) if invoices else None
    if first is None or first.amount < rules.first_bill_min:
        return False
    month = _month_number(first.month)
    if month is None:
        return True  # the rule itself reports the unreadable month
    clock.changes_on_month(month + rules.first_bill_max_age_months + 1)  # the bill becomes too old
    return now.year * 12 + now.month - month <= rules.first_bill_max_age_months


@lru_cache(maxsize=1024)
def _month_number(month: str) -> int | None:
    """'2026-08' as a count of months (year × 12 + month), None when unreadable (cached: invoice
    months repeat across the book)."""
    try:
        return int(month[:4]) * 12 + int(month[5:7])
    except ValueError:
        return None


def lead(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A new payer whose first bill is at least $100, with a business email and not otherwise a lead, is an
    onboarding lead: segment Onboarding, and an onboarding specialist from the onboarding pool.

    "Otherwise a lead" is `ctx.otherwise_lead` (a routing rule or allocation fired for the account in this
    evaluation, or a routing trigger matched it and a guard held it back: a TAM's "no" to its product-led
    lead, in the cool-off, does not make it an onboarding lead instead) or what the account shows: an
    owner key role (TAM, CSM, Account Executive), an owned or active-sales
    segment, or an open lead or opportunity in Salesforce. An Onboarding Specialist key role does not stop
    the rule (the account stays in the segment while the specialist works it); the reason names them.
    """
    rules = policy.onboarding
    otherwise_lead = ctx.otherwise_lead
    manages = frozenset({rules.segment})
    first = _first_bill(account.invoices, rules.first_bill_skips_zero) if account.invoices is not None else None
    specialist = account.roles.get(rules.specialist_role)
    inputs: dict[str, object] = {
        "first_invoice": None if first is None else first.amount,
        "first_invoice_month": None if first is None else first.month,
        "business_email": account.business_email,
        "otherwise_lead": otherwise_lead,
        "onboarding_specialist": specialist,
    }
    checks: list[Check] = []
    if account.invoices is None:
        checks.append(Check("invoices", None, "invoices unknown"))
    elif first is None:
        checks.append(Check("invoices", False, "no paid invoice yet"))
    else:
        ok = first.amount >= rules.first_bill_min
        sign = "≥" if ok else "<"
        checks.append(
            Check(
                "first_invoice",
                ok,
                f"first invoice {fmt_num(first.amount)} ({first.month}) {sign} {fmt_num(rules.first_bill_min)}",
            )
        )
        start = _month_start(first.month)
        if start is None:
            checks.append(Check("invoices", None, f"first invoice month {first.month!r} unreadable"))
        else:
            age = max(0, (now.year - start.year) * 12 + now.month - start.month)
            clock.changes_on_month(start.year * 12 + start.month + rules.first_bill_max_age_months + 1)
            recent = age <= rules.first_bill_max_age_months
            checks.append(
                Check(
                    "first_invoice_month",
                    recent,
                    f"first billed {age} months ago {'≤' if recent else '>'} {rules.first_bill_max_age_months}",
                )
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
    passed, reason, unknown = summarise(checks)
    if not passed:
        return Decision(_LEAD, account.id, False, reason, inputs, unknown, manages=manages, team="Onboarding")
    why_not = ctx.otherwise_why if otherwise_lead else _already_a_lead(account, ctx, policy, now)
    if why_not is not None:
        return Decision(
            _LEAD,
            account.id,
            False,
            f"{reason}; but otherwise a lead: {why_not}",
            inputs,
            manages=manages,
            team="Onboarding",
            guarded_by=why_not,
        )
    if specialist is not None:
        reason += f"; with onboarding specialist {specialist}"
    return Decision(
        _LEAD,
        account.id,
        True,
        reason,
        inputs,
        segments=manages,
        manages=manages,
        team="Onboarding",
    )


LEAD: AccountRule = Rule(_LEAD, lead, _may_lead)


def _stability(recent: Sequence[Invoice], band: float) -> Check:
    amounts = [i.amount for i in recent]
    low, high = min(amounts), max(amounts)
    span = f"last {len(recent)} invoices {fmt_num(low)}–{fmt_num(high)}"
    limit = _pct(band - 1)
    if low <= 0:
        return Check("invoices", False, f"{span} include a month without spend")
    if high <= band * low:
        return Check("invoices", True, f"{span} within {limit}")
    return Check("invoices", False, f"{span} vary {_pct(high / low - 1, band - 1)} > {limit}")


def _median(values: list[float]) -> float:
    """`statistics.median` of a non-empty list, the same arithmetic without its generality (a cycle
    asks it three or four times of every account above the handover threshold)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _spike(mrr: float, invoices: Sequence[Invoice], recent: int, rules: OnboardingPolicy) -> Check:
    factor, lookback = rules.spike_factor, max(1, rules.spike_lookback)
    amounts = [i.amount for i in invoices]
    # Each recent invoice against the months before it, then the current month's MRR against the invoices.
    for index in range(len(amounts) - recent, len(amounts)):
        before = amounts[max(0, index - lookback) : index]
        if before and amounts[index] > factor * _median(before):
            return Check(
                "invoices",
                False,
                f"spike: {invoices[index].month} invoice {fmt_num(amounts[index])} > {fmt_num(factor)}× "
                f"median {fmt_num(_median(before))} of the {len(before)} months before",
            )
    before = amounts[-lookback:]
    if mrr > factor * _median(before):
        return Check(
            "mrr",
            False,
            f"spike: mrr {fmt_num(mrr)} > {fmt_num(factor)}× median {fmt_num(_median(before))} "
            f"of the last {len(before)} invoices",
        )
    return Check("invoices", True, "no spike")


# The largest spend, and of equal spends the name last in alphabetical order.
_amount_then_name = itemgetter(1, 0)


def _concentration(spend: dict[str, float], limit: float) -> Check:
    total = sum(v for v in spend.values() if v > 0)
    if total <= 0:
        return Check("product_spend", None, "product spend empty")
    product, amount = max(spend.items(), key=_amount_then_name)
    share = amount / total
    if amount > limit * total:
        return Check(
            "product_spend",
            False,
            f"concentrated: {product} {_pct(share, limit)} of spend > {_pct(limit)} (possible misconfiguration)",
        )
    return Check("product_spend", True, f"largest product {product} {_pct(share)} of spend")


def _onboarding(account: Account, rules: OnboardingPolicy, now: datetime) -> Check:
    """Whether the account is in onboarding, the onboarding team's to hand over or circle back to
    (`OnboardingPolicy.onboarding_only`): in the Onboarding segment, with an Onboarding Specialist,
    or first billed at most `first_bill_max_age_months` ago (a new payer: when that bill grows too
    old is a date the judgement may change on, `rules.clock`)."""
    if rules.segment in account.segments:
        return Check("segments", True, f"in onboarding (segment {rules.segment})")
    specialist = account.roles.get(rules.specialist_role)
    if specialist:
        return Check("key_roles", True, f"in onboarding ({rules.specialist_role} {specialist})")
    invoices = account.invoices
    if invoices is None:
        return Check("invoices", None, "in onboarding unknown (invoices unknown)")
    first = _first_bill(invoices, rules.first_bill_skips_zero)
    if first is None:
        return Check("invoices", False, "not in onboarding (no paid invoice)")
    month = _month_number(first.month)
    if month is None:
        return Check("invoices", None, f"in onboarding unknown (first invoice month {first.month!r} unreadable)")
    clock.changes_on_month(month + rules.first_bill_max_age_months + 1)
    age = max(0, now.year * 12 + now.month - month)
    limit = rules.first_bill_max_age_months
    if age <= limit:
        return Check("invoices", True, f"in onboarding (first billed {age} months ago ≤ {limit})")
    return Check(
        "invoices",
        False,
        f"not in onboarding (not in segment {rules.segment}, no {rules.specialist_role}, "
        f"first billed {age} months ago > {limit})",
    )


def _may_onboarding(account: Account, rules: OnboardingPolicy, now: datetime) -> bool:
    """`_onboarding` may pass (or the scope is off)."""
    return not rules.onboarding_only or _onboarding(account, rules, now).passed is not False


def _may_direct_handover(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A known MRR above the handover threshold, enough invoices, all paid, and a known product spend
    not concentrated in one product (`_concentration`'s test), of an account in onboarding."""
    rules = policy.onboarding
    invoices = account.invoices
    spend = account.product_spend
    if (
        account.mrr is None
        or account.mrr <= rules.handover_mrr_above
        or invoices is None
        or len(invoices) < max(1, rules.recent_invoices)
        or spend is None
        or min(i.amount for i in invoices[-max(1, rules.recent_invoices) :]) <= 0
    ):
        return False
    total = sum(v for v in spend.values() if v > 0)
    return total > 0 and max(spend.values()) <= rules.concentration_max * total and _may_onboarding(account, rules, now)


def direct_handover(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """An account spending more than $1,000 a month whose spend is stable (last 3 invoices within 25 % of
    each other), not an event spike and not concentrated in one possibly misconfigured product goes
    straight to Sales as an onboarding referral, without waiting for the onboarding program."""
    rules = policy.onboarding
    recent = max(1, rules.recent_invoices)
    spend = None if account.product_spend is None else dict(account.product_spend)
    inputs: dict[str, object] = {
        "mrr": account.mrr,
        "invoices": None if account.invoices is None else [(i.month, i.amount) for i in account.invoices[-recent:]],
        "product_spend": spend,
    }
    checks: list[Check] = [_onboarding(account, rules, now)] if rules.onboarding_only else []
    mrr = account.mrr
    if mrr is None:
        checks.append(Check("mrr", None, "mrr unknown"))
    else:
        ok = mrr > rules.handover_mrr_above
        checks.append(Check("mrr", ok, f"mrr {fmt_num(mrr)} {'>' if ok else '≤'} {fmt_num(rules.handover_mrr_above)}"))
    invoices = account.invoices
    if invoices is None:
        checks.append(Check("invoices", None, "invoices unknown"))
    elif len(invoices) < recent:
        checks.append(Check("invoices", False, f"only {len(invoices)} invoices (need {recent})"))
    else:
        checks.append(_stability(invoices[-recent:], rules.stability_band))
        if mrr is not None:
            checks.append(_spike(mrr, invoices, recent, rules))
    if spend is None:
        checks.append(Check("product_spend", None, "product spend unknown"))
    else:
        checks.append(_concentration(spend, rules.concentration_max))
    return trigger_decision(_DIRECT_HANDOVER, account, ctx, policy, now, checks, inputs, team="TAE")


DIRECT_HANDOVER: AccountRule = Rule(_DIRECT_HANDOVER, direct_handover, _may_direct_handover)


def _growth(invoices: Sequence[Invoice], rules: OnboardingPolicy) -> Check:
    recent = invoices[-max(1, rules.recent_invoices) :]
    amounts = [i.amount for i in recent]
    path = " → ".join(map(fmt_num, amounts))
    increasing = len(amounts) > 1 and all(map(lt, amounts, amounts[1:]))  # each below the next
    months = rules.growth_months
    grown = False
    if months > 0 and len(invoices) > months and invoices[-1 - months].amount > 0:
        before, last = invoices[-1 - months].amount, invoices[-1].amount
        grown = last >= (1 + rules.growth_min) * before  # multiplied, not divided: 600 vs 500 is exactly +20 %
        growth = last / before - 1
        sign = "≥" if grown else "<"
        growth_text = f"growth {_pct(growth, rules.growth_min)} over {months} months {sign} {_pct(rules.growth_min)}"
    else:
        growth_text = f"growth over {months} months unknown (no spend {months} months ago)"
    if increasing:
        return Check("invoices", True, f"last {len(amounts)} invoices {path} strictly increasing; {growth_text}")
    if grown:
        return Check("invoices", True, f"last {len(amounts)} invoices {path}; {growth_text}")
    return Check(
        "invoices", False, f"not growing: last {len(amounts)} invoices {path} not strictly increasing; {growth_text}"
    )


def _may_circle_back(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A known MRR at most the maximum, the invoices the growth check needs, and a latest invoice of at
    least the minimum that grew: above the one before, or enough above the one `growth_months` earlier."""
    rules = policy.onboarding
    invoices = account.invoices
    if account.mrr is None or account.mrr > rules.circle_back_mrr_max or not invoices:
        return False
    if len(invoices) < max(2, rules.recent_invoices, rules.growth_months + 1):  # `circle_back`'s `needed`
        return False
    last = invoices[-1].amount
    if last < rules.circle_back_min_last_invoice:
        return False
    months = rules.growth_months
    earlier = invoices[-1 - months].amount if 0 < months < len(invoices) else 0
    grows = last > invoices[-2].amount or (earlier > 0 and last >= (1 + rules.growth_min) * earlier)
    return grows and _may_onboarding(account, rules, now)


def circle_back(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A growing account still at or below $1,000 MRR gets a Vitally task for its onboarding specialist to
    circle back in 30 days and see whether it is ready for Sales, once per account per quarter.

    Growing: the last 3 invoices strictly increase, or the latest is at least 20 % above the one two
    months earlier. The task goes to the Onboarding Specialist key role, unassigned when there is none.
    Accounts already with Sales (the routing guard, an open lead or opportunity, or routed to Sales in
    this same evaluation: `ctx.otherwise_lead`) get no task.
    """
    rules = policy.onboarding
    specialist = account.roles.get(rules.specialist_role)
    recent = max(1, rules.recent_invoices)
    needed = max(recent, rules.growth_months + 1)
    inputs: dict[str, object] = {
        "mrr": account.mrr,
        "invoices": None if account.invoices is None else [(i.month, i.amount) for i in account.invoices[-needed:]],
        "onboarding_specialist": specialist,
    }
    checks: list[Check] = [_onboarding(account, rules, now)] if rules.onboarding_only else []
    mrr = account.mrr
    if mrr is None:
        checks.append(Check("mrr", None, "mrr unknown"))
    else:
        ok = mrr <= rules.circle_back_mrr_max
        checks.append(Check("mrr", ok, f"mrr {fmt_num(mrr)} {'≤' if ok else '>'} {fmt_num(rules.circle_back_mrr_max)}"))
    invoices = account.invoices
    if invoices is None:
        checks.append(Check("invoices", None, "invoices unknown"))
    elif len(invoices) < needed:
        checks.append(Check("invoices", False, f"only {len(invoices)} invoices (need {needed})"))
    else:
        last = invoices[-1].amount
        big = last >= rules.circle_back_min_last_invoice
        sign = "≥" if big else "<"
        checks.append(
            Check("invoices", big, f"last invoice {fmt_num(last)} {sign} {fmt_num(rules.circle_back_min_last_invoice)}")
        )
        checks.append(_growth(invoices, rules))
    passed, reason, unknown = summarise(checks)
    if not passed:
        return Decision(_CIRCLE_BACK, account.id, False, reason, inputs, unknown)
    guard = routing_guard(account, ctx, policy, now)
    if guard is None and ctx.open_leads:
        # crm-sync's own open lead too (the routing guard leaves it to the trigger that made it):
        # Sales has the account, whatever trigger matches it today (found by a review: a direct
        # handover's lead being worked, the MRR dipped below $1,000, and a circle-back task came).
        guard = f"open lead {ctx.open_leads[0].id} in Salesforce"
    if guard is not None:
        return Decision(_CIRCLE_BACK, account.id, False, f"{reason}; but {guard}", inputs, guarded_by=guard)
    if ctx.otherwise_lead:
        # Routed to Sales in this very evaluation: there is nothing to circle back to.
        why = "routed to Sales in this cycle"
        return Decision(_CIRCLE_BACK, account.id, False, f"{reason}; but {why}", inputs, guarded_by=why)
    # The task is once per period: the next period's is another task (`rules.clock`).
    clock.changes_on_month(_next_period(now, rules.task_period))
    task = TaskIntent(
        key=f"{_CIRCLE_BACK}:{account.id}:{_task_period(now, rules.task_period)}",
        account_id=account.id,
        title=rules.task_name,
        description=reason,
        due=_due(now, rules.task_due_days),
        assignee=specialist,
        tags=rules.task_tags,
    )
    return Decision(_CIRCLE_BACK, account.id, True, reason, inputs, task=task)


CIRCLE_BACK: AccountRule = Rule(_CIRCLE_BACK, circle_back, _may_circle_back)
