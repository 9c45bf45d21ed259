"""The rules' verdicts on one record: what a cycle's planner, `explain` and what-if share.

A `Decider` is the policy (thresholds, pools' regions, custom triggers), what the Salesforce
mirror says about the record (`SalesforceFacts`) and the rules' clock. It holds no state of a
cycle and reads no service, so `explain` and `--compare-rules` judge a record exactly as a cycle
would without running one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from core.model import Account, Lead
from rules import CompiledTrigger, Decision, Policy, evaluate_account, evaluate_lead
from rules.allocation import owner_region
from rules.base import wanting_nothing
from rules.context import LeadContext
from rules.demo import awaits_scheduler, awaits_triage
from rules.new_business import big_fish_candidate
from sync.config import Config
from sync.facts import SalesforceFacts
from sync.signups import Signups
from sync.verdicts import Verdicts

__all__ = ["Decider", "routing_winner", "switched_off"]

_ROUTED_TEAMS = ("TAM", "TAE", "BDR")


def routing_winner(decisions: Sequence[Decision]) -> Decision | None:
    """The decision that makes an account a Salesforce lead: the routing rule that fired (the
    first in the configured order; the others only "also matched") for a team with a lead pool,
    carrying the lead it creates (its own rule id as `Routing_Rule__c`). The qualification of a
    product-led lead is not a winner: it rides on the winner's lead."""
    return next(
        (
            d
            for d in decisions
            if d.fired and d.team in _ROUTED_TEAMS and d.lead is not None and d.lead.routing_rule == d.rule
        ),
        None,
    )


def switched_off(decision: Decision) -> Decision:
    """A verdict of a rule `[rules.enabled]` switches off: judged as usual (explain shows it), it
    wants nothing written; what it manages stays listed, so the planner leaves those segments as
    they are."""
    would = "would fire" if decision.fired else "would not fire"
    return wanting_nothing(decision, f"switched off ([rules.enabled]); {would}: {decision.reason}")


def _off(decisions: list[Decision], disabled: frozenset[str]) -> list[Decision]:
    return [switched_off(d) if d.rule in disabled else d for d in decisions]


@dataclass(frozen=True)
class Decider:
    policy: Policy
    facts: SalesforceFacts
    now: datetime
    custom_triggers: Sequence[CompiledTrigger] = ()
    # Rules `[rules.enabled]` switches off: routing triggers are left out of `policy`'s order and
    # the custom triggers (another may win instead), the others judged but want nothing.
    disabled: frozenset[str] = frozenset()
    # The configured classifier's verdicts kept between cycles (a cycle's; `sync.verdicts`): without
    # them (explain, what-if) the rule classifies the submission itself, with the same verdict.
    verdicts: Verdicts | None = None
    # Each company's first signup in the mirror (`sync.signups`), asked for a Big Fish candidate;
    # without it (a book with no mirror) every candidate is taken for its company's first.
    signups: Signups | None = None
    # The Vitally trait that holds when a lead of the account was disqualified (`[vitally.traits]`).
    disqualified_trait: str = "lead_disqualified_at"

    @classmethod
    def of(
        cls,
        config: Config,
        facts: SalesforceFacts,
        now: datetime,
        verdicts: Verdicts | None = None,
        signups: Signups | None = None,
    ) -> Decider:
        """The configured rules (policy and custom triggers) over `facts`, judged at `now`, with the
        rules `[rules.enabled]` switches off left out of the routing order (and the classifier's
        kept `verdicts`, in a cycle; the mirror's `signups`)."""
        policy, disabled = config.policy, config.policy.disabled
        custom = tuple(trigger for trigger in config.custom_triggers if trigger.id not in disabled)
        if disabled:
            order = tuple(rule for rule in policy.routing.order if rule not in disabled)
            policy = replace(policy, routing=replace(policy.routing, order=order))
        trait = config.vitally.trait_keys.get("lead_disqualified_at", "lead_disqualified_at")
        return cls(policy, facts, now, custom, disabled, verdicts, signups, trait)

    def account(self, account: Account, *, full: bool = True) -> list[Decision]:
        """Every rule's verdict on one account, with its Salesforce context, in the configured
        order (rules.evaluate_account); `full=False` skips explaining the rules that cannot fire,
        as a cycle does."""
        context = self.facts.context_for(account.id)
        signups = self.signups
        if signups is not None and account.domain and big_fish_candidate(account, self.policy, self.now):
            earlier = signups.earlier(account)
            if earlier is not None:
                # Another account's record decides it: when the company's first signup changes
                # (deleted, given another domain, an older account given this one), the cycle
                # forgets its accounts' judgements before judging (`Signups.catch_up`).
                context = replace(context, earlier_signup=earlier)
        decisions = evaluate_account(account, context, self.policy, self.now, self.custom_triggers, full=full)
        return _off(decisions, self.disabled) if self.disabled else decisions

    def lead(self, lead: Lead, *, full: bool = True) -> list[Decision]:
        """Every lead rule's verdict on one Salesforce lead (rules.evaluate_lead); `full=False`
        skips explaining the lead-source triggers that cannot fire, as a cycle does."""
        policy = self.policy
        if policy.demo.classifier == "llm":
            triage = self.facts.triage_of(lead.id)
        elif self.verdicts is not None and awaits_triage(lead, policy):
            triage = self.verdicts.verdict(lead)
        else:
            triage = None
        account = lead.vitally_account_id
        linked = self._account_disqualified_at(account, lead.id) if account and awaits_scheduler(lead, policy) else None
        context = LeadContext(
            self.facts.company_disqualified_at(lead.company), triage, linked, self._person_classification(lead)
        )
        decisions = evaluate_lead(lead, context, self.policy, self.now, full=full)
        return _off(decisions, self.disabled) if self.disabled else decisions

    def _person_classification(self, lead: Lead) -> str | None:
        """The lead's `Classification__c` when a person set it: a demo request still awaiting the
        triage whose value is not the one crm-sync last wrote there (one lookup in the state, for
        the few leads that hold a value at all)."""
        value = lead.classification
        if not value or not value.strip() or not awaits_triage(lead, self.policy):
            return None
        written = self.facts.state.written_values("salesforce", lead.id).get("Classification__c")
        return None if written == value else value

    def _account_disqualified_at(self, account_id: str, lead_id: str) -> date | None:
        """The latest day a lead of the Vitally account was disqualified: another lead linked to it,
        in Salesforce, or the account's own `lead_disqualified_at` trait as the mirror holds it (one
        that does not read as a date is no day: the account's read reports it)."""
        found = self.facts.account_disqualified_at(account_id, but=lead_id)
        trait = self.facts.state.account_traits([account_id], self.disqualified_trait).get(account_id)
        try:
            noted = date.fromisoformat(trait[:10]) if isinstance(trait, str) else None
        except ValueError:
            noted = None
        return max((day for day in (found, noted) if day is not None), default=None)

    def region(self, account: Account) -> str:
        """The region whose pools own the account's lead: where most of its users are, else its HQ
        country's, else the configured default."""
        region, _ = owner_region(account, self.policy)
        return region or self.policy.territories.default_region
