"""Lead routing arbitration (rules.md §1): every trigger in the configured order, the first that fires
wins, the others are listed as "also matched".

Guards (rules.guards.routing_guard) apply to every account trigger: a guarded trigger comes back with
`fired=False`, `guarded_by` set and the reason `<trigger reason>; but <guard>`. Manual referrals
(`AM referral`, `AE referral`, `Onboarding referral` segments) are explicit requests from a person, so
they skip the cool-off after a disqualification (someone asking again is new information), except
after a person closed crm-sync's lead for the team the referral asks (that team has answered: the
segment stays, and it must not bring a new lead and owner after every "no"), and still respect
every other guard: already owned, an open lead or opportunity, an active sales segment and a
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
from rules import bdr, new_business, product_led, signals
from rules.base import AccountRule, Decision, LeadIntent, LeadRule, per_policy
from rules.context import AccountContext, LeadContext
from rules.episodes import Family, family_of_rule
from rules.guards import may_be_routed
from rules.policy import RoutingPolicy

if TYPE_CHECKING:
    from rules.policy import Policy

__all__ = [
    "ACCOUNT_TRIGGERS",
    "LEAD_TRIGGERS",
    "lead_intent",
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
        signals.COOL_COMPANY,
        signals.HIRING_INCREASE,
        signals.WEB_SOCIAL_INCREASE,
        signals.FUNDRAISE,
        new_business.AE_REFERRAL,
        bdr.CLOSED_LOST_UNRESPONSIVE,
        signals.LOW_USAGE,
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
    if fast:
        if not may_be_routed(account, policy):
            return None, []
        # The screens of `_SCREENED`, each read once: most accounts fail all four, and are spared
        # the gates of nine triggers.
        mrr = account.mrr
        passed = (
            (1 if account.segments else 0)
            | (2 if ctx.opportunities else 0)
            | (4 if mrr is not None and mrr <= policy.zero_spend.mrr_max else 0)
            | (8 if account.startup_plan_ends_at is not None or account.startup_credits_used is not None else 0)
        )
        return _arbitrate(
            [
                rule.decide(account, ctx, policy, now)
                for rule in _policy_screened_triggers(policy)[passed]
                if rule.may_fire(account, ctx, policy, now)
            ]
        )
    return _arbitrate([rule.decide(account, ctx, policy, now) for rule in _account_triggers(policy.routing.order)])


def route_lead(
    lead: Lead, ctx: LeadContext, policy: Policy, now: datetime, *, fast: bool = False
) -> tuple[Decision | None, list[Decision]]:
    """The lead's routing by its LeadSource: (the winning decision or None, every lead-source trigger's
    decision in `policy.routing.order`). The winner carries `also_matched` and its lead intent.
    `fast` leaves out the triggers that cannot fire (their `may_fire` is false), as a cycle does."""
    triggers = _policy_lead_triggers(policy)
    if fast:
        triggers = tuple([rule for rule in triggers if rule.may_fire(lead, ctx, policy, now)])
    return _arbitrate([rule.decide(lead, ctx, policy, now) for rule in triggers])


@lru_cache(maxsize=64)
def _account_triggers(order: tuple[str, ...]) -> tuple[AccountRule, ...]:
    """The account triggers in the configured order, each once (computed once per order)."""
    return tuple(ACCOUNT_TRIGGERS[rule] for rule in dict.fromkeys(order) if rule in ACCOUNT_TRIGGERS)


# A condition each of these triggers' `may_fire` checks first, shared by several, read once per
# account by `route_account` as one bit of a mask: 1 the account is in some segment (the
# referrals), 2 it has an opportunity in Salesforce (closed lost), 4 its MRR is known and at most
# the $0-spend ceiling (the $0-spend signals), 8 it has a startup plan end or startup credits used
# (the startup triggers). A trigger not listed has no screen.
_SCREENED: Mapping[str, int] = {
    product_led.AM_REFERRAL.id: 1,
    new_business.ONBOARDING_REFERRAL.id: 1,
    new_business.AE_REFERRAL.id: 1,
    bdr.CLOSED_LOST_UNRESPONSIVE.id: 2,
    signals.HIRING_INCREASE.id: 4,
    signals.WEB_SOCIAL_INCREASE.id: 4,
    signals.FUNDRAISE.id: 4,
    product_led.STARTUP_ROLLOFF.id: 8,
    new_business.STARTUP_CREDITS.id: 8,
}


@lru_cache(maxsize=64)
def _screened_triggers(order: tuple[str, ...]) -> tuple[tuple[AccountRule, ...], ...]:
    """For each mask of passed screens (0 to 15, `_SCREENED`'s bits), the account triggers in the
    configured order whose screen it passes (or that have none): an account walks only those,
    not every trigger with a test of its screen."""
    triggers = _account_triggers(order)
    return tuple(
        tuple(rule for rule in triggers if rule.id not in _SCREENED or _SCREENED[rule.id] & mask) for mask in range(16)
    )


@lru_cache(maxsize=64)
def _lead_triggers(order: tuple[str, ...]) -> tuple[LeadRule, ...]:
    """The lead-source triggers in the configured order, each once (computed once per order)."""
    return tuple(LEAD_TRIGGERS[rule] for rule in dict.fromkeys(order) if rule in LEAD_TRIGGERS)


# The two above looked up by the policy's identity: hashing the configured order (twenty ids) to
# find them in their caches costs more than most gates, once per record.
@per_policy
def _policy_screened_triggers(policy: Policy) -> tuple[tuple[AccountRule, ...], ...]:
    return _screened_triggers(policy.routing.order)


@per_policy
def _policy_lead_triggers(policy: Policy) -> tuple[LeadRule, ...]:
    return _lead_triggers(policy.routing.order)


def _arbitrate(decisions: list[Decision]) -> tuple[Decision | None, list[Decision]]:
    """The first fired decision wins; each other fired one stays fired (it matched) but wants
    nothing written, and its reason says who won."""
    if not decisions:  # most accounts: no trigger could fire
        return None, decisions
    fired = [i for i, d in enumerate(decisions) if d.fired]
    if not fired:
        return None, decisions
    first, others = fired[0], fired[1:]
    if not others:  # the common case: nothing else matched, nothing to add
        return decisions[first], decisions
    winner = replace(decisions[first], also_matched=tuple(decisions[i].rule for i in others))
    result = list(decisions)
    result[first] = winner
    for i in others:
        loser = decisions[i]
        result[i] = replace(
            loser,
            traits={},
            segments=frozenset(),
            lead=None,
            reason=f"{loser.reason} (also matched; {winner.rule} wins)",
        )
    return winner, result


# The setting of `RoutingPolicy` naming the LeadSource of the lead created for an account a person
# referred (data-model.md's values by default: "AM referral", "AE referral", "Onboarding referral").
_REFERRAL_SOURCES: Mapping[str, str] = {
    "product_led.am_referral": "am_referral_source",
    "new_business.ae_referral": "ae_referral_source",
    "new_business.onboarding_referral": "onboarding_referral_source",
    "onboarding.direct_handover": "onboarding_referral_source",
}
# The family of a config-defined trigger's lead, by its team.
_TEAM_FAMILIES: Mapping[str, Family] = {"TAE": "new_business", "BDR": "bdr"}


def family_of_team(team: str | None) -> Family:
    """The family of a config-defined trigger, by its team (its lead's LeadSource says the same):
    TAE new business, BDR the BDRs', any other team (a TAM's) product-led."""
    return _TEAM_FAMILIES.get(team or "", "product_led")


def lead_source_for(rule: str, team: str | None = None, routing: RoutingPolicy | None = None) -> str:
    """The LeadSource a lead created by `rule` carries: referrals keep their name; a signal's lead
    carries its family's source (accounts-overview.md): product-led signals for a TAM
    "Product-led", new-business signals for a TAE (big fish, startup credits, $0-spend triggers,
    cool company) "New business signal", BDR signals "BDR"; a config-defined trigger's by its team."""
    routing = routing or _DEFAULT_ROUTING
    referral = _REFERRAL_SOURCES.get(rule)
    if referral is not None:
        return str(getattr(routing, referral))
    family = family_of_rule(rule) or family_of_team(team)
    if family == "new_business":
        return routing.new_business_source
    if family == "bdr":
        return routing.bdr_source
    return routing.product_led_source


_DEFAULT_ROUTING = RoutingPolicy()


def lead_intent(
    winner: Decision, policy: Policy, qualification: str | None = None, qualification_reason: str | None = None
) -> LeadIntent:
    """What the lead created for a routed account carries: its LeadSource and the trigger that
    routed it (`Routing_Rule__c`, the rule id; `Routing_Reason__c`, the rule id and its reason), so
    conversion can be measured per trigger; for a product-led lead, the qualification
    recommendation and its reasons."""
    return LeadIntent(
        lead_source=lead_source_for(winner.rule, winner.team, policy.routing),
        routing_rule=winner.rule,
        routing_reason=f"{winner.rule}: {winner.reason}",
        qualification=qualification,
        qualification_reason=qualification_reason,
    )
