"""Pure decisions: the handbook's rules over typed records, each with a reason.

No clock, no network, no database: callers pass `now` and plain data. `evaluate_account` and
`evaluate_lead` are the whole policy for one record, in the order its writes are claimed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime

from rules import allocation, demo, lifecycle, onboarding, qualification, scoring
from rules import guards as _guards
from rules import routing as _routing
from rules.base import Decision
from rules.context import EMPTY, AccountContext
from rules.expressions import CompiledTrigger, CustomTrigger, ExpressionError, compile_trigger
from rules.model import Account, Invoice, Lead, Opportunity, SfAccount, SfUser
from rules.policy import AllocationPolicy, GuardPolicy, Policy, ProductLedPolicy, Territories
from rules.routing import ROUTING_RULE_IDS

__all__ = [
    "ALL_RULE_IDS",
    "EMPTY",
    "Account",
    "AccountContext",
    "AllocationPolicy",
    "CompiledTrigger",
    "CustomTrigger",
    "Decision",
    "ExpressionError",
    "GuardPolicy",
    "Invoice",
    "Lead",
    "Opportunity",
    "Policy",
    "ProductLedPolicy",
    "SfAccount",
    "SfUser",
    "Territories",
    "compile_trigger",
    "evaluate_account",
    "evaluate_lead",
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


def evaluate_account(
    account: Account,
    ctx: AccountContext,
    policy: Policy,
    now: datetime,
    custom: Sequence[CompiledTrigger] = (),
) -> list[Decision]:
    """Every account rule's verdict, fired or not, in the order their writes are claimed:
    qualification of a product-led lead, routing (the first match in the configured order wins,
    then config-defined triggers), onboarding handover, allocation, onboarding, lifecycle."""
    winner, routing = _routing.route_account(account, ctx, policy, policy.routing, now)
    for trigger in custom:
        decision = _custom(account, ctx, policy, now, trigger)
        if decision.fired and winner is not None:
            decision = _also(decision, winner)
        elif decision.fired:
            winner = decision
        routing.append(decision)
    handover = onboarding.direct_handover(account, ctx, policy, policy.onboarding, now)
    if handover.fired and winner is not None:
        handover = _also(handover, winner)
    elif handover.fired:
        winner = handover
    if winner is not None and winner.team == "TAM":
        verdict = qualification.recommend(account, ctx, policy, policy.qualification, now)
    else:
        verdict = Decision(
            qualification.RULE_ID,
            account.id,
            False,
            "not a product-led lead",
            manages=frozenset({policy.qualification.segment}),
        )
    owner = allocation.new_owner(account, policy)
    decisions = [verdict, *routing, handover, owner]
    decisions.append(
        onboarding.lead(account, ctx, policy, policy.onboarding, now, otherwise_lead=winner is not None or owner.fired)
    )
    decisions.append(onboarding.circle_back(account, ctx, policy, policy.onboarding, now))
    decisions.append(lifecycle.account_review(account, ctx, policy, policy.lifecycle, now))
    decisions.append(lifecycle.csm_downgrade(account, ctx, policy, policy.lifecycle, now))
    # The stage is that of the account as this cycle leaves it: with the segments it is about to get.
    managed = frozenset().union(*(d.manages for d in decisions))
    wanted = frozenset().union(*(d.segments for d in decisions if d.fired))
    segments = (account.segments - managed) | wanted
    after = account if segments == account.segments else replace(account, segments=segments)
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
