"""Lead routing arbitration (rules.md §1): every trigger in the configured order, the first that fires
wins, the others are listed as "also matched".

Guards (rules.guards.routing_guard) apply to every account trigger: a guarded trigger comes back with
`fired=False`, `guarded_by` set and the reason `<trigger reason>; but <guard>`. Manual referrals
(`AM referral`, `AE referral`, `Onboarding referral` segments) are explicit requests from a person, so
they skip the cool-off after a disqualification (someone asking again is new information), but still
respect every other guard: already owned, an open lead or opportunity, an active sales segment and a
Slack channel all mean somebody is already working the account, and a second lead would be the double
reach-out the handbook warns about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from core.model import Account, Lead
from rules import bdr, new_business, product_led
from rules.base import AccountRule, Decision, LeadRule
from rules.context import AccountContext, LeadContext
from rules.guards import may_be_routed

if TYPE_CHECKING:
    from rules.policy import Policy

__all__ = [
    "ACCOUNT_TRIGGERS",
    "LEAD_TRIGGERS",
    "lead_source_for",
    "route_account",
    "route_lead",
]

# Rule id -> account trigger. `new_business.onboarding_referral` is both an account trigger (segment)
# and a lead-source trigger (LeadSource).
ACCOUNT_TRIGGERS: Mapping[str, AccountRule] = {
    rule.id: rule
    for rule in (
        product_led.MRR_BAND,
        product_led.SCALE_HIGH_ICP,
        product_led.STARTUP_ROLLOFF,
        product_led.FORECAST_SPIKE,
        product_led.AM_REFERRAL,
        new_business.ONBOARDING_REFERRAL,
        new_business.BIG_FISH,
        new_business.STARTUP_CREDITS,
        new_business.AE_REFERRAL,
        bdr.CLOSED_LOST_UNRESPONSIVE,
    )
}

# Rule id -> lead-source trigger.
LEAD_TRIGGERS: Mapping[str, LeadRule] = {
    rule.id: rule
    for rule in (
        new_business.DEMO_REQUEST,
        new_business.SALES_EMAIL,
        new_business.ONBOARDING_REFERRAL_LEAD,
        new_business.TRUST_CENTER,
        new_business.CAMPAIGN,
        new_business.BDR_QUALIFIED,
    )
}


def route_account(
    account: Account, ctx: AccountContext, policy: Policy, now: datetime, *, fast: bool = False
) -> tuple[Decision | None, list[Decision]]:
    """The account's routing: (the winning decision or None, every account trigger's decision in
    `policy.routing.order`, fired or not, for `explain`).

    The winner is the first fired trigger in the order; it carries `also_matched` (the other fired
    ids), the `routing_reason` trait and, for a TAM, the `Product-led lead` segment. The other fired
    decisions stay `fired=True` (they matched) but want no trait and no segment, so only the winner
    writes. Ids in the order that are not account triggers (lead sources) are skipped. With `fast`
    (a cycle), so is every trigger that cannot fire: all of them for an account with an owner key
    role, otherwise those whose `may_fire` is false.
    """
    triggers = _account_triggers(policy.routing.order)
    if fast:
        if not may_be_routed(account, policy):
            return None, []
        triggers = tuple(rule for rule in triggers if rule.may_fire(account, ctx, policy, now))
    return _arbitrate([rule.decide(account, ctx, policy, now) for rule in triggers])


def route_lead(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime) -> tuple[Decision | None, list[Decision]]:
    """The lead's routing by its LeadSource: (the winning decision or None, every lead-source trigger's
    decision in `policy.routing.order`). The winner carries `also_matched` and its lead intent."""
    return _arbitrate([rule.decide(lead, ctx, policy, now) for rule in _lead_triggers(policy.routing.order)])


@lru_cache(maxsize=64)
def _account_triggers(order: tuple[str, ...]) -> tuple[AccountRule, ...]:
    """The account triggers in the configured order, each once (computed once per order)."""
    return tuple(ACCOUNT_TRIGGERS[rule] for rule in dict.fromkeys(order) if rule in ACCOUNT_TRIGGERS)


@lru_cache(maxsize=64)
def _lead_triggers(order: tuple[str, ...]) -> tuple[LeadRule, ...]:
    """The lead-source triggers in the configured order, each once (computed once per order)."""
    return tuple(LEAD_TRIGGERS[rule] for rule in dict.fromkeys(order) if rule in LEAD_TRIGGERS)


def _arbitrate(decisions: list[Decision]) -> tuple[Decision | None, list[Decision]]:
    fired = [i for i, d in enumerate(decisions) if d.fired]
    if not fired:
        return None, decisions
    first, others = fired[0], fired[1:]
    winner = replace(decisions[first], also_matched=tuple(decisions[i].rule for i in others))
    result = list(decisions)
    result[first] = winner
    for i in others:
        result[i] = replace(decisions[i], traits={}, segments=frozenset(), lead=None)
    return winner, result


# LeadSource of the lead created for an account routed by a rule (data-model.md's values).
_LEAD_SOURCES: Mapping[str, str] = {
    "product_led.am_referral": "AM referral",
    "new_business.ae_referral": "AE referral",
    "new_business.onboarding_referral": "Onboarding referral",
    "onboarding.direct_handover": "Onboarding referral",
    "bdr.closed_lost_unresponsive": "BDR",
}


def lead_source_for(rule: str) -> str:
    """The LeadSource a lead created by `rule` carries: referrals keep their name, the BDR rule is
    "BDR", and every signal read from product usage (product-led triggers, big fish, startup
    credits, config-defined triggers) is "Product-led"."""
    return _LEAD_SOURCES.get(rule, "Product-led")
