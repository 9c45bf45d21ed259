"""Pure decisions: the handbook's rules over typed records, each with a reason.

No clock, no network, no database: callers pass `now` and plain data. `evaluate_account` and
`evaluate_lead` are the whole policy for one record, in the order its writes are claimed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime

from core.model import Account, Lead
from rules import allocation, demo, lifecycle, onboarding, qualification, scoring
from rules import guards as _guards
from rules import routing as _routing
from rules.base import Decision
from rules.context import EMPTY, AccountContext
from rules.expressions import CompiledTrigger, CustomTrigger, ExpressionError, compile_trigger
from rules.policy import ROUTING_RULE_IDS, AllocationPolicy, GuardPolicy, Policy, ProductLedPolicy, Territories

__all__ = [
    "ALL_RULE_IDS",
    "EMPTY",
    "AccountContext",
    "AllocationPolicy",
    "CompiledTrigger",
    "CustomTrigger",
    "Decision",
    "ExpressionError",
    "GuardPolicy",
    "Policy",
    "ProductLedPolicy",
    "Territories",
    "compile_trigger",
    "evaluate_account",
    "evaluate_lead",
    "managed_segments",
]

# Every built-in rule id (rules.md), routing triggers first in their default order.
ALL_RULE_IDS: tuple[str, ...] = (
    *ROUTING_RULE_IDS,
    "allocation.new_owner",
    onboarding.LEAD,
    onboarding.DIRECT_HANDOVER,
    onboarding.CIRCLE_BACK,
    lifecycle.ACCOUNT_REVIEW,
    lifecycle.CSM_DOWNGRADE,
    lifecycle.STAGE,
    qualification.RULE_ID,
    "scoring.lead_score",
    "demo.classification",
    "demo.instant_scheduler",
)


def _also(decision: Decision, winner: Decision) -> Decision:
    """A trigger that matched but lost to `winner`: kept for explain, writes nothing."""
    return replace(
        decision,
        traits={},
        segments=frozenset(),
        lead_fields={},
        reason=f"{decision.reason} (also matched; {winner.rule} wins)",
    )


def _custom(account: Account, ctx: AccountContext, policy: Policy, now: datetime, trigger: CompiledTrigger) -> Decision:
    """A config-defined trigger, held back by the same guards as the built-in ones."""
    decision = trigger.evaluate(account, ctx, now)
    if not decision.fired:
        return decision
    guard = _guards.routing_guard(account, ctx, policy, now)
    if guard is not None:
        return replace(decision, fired=False, traits={}, guarded_by=guard, reason=f"{decision.reason}; but {guard}")
    if decision.team == "TAM":
        segment = frozenset({policy.routing.product_led_segment})
        return replace(decision, segments=segment, manages=segment)
    return decision


def managed_segments(policy: Policy) -> frozenset[str]:
    """Every segment some rule adds when it holds and removes when it stops holding."""
    return frozenset(
        {
            policy.routing.product_led_segment,
            policy.allocation.segment,
            policy.onboarding.segment,
            policy.lifecycle.segment,
            policy.qualification.segment,
        }
    )


Gate = Callable[[Account, AccountContext, Policy, datetime], bool]


def _first_bill_gate(account: Account, policy: Policy, now: datetime) -> bool:
    """onboarding.lead can fire only for a recent first bill of at least the minimum."""
    rules = policy.onboarding
    first = next((i for i in account.invoices or () if i.amount > 0 or not rules.first_bill_skips_zero), None)
    if first is None or first.amount < rules.first_bill_min:
        return False
    try:
        age = now.year * 12 + now.month - (int(first.month[:4]) * 12 + int(first.month[5:7]))
    except ValueError:
        return True  # the rule itself reports the unreadable month
    return age <= rules.first_bill_max_age_months


def _growing_gate(account: Account, policy: Policy) -> bool:
    """onboarding.circle_back can fire only for an account whose latest invoice grew."""
    rules = policy.onboarding
    invoices = account.invoices
    if account.mrr is None or account.mrr > rules.circle_back_mrr_max or not invoices or len(invoices) < 2:
        return False
    last = invoices[-1].amount
    if last < rules.circle_back_min_last_invoice:
        return False
    months = rules.growth_months
    earlier = invoices[-1 - months].amount if 0 < months < len(invoices) else 0
    return last > invoices[-2].amount or (earlier > 0 and last >= (1 + rules.growth_min) * earlier)


# A necessary condition per rule: when it is false the rule cannot fire, so a cycle skips building
# its full decision (`explain` and what-if always build every one). tests/test_rules_fast_path.py
# checks that the fast path decides exactly what the full evaluation decides.
_MAY_FIRE: dict[str, Gate] = {
    "product_led.mrr_band": lambda a, c, p, n: (
        a.mrr is not None
        and p.product_led.mrr_min <= a.mrr <= p.product_led.mrr_max
        and (a.employee_count or 0) > p.product_led.employees_above
        and (a.user_count or 0) > p.product_led.users_above
    ),
    "product_led.scale_high_icp": lambda a, c, p, n: (
        a.icp_score is not None and a.icp_score >= p.routing.high_icp_threshold
    ),
    "product_led.startup_rolloff": lambda a, c, p, n: a.startup_plan_ends_at is not None,
    "product_led.forecast_spike": lambda a, c, p, n: (
        a.mrr is not None
        and a.mrr > p.routing.forecast_mrr_above
        and a.forecasted_mrr is not None
        and a.forecasted_mrr > p.routing.forecast_ratio_above * a.mrr
    ),
    "product_led.am_referral": lambda a, c, p, n: p.routing.am_referral_segment in a.segments,
    "new_business.onboarding_referral": lambda a, c, p, n: p.routing.onboarding_referral_segment in a.segments,
    "new_business.big_fish": lambda a, c, p, n: (
        a.employee_count is not None and a.employee_count >= p.routing.big_fish_employees
    ),
    "new_business.startup_credits": lambda a, c, p, n: (
        a.startup_credits_used is not None and bool(a.startup_credits_total)
    ),
    "new_business.ae_referral": lambda a, c, p, n: p.routing.ae_referral_segment in a.segments,
    "bdr.closed_lost_unresponsive": lambda a, c, p, n: bool(c.opportunities),
    onboarding.DIRECT_HANDOVER: lambda a, c, p, n: a.mrr is not None and a.mrr > p.onboarding.handover_mrr_above,
    "allocation.new_owner": lambda a, c, p, n: a.mrr is not None and 12 * a.mrr >= p.allocation.arr_threshold,
    onboarding.LEAD: lambda a, c, p, n: a.business_email is True and _first_bill_gate(a, p, n),
    onboarding.CIRCLE_BACK: lambda a, c, p, n: _growing_gate(a, p),
    lifecycle.ACCOUNT_REVIEW: lambda a, c, p, n: a.mrr is not None and a.mrr >= p.lifecycle.review_mrr,
    lifecycle.CSM_DOWNGRADE: lambda a, c, p, n: p.lifecycle.csm_role in a.key_roles,
}


def evaluate_account(
    account: Account,
    ctx: AccountContext,
    policy: Policy,
    now: datetime,
    custom: Sequence[CompiledTrigger] = (),
    *,
    full: bool = True,
) -> list[Decision]:
    """Every account rule's verdict in the order their writes are claimed: qualification of a
    product-led lead, routing (the first match in the configured order wins, then config-defined
    triggers), onboarding handover, allocation, onboarding, lifecycle.

    With `full=False` (a cycle) rules that cannot fire are skipped instead of explained; the
    decisions that fire are the same.
    """

    blocked = () if full else {rule for rule, gate in _MAY_FIRE.items() if not gate(account, ctx, policy, now)}

    def may(rule: str) -> bool:
        return rule not in blocked

    # An account with an owner key role is never routed (the first guard of every trigger).
    owned = not full and any(role in account.key_roles for role in policy.owner_roles)
    gate = (lambda rule: False) if owned else may
    winner, routing = _routing.route_account(account, ctx, policy, policy.routing, now, None if full else gate)
    for trigger in custom:
        decision = _custom(account, ctx, policy, now, trigger)
        if decision.fired and winner is not None:
            decision = _also(decision, winner)
        elif decision.fired:
            winner = decision
        routing.append(decision)
    decisions: list[Decision] = []
    if may(onboarding.DIRECT_HANDOVER):
        handover = onboarding.direct_handover(account, ctx, policy, policy.onboarding, now)
        if handover.fired and winner is not None:
            handover = _also(handover, winner)
        elif handover.fired:
            winner = handover
        decisions.append(handover)
    verdict: list[Decision] = []
    if winner is not None and winner.team == "TAM":
        verdict.append(qualification.recommend(account, ctx, policy, policy.qualification, now))
    elif full:
        verdict.append(
            Decision(
                qualification.RULE_ID,
                account.id,
                False,
                "not a product-led lead",
                manages=frozenset({policy.qualification.segment}),
            )
        )
    owner = allocation.new_owner(account, policy) if may("allocation.new_owner") else None
    decisions = [*verdict, *routing, *decisions, *([owner] if owner else [])]
    if may(onboarding.LEAD):
        otherwise = winner is not None or (owner is not None and owner.fired)
        decisions.append(onboarding.lead(account, ctx, policy, policy.onboarding, now, otherwise_lead=otherwise))
    if may(onboarding.CIRCLE_BACK):
        decisions.append(onboarding.circle_back(account, ctx, policy, policy.onboarding, now))
    if may(lifecycle.ACCOUNT_REVIEW):
        decisions.append(lifecycle.account_review(account, ctx, policy, policy.lifecycle, now))
    if may(lifecycle.CSM_DOWNGRADE):
        decisions.append(lifecycle.csm_downgrade(account, ctx, policy, policy.lifecycle, now))
    # The stage is that of the account as this cycle leaves it: with the segments it is about to get.
    wanted = frozenset().union(*(d.segments for d in decisions if d.fired))
    segments = (account.segments - managed_segments(policy)) | wanted
    after = account if segments == account.segments else replace(account, segments=segments)
    if winner is not None and not ctx.open_leads:
        # ... and with the lead routing is about to create for it.
        planned = Lead(
            id=f"planned:{winner.rule}",
            system_modstamp=now,
            lead_source=_routing.lead_source_for(winner.rule),
            status="Open - Not Contacted",
        )
        ctx = AccountContext(leads=(*ctx.leads, planned), opportunities=ctx.opportunities)
    decisions.append(lifecycle.stage(after, ctx, policy, policy.lifecycle, now))
    return decisions


def evaluate_lead(lead: Lead, policy: Policy, now: datetime, company_disqualified_at: date | None) -> list[Decision]:
    """Every lead rule's verdict: the score out of 70, demo triage (support and spam skip the
    round robin), the instant scheduler, and lead-source routing."""
    classification = demo.classify_demo(lead, policy.demo)
    decisions = [
        scoring.lead_score(lead, policy.scoring),
        classification,
        demo.scheduler_eligible(lead, company_disqualified_at, policy.demo, now),
    ]
    winner, routing = _routing.route_lead(lead, policy.routing)
    if winner is not None and classification.inputs.get("skip_round_robin"):
        label = classification.inputs.get("label")
        routing = [
            replace(d, fired=False, lead_fields={}, reason=f"{d.reason}; but classified {label}: skips the round robin")
            if d is winner
            else d
            for d in routing
        ]
    return decisions + routing
