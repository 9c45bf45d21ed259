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

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from core.model import Account, Lead
from rules import bdr, new_business, product_led
from rules.base import Decision
from rules.context import AccountContext
from rules.policy import RoutingPolicy

if TYPE_CHECKING:
    from rules.policy import Policy

__all__ = [
    "ACCOUNT_TRIGGERS",
    "LEAD_TRIGGERS",
    "AccountTrigger",
    "LeadTrigger",
    "lead_source_for",
    "route_account",
    "route_lead",
]

AccountTrigger = Callable[[Account, AccountContext, "Policy", RoutingPolicy, datetime], Decision]
LeadTrigger = Callable[[Lead, RoutingPolicy], Decision]

# Rule id -> account trigger. `new_business.onboarding_referral` is both an account trigger (segment)
# and a lead-source trigger (LeadSource).
ACCOUNT_TRIGGERS: Mapping[str, AccountTrigger] = {
    "product_led.mrr_band": product_led.mrr_band,
    "product_led.scale_high_icp": product_led.scale_high_icp,
    "product_led.startup_rolloff": product_led.startup_rolloff,
    "product_led.forecast_spike": product_led.forecast_spike,
    "product_led.am_referral": product_led.am_referral,
    "new_business.onboarding_referral": new_business.onboarding_referral,
    "new_business.big_fish": new_business.big_fish,
    "new_business.startup_credits": new_business.startup_credits,
    "new_business.ae_referral": new_business.ae_referral,
    "bdr.closed_lost_unresponsive": bdr.closed_lost_unresponsive,
}

# Rule id -> lead-source trigger.
LEAD_TRIGGERS: Mapping[str, LeadTrigger] = {
    "new_business.demo_request": new_business.demo_request,
    "new_business.sales_email": new_business.sales_email,
    "new_business.onboarding_referral": new_business.onboarding_referral_lead,
    "new_business.trust_center": new_business.trust_center,
    "new_business.campaign": new_business.campaign,
    "new_business.bdr_qualified": new_business.bdr_qualified,
}


def route_account(
    account: Account,
    ctx: AccountContext,
    policy: Policy,
    routing: RoutingPolicy,
    now: datetime,
    only: Callable[[str], bool] | None = None,
) -> tuple[Decision | None, list[Decision]]:
    """The account's routing: (the winning decision or None, every account trigger's decision in
    `routing.order`, fired or not, for `explain`).

    The winner is the first fired trigger in `routing.order`; it carries `also_matched` (the other fired
    ids), the `routing_reason` trait and, for a TAM, the `Product-led lead` segment. The other fired
    decisions stay `fired=True` (they matched) but want no trait and no segment, so only the winner
    writes. Ids in the order that are not account triggers (lead sources) are skipped, and so are
    triggers for which `only(rule_id)` is false (a cycle's fast path: they cannot fire).
    """
    return _arbitrate(
        [
            ACCOUNT_TRIGGERS[r](account, ctx, policy, routing, now)
            for r in _ids(routing, ACCOUNT_TRIGGERS)
            if only is None or only(r)
        ]
    )


def route_lead(lead: Lead, routing: RoutingPolicy) -> tuple[Decision | None, list[Decision]]:
    """The lead's routing by its LeadSource: (the winning decision or None, every lead-source trigger's
    decision in `routing.order`). The winner carries `also_matched` and its `lead_fields`."""
    return _arbitrate([LEAD_TRIGGERS[r](lead, routing) for r in _ids(routing, LEAD_TRIGGERS)])


def _ids(routing: RoutingPolicy, triggers: Mapping[str, object]) -> tuple[str, ...]:
    return _ordered(routing.order, tuple(triggers))


@lru_cache(maxsize=64)
def _ordered(order: tuple[str, ...], known: tuple[str, ...]) -> tuple[str, ...]:
    """The configured order, deduplicated, of the rules in `known` (computed once per order)."""
    return tuple(rule for rule in dict.fromkeys(order) if rule in known)


def _arbitrate(decisions: list[Decision]) -> tuple[Decision | None, list[Decision]]:
    fired = [i for i, d in enumerate(decisions) if d.fired]
    if not fired:
        return None, decisions
    first, others = fired[0], fired[1:]
    winner = replace(decisions[first], also_matched=tuple(decisions[i].rule for i in others))
    result = list(decisions)
    result[first] = winner
    for i in others:
        result[i] = replace(decisions[i], traits={}, segments=frozenset(), lead_fields={})
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
