"""Every rule's verdict on one record, in the order their writes are claimed: `evaluate_account` and
`evaluate_lead`, the whole policy (re-exported by `rules`, where their documentation starts). A
module of its own so that the optional compiled build compiles it (`sync.compiled`: a package's
`__init__` stays Python, so that its data files are found).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import lru_cache

from core.model import Account, Lead
from rules import allocation, demo, episodes, lifecycle, onboarding, qualification, scoring
from rules import guards as _guards
from rules import routing as _routing
from rules.base import AccountRule, Decision, wanting_nothing
from rules.base import LeadIntent as _LeadIntent
from rules.base import per_policy as _per_policy
from rules.context import EMPTY, AccountContext, LeadContext, same_picklist
from rules.expressions import CompiledTrigger
from rules.policy import ROUTING_RULE_IDS, Policy

__all__ = ["ALL_RULE_IDS", "evaluate_account", "evaluate_lead", "managed_by", "managed_segments"]

# Every built-in rule id (rules.md), routing triggers first in their default order.
ALL_RULE_IDS: tuple[str, ...] = (
    *ROUTING_RULE_IDS,
    allocation.NEW_OWNER.id,
    onboarding.LEAD.id,
    onboarding.DIRECT_HANDOVER.id,
    onboarding.CIRCLE_BACK.id,
    lifecycle.ACCOUNT_REVIEW.id,
    lifecycle.CSM_DOWNGRADE.id,
    lifecycle.STAGE.id,
    qualification.RECOMMENDATION.id,
    episodes.NURTURE_FOLLOW_UP.id,
    episodes.QUALIFIED_WINDOW.id,
    scoring.LEAD_SCORE.id,
    demo.CLASSIFICATION.id,
    demo.INSTANT_SCHEDULER.id,
)

# The account rules after routing and allocation, in the order their writes are claimed.
_AFTER_ROUTING: tuple[AccountRule, ...] = (
    onboarding.LEAD,
    onboarding.CIRCLE_BACK,
    lifecycle.ACCOUNT_REVIEW,
    lifecycle.CSM_DOWNGRADE,
    episodes.NURTURE_FOLLOW_UP,
    episodes.QUALIFIED_WINDOW,
)


def _attribute(winner: Decision, qualified: list[Decision], policy: Policy) -> Decision:
    """The routing winner with the lead it creates: the trigger that routed it and, for a product-led
    lead, the qualification recommendation and its reasons. A "disqualify" recommendation holds the
    lead back only when `[rules.qualification] create_disqualified` is false (the handbook: the
    lead is created and a TAM decides)."""
    verdict = next((d for d in qualified if d.fired), None)
    if verdict is None:
        return _with_lead(winner, _routing.lead_intent(winner, policy))
    label = verdict.inputs.get("recommendation")
    if label == "disqualify" and not policy.qualification.create_disqualified:
        why = "qualification recommends disqualify ([rules.qualification] create_disqualified = false)"
        return wanting_nothing(winner, f"{winner.reason}; but {why}", guarded_by=why)
    return _with_lead(winner, _routing.lead_intent(winner, policy, str(label), verdict.reason))


def _with_lead(d: Decision, lead: _LeadIntent) -> Decision:
    """`d` wanting `lead` (the constructor: `dataclasses.replace` costs several times more, once per
    routed account)."""
    return Decision(
        d.rule, d.record, d.fired, d.reason, d.inputs, d.unknown, d.traits, d.segments, d.manages, d.team,
        d.region, d.review, d.guarded_by, lead, d.task, d.also_matched, d.signals,
    )  # fmt: skip


def _also(decision: Decision, winner: Decision) -> Decision:
    """A trigger that matched but lost to `winner`: kept for explain, writes nothing."""
    return replace(
        decision,
        traits={},
        segments=frozenset(),
        lead=None,
        reason=f"{decision.reason} (also matched; {winner.rule} wins)",
    )


def _contend(decision: Decision, winner: Decision | None) -> tuple[Decision, Decision | None]:
    """(the decision as kept, the winner after it): the first routing decision that fires wins; one
    that fires after it only explains."""
    if not decision.fired:
        return decision, winner
    if winner is not None:
        return _also(decision, winner), winner
    return decision, decision


def _custom(account: Account, ctx: AccountContext, policy: Policy, now: datetime, trigger: CompiledTrigger) -> Decision:
    """A config-defined trigger, held back by the same guards as the built-in ones."""
    decision = trigger.evaluate(account, ctx, now)
    if not decision.fired:
        return decision
    guard = _guards.routing_guard(account, ctx, policy, now, family=_routing.family_of_team(decision.team))
    if guard is not None:
        return replace(decision, fired=False, traits={}, guarded_by=guard, reason=f"{decision.reason}; but {guard}")
    if decision.team == "TAM":
        segment = frozenset({policy.routing.product_led_segment})
        return replace(decision, segments=segment, manages=segment)
    return decision


def managed_segments(policy: Policy) -> frozenset[str]:
    """Every segment some rule adds when it holds and removes when it stops holding."""
    return _managed_segments(policy)


@_per_policy
def _managed_segments(policy: Policy) -> frozenset[str]:
    return frozenset(
        {
            policy.routing.product_led_segment,
            policy.allocation.segment,
            policy.onboarding.segment,
            policy.lifecycle.segment,
            policy.qualification.segment,
        }
    )


def managed_by(rule: str, policy: Policy, custom: Sequence[CompiledTrigger] = ()) -> frozenset[str]:
    """The managed segments `rule` adds while it holds and removes once it stops holding (the
    `manages` of its decisions): what must be left as it is while the rule is switched off."""
    own = {
        allocation.NEW_OWNER.id: policy.allocation.segment,
        onboarding.LEAD.id: policy.onboarding.segment,
        lifecycle.ACCOUNT_REVIEW.id: policy.lifecycle.segment,
        lifecycle.CSM_DOWNGRADE.id: policy.lifecycle.segment,
        qualification.RECOMMENDATION.id: policy.qualification.segment,
    }
    if rule in own:
        return frozenset({own[rule]})
    # Product-led triggers and config-defined TAM triggers put their account in the product-led segment.
    if rule.startswith("product_led.") or any(t.id == rule and t.trigger.team == "TAM" for t in custom):
        return frozenset({policy.routing.product_led_segment})
    return frozenset()


def _qualification(
    account: Account, ctx: AccountContext, policy: Policy, now: datetime, winner: Decision | None, full: bool
) -> list[Decision]:
    """Qualification of the product-led lead routing has just chosen, or of the one its owner
    decided (`qualification.owner_decided`: the recommendation follows them); otherwise nothing to
    qualify (said only when every verdict is explained)."""
    if (winner is not None and winner.team == "TAM") or qualification.owner_decided(account, ctx, policy):
        return [qualification.RECOMMENDATION.decide(account, ctx, policy, now)]
    return [qualification.not_product_led(account, policy)] if full else []


def _stage(
    account: Account,
    ctx: AccountContext,
    policy: Policy,
    now: datetime,
    decisions: list[Decision],
    winner: Decision | None,
) -> Decision:
    """lifecycle.stage of the account as this evaluation leaves it: with the segments it is about to
    get, and with the lead routing is about to create for it."""
    wanted: frozenset[str] = frozenset()
    for decision in decisions:
        if decision.fired and decision.segments:
            wanted = wanted | decision.segments
    segments = account.segments
    if segments or wanted:  # most accounts are in no segment and get none
        segments = (segments - _managed_segments(policy)) | wanted
    if winner is not None and winner.lead is not None and not ctx.open_leads:
        if ctx is EMPTY:  # most routed accounts have nothing in Salesforce yet
            ctx = _planned_context(winner.rule, winner.lead.lead_source, now)
        else:
            planned = _planned_lead(winner.rule, winner.lead.lead_source, now)
            ctx = AccountContext(
                (*ctx.leads, planned),
                ctx.opportunities,
                ctx.otherwise_lead,
                ctx.assigned_owners,
                ctx.closed,
                new=ctx.new,
            )
    return lifecycle.stage_with(account, segments, ctx, policy, now)


@lru_cache(maxsize=256)
def _planned_lead(rule: str, lead_source: str | None, now: datetime) -> Lead:
    """The lead routing is about to create, as the lifecycle stage reads it (nothing in it names
    the account: one per trigger, source and clock, shared by every account it routes)."""
    return Lead(
        id=f"planned:{rule}",
        system_modstamp=now,
        lead_source=lead_source,
        routing_rule=rule,
        status="Open - Not Contacted",
    )


@lru_cache(maxsize=256)
def _planned_context(rule: str, lead_source: str | None, now: datetime) -> AccountContext:
    """The context of an account with nothing in Salesforce once routing's lead is created: that lead
    alone (shared as `_planned_lead` is, with its open leads computed once)."""
    return AccountContext((_planned_lead(rule, lead_source, now),))


def _churned(account: Account) -> Decision:
    """The verdict on a churned account: no rule decides on it (no routing, segment, trait or task)."""
    when = account.churned_at.date().isoformat() if account.churned_at is not None else "?"
    reason = f"churned on {when}: a churned account leaves every book, no rule decides on it"
    return Decision(lifecycle.STAGE.id, account.id, False, reason, {"churned_at": when})


def _allocates(owner: Decision | None, policy: Policy) -> bool:
    """Whether `allocation.new_owner` acts on the account in this plan: it fired and is not switched
    off in `[rules.enabled]` (`sync.decider.switched_off` withdraws a switched-off rule's verdict only
    after the evaluation, so the evaluation itself must not count on it either)."""
    return owner is not None and owner.fired and allocation.NEW_OWNER.id not in policy.disabled


def _as_allocated(account: Account, owner: Decision | None, policy: Policy) -> Account:
    """The account as the routing guards (and the qualification of what routing chose, which reads
    them) must see it. Its allocation segment (`TAM/CSM Candidate`) says someone is working the
    account (`[rules.guards] active_sales_segments`, as the handbook lists it:
    plg-lead-qualification.md step 4, sales-handover.md), unless `allocation.new_owner` puts it
    there in this very plan: then the segment is crm-sync's own doing, not someone else's
    engagement (as crm-sync's own open lead is not: `rules.guards.routing_guard`). Otherwise a $20k+
    account without an owner that a routing trigger matches (the product-led band's top, MRR 1,667,
    is ARR 20,004; a forecast spike or a startup roll-off at any MRR) would be routed and qualified
    on the first cycle and held, its lead's segment and qualification taken away, on the next. The
    rules cannot tell who put an account there: while allocation puts it there too, a person's
    segment is read as crm-sync's. With allocation switched off, the segment is always a person's.
    """
    segment = policy.allocation.segment
    if segment not in account.segments or not _allocates(owner, policy):
        return account  # switched off ([rules.enabled]), crm-sync puts no account there: a person did
    return replace(account, segments=account.segments - {segment})


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

    With `full=False` (a cycle) rules that cannot fire (their `may_fire` is false) are skipped
    instead of explained; the decisions that fire are the same. A churned account leaves every
    book: its one verdict says so, and nothing fires.
    """
    if account.churned_at is not None:
        return [_churned(account)]
    if not full:
        return _evaluate_fast(account, ctx, policy, now, custom)
    owner: list[Decision] = []
    if full or allocation.NEW_OWNER.may_fire(account, ctx, policy, now):
        owner.append(allocation.NEW_OWNER.decide(account, ctx, policy, now))
    routed_as = _as_allocated(account, owner[0] if owner else None, policy)
    winner, routing = _routing.route_account(routed_as, ctx, policy, now, fast=not full)
    for trigger in custom:
        decision, winner = _contend(_custom(routed_as, ctx, policy, now, trigger), winner)
        routing.append(decision)
    handover: list[Decision] = []
    if full or onboarding.DIRECT_HANDOVER.may_fire(routed_as, ctx, policy, now):
        decision, winner = _contend(onboarding.DIRECT_HANDOVER.decide(routed_as, ctx, policy, now), winner)
        handover.append(decision)
    qualified = _qualification(routed_as, ctx, policy, now, winner, full)
    if winner is not None:
        routed = _attribute(winner, qualified if winner.team == "TAM" else [], policy)
        routing = [routed if d is winner else d for d in routing]
        handover = [routed if d is winner else d for d in handover]
        winner = routed if routed.fired else None
    decisions = [*qualified, *routing, *handover, *owner]
    claimed = _claimed(ctx, winner is not None or _allocates(owner[0] if owner else None, policy), routing, handover)
    for rule in _AFTER_ROUTING:
        if full or rule.may_fire(account, claimed, policy, now):
            decisions.append(rule.decide(account, claimed, policy, now))
    decisions.append(_stage(account, ctx, policy, now, decisions, winner))
    return decisions


def _evaluate_fast(
    account: Account, ctx: AccountContext, policy: Policy, now: datetime, custom: Sequence[CompiledTrigger]
) -> list[Decision]:
    """`evaluate_account(full=False)` of an account that has not churned: the same steps, for the
    rules whose `may_fire` holds, without the lists a full evaluation builds to explain the others
    (a cycle runs this for every account of the book)."""
    owner = (
        allocation.NEW_OWNER.decide(account, ctx, policy, now) if _OWNER_MAY_FIRE(account, ctx, policy, now) else None
    )
    routed_as = _as_allocated(account, owner, policy)
    winner, routing = _routing.route_account(routed_as, ctx, policy, now, fast=True)
    for trigger in custom:
        decision, winner = _contend(_custom(routed_as, ctx, policy, now, trigger), winner)
        routing.append(decision)
    handover = None
    if _HANDOVER_MAY_FIRE(routed_as, ctx, policy, now):
        handover, winner = _contend(onboarding.DIRECT_HANDOVER.decide(routed_as, ctx, policy, now), winner)
    if winner is None:
        decisions = routing
        if qualification.owner_decided(account, ctx, policy):
            decisions = [qualification.RECOMMENDATION.decide(routed_as, ctx, policy, now), *routing]
    else:
        tam = winner.team == "TAM"
        asked = tam or qualification.owner_decided(account, ctx, policy)
        qualified = [qualification.RECOMMENDATION.decide(routed_as, ctx, policy, now)] if asked else []
        routed = _attribute(winner, qualified if tam else [], policy)
        decisions = [*qualified, *[routed if d is winner else d for d in routing]]
        if handover is winner:
            handover = routed
        winner = routed if routed.fired else None
    if handover is not None:
        decisions.append(handover)
    if owner is not None:
        decisions.append(owner)
    claimed = _claimed(ctx, winner is not None or _allocates(owner, policy), routing, (handover,) if handover else ())
    for may_fire, decide in _AFTER_ROUTING_GATED:
        if may_fire(account, claimed, policy, now):
            decisions.append(decide(account, claimed, policy, now))
    decisions.append(_stage(account, ctx, policy, now, decisions, winner))
    return decisions


def _claimed(ctx: AccountContext, won: bool, *verdicts: Sequence[Decision]) -> AccountContext:
    """The context onboarding.lead reads: a routing trigger, the handover or a New Owner already
    makes the account a lead (`won`), and so does a trigger that matched it and a guard held back
    (the cool-off after a person's "no", ...): a lead by the handbook's criteria, held, is not
    "otherwise" an onboarding lead (accounts-overview.md: "Not otherwise a lead")."""
    if ctx.otherwise_lead:
        return ctx
    if won:
        why = "a routing rule fired"
    else:
        held = next((d for group in verdicts for d in group if d.guarded_by is not None), None)
        if held is None:
            return ctx
        why = f"{held.rule} matched, held back: {held.guarded_by}"
    return AccountContext(
        ctx.leads, ctx.opportunities, True, ctx.assigned_owners, ctx.closed, new=ctx.new, otherwise_why=why
    )


_HANDOVER_MAY_FIRE = onboarding.DIRECT_HANDOVER.may_fire
_OWNER_MAY_FIRE = allocation.NEW_OWNER.may_fire
_AFTER_ROUTING_GATED = tuple((rule.may_fire, rule.decide) for rule in _AFTER_ROUTING)


def _triaged_away(lead: Lead) -> str | None:
    """Why a demo request the triage is not reading now (closed, converted) still sees no instant
    scheduler: its `Classification__c` says support or spam (e.g. the spam crm-sync dropped,
    Disqualified, on an earlier cycle: found by a handbook audit, the scheduler showed again on
    the next cycle). The scheduler alone: a lead of another source is routed whatever the field
    says (a person who gave a triaged lead to sales@ hands it to a TAE)."""
    label = (lead.classification or "").strip().casefold()
    return f"classified {label}" if label in ("support", "spam") else None


def evaluate_lead(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime, *, full: bool = True) -> list[Decision]:
    """Every lead rule's verdict: the score out of 70, demo triage (support and spam skip the
    round robin and see no instant scheduler), the instant scheduler, and lead-source routing.
    With `full=False` (a cycle) the lead-source triggers that cannot fire are skipped instead of
    explained; the decisions that fire are the same."""
    classification = demo.CLASSIFICATION.decide(lead, ctx, policy, now)
    # Support and spam (and a submission the LLM has not yet read) skip the round robin, and see no
    # booking link for a TAE either: the scheduler is for "customers that want to book a demo".
    skipped = None
    if classification.inputs.get("skip_round_robin"):
        label = classification.inputs.get("label")
        skipped = f"classified {label}" if label else "awaiting the LLM triage"
    scheduler = demo.INSTANT_SCHEDULER.decide(lead, ctx, policy, now)
    hidden = skipped
    if (
        hidden is None
        and "label" not in classification.inputs
        and same_picklist(lead.lead_source, policy.demo.lead_source)
    ):
        hidden = _triaged_away(lead)  # a demo request not triaged now (closed, converted): as it was triaged
    if hidden is not None and scheduler.fired:
        shown = scheduler.reason.removesuffix("; instant scheduler shown")
        scheduler = replace(scheduler, fired=False, reason=f"{shown}; but {hidden}: no instant scheduler")
    decisions = [scoring.LEAD_SCORE.decide(lead, ctx, policy, now), classification, scheduler]
    winner, routing = _routing.route_lead(lead, ctx, policy, now, fast=not full)
    if winner is not None and skipped is not None:
        routing = [
            replace(d, fired=False, lead=None, reason=f"{d.reason}; but {skipped}: skips the round robin")
            if d is winner
            else d
            for d in routing
        ]
    return decisions + routing
