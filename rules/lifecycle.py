"""Lifecycle: where an account stands in the accounts-overview flowchart, and the moves Simon reviews
(accounts-overview.md, account-allocation.md, rules.md §5)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rules import clock
from rules.base import AccountRule, Decision, Rule, fmt_num
from rules.context import in_picklist, same_picklist
from rules.guards import nurtured_after_close, ours_being_worked, owned_by, worked_in_salesforce
from rules.onboarding import _first_bill, _month_number
from rules.policy import (
    BDR,
    CSM,
    EXPANSION_LEAD,
    NEW_BUSINESS_LEAD,
    ONBOARDING_SPECIALIST,
    REVIEW,
    SELF_SERVE,
    TAE,
    TAM,
)
from rules.routing import LEAD_TRIGGERS

if TYPE_CHECKING:
    from core.model import Account, Lead, Opportunity
    from rules.context import AccountContext
    from rules.policy import LifecyclePolicy, Policy

__all__ = [
    "ACCOUNT_REVIEW",
    "CSM_DOWNGRADE",
    "STAGE",
    "account_review",
    "csm_downgrade",
    "stage",
    "stage_with",
]

_ACCOUNT_REVIEW = "lifecycle.account_review"
_CSM_DOWNGRADE = "lifecycle.csm_downgrade"
_STAGE = "lifecycle.stage"


def _owner(account: Account, policy: Policy, rules: LifecyclePolicy) -> str | None:
    owners = owned_by(account, policy)
    if owners is not None:
        return owners
    for segment in (*rules.tam_segments, *policy.guards.owned_segments):
        if segment in account.segments:
            return f"segment {segment}"
    return None


def _may_account_review(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A known MRR at or above the review threshold."""
    return account.mrr is not None and account.mrr >= policy.lifecycle.review_mrr


def account_review(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A self-serve account (no TAM, CSM or Account Executive) that grows organically to $2,000+ MRR goes to
    Account review, where Simon decides whether it meets the TAM criteria (accounts-overview.md).

    `AM Managed` makes an account owned. An account with its onboarding specialist (the key role,
    or the `Onboarding` segment: the stage "Onboarding specialist") is not self serve yet: in the
    flowchart the specialist decides "$20k+ potential?" (a direct handover to a TAE, or self
    serve), and Account review is self serve's branch only (found by a review: an onboarding
    account was handed to a TAE and put in Account review in one cycle). Growth is not organic
    while sales works the account in Salesforce: an open opportunity, a deal closed won that the
    Account Executive still nurtures (`rules.guards.nurtured_after_close`), an open lead someone other
    than crm-sync created, or crm-sync's own lead once a person works it (a working, qualified or
    nurturing status: `rules.guards.ours_being_worked`). crm-sync's own routed lead nobody has moved
    is no one's engagement yet, as for the routing guards: otherwise an account routed and reviewed
    in one cycle would leave review on the next.
    """
    rules = policy.lifecycle
    manages = frozenset({rules.segment})
    inputs: dict[str, object] = {"mrr": account.mrr, "key_roles": dict(account.key_roles)}
    owner = _owner(account, policy, rules)
    if owner is None:
        owner = _with_specialist(account, policy, now)
    if owner is None and (ctx.leads or ctx.opportunities):
        owner = worked_in_salesforce(ctx) or ours_being_worked(ctx, policy) or nurtured_after_close(ctx, policy, now)
    if owner is not None:
        return Decision(_ACCOUNT_REVIEW, account.id, False, f"not self serve ({owner})", inputs, manages=manages)
    if account.mrr is None:
        return Decision(_ACCOUNT_REVIEW, account.id, False, "mrr unknown", inputs, ("mrr",), manages=manages)
    ok = account.mrr >= rules.review_mrr
    reason = f"self serve; mrr {fmt_num(account.mrr)} {'≥' if ok else '<'} {fmt_num(rules.review_mrr)}"
    if not ok:
        return Decision(_ACCOUNT_REVIEW, account.id, False, reason, inputs, manages=manages)
    return Decision(_ACCOUNT_REVIEW, account.id, True, reason, inputs, segments=manages, manages=manages)


ACCOUNT_REVIEW: AccountRule = Rule(_ACCOUNT_REVIEW, account_review, _may_account_review)


def _with_specialist(account: Account, policy: Policy, now: datetime) -> str | None:
    """Why the account is with its onboarding specialist, or None: in the `Onboarding` segment, or
    with the `Onboarding Specialist` key role while it is current (`_specialist_current`)."""
    rules = policy.lifecycle
    if rules.onboarding_segment in account.segments:
        return f"with its onboarding specialist: segment {rules.onboarding_segment}"
    current = _specialist_current(account, policy, now)
    return None if current is None else f"with its onboarding specialist: {current}"


def _specialist_current(account: Account, policy: Policy, now: datetime) -> str | None:
    """The `Onboarding Specialist` key role while the account's first bill is at most
    `[rules.onboarding] first_bill_max_age_months` old (or of an age the invoices do not show), as
    "<role> <holder>[, first billed N months ago]"; else None. A person sets the key role and
    nothing takes it away: read for good, a long-standing self-serve account that once had a
    specialist never reached Account review, and its stage stayed "Onboarding specialist" (found
    by two adversarial reviews)."""
    rules = policy.lifecycle
    specialist = account.roles.get(rules.specialist_role)
    if not specialist:
        return None
    onboarding = policy.onboarding
    first = _first_bill(account.invoices, onboarding.first_bill_skips_zero) if account.invoices else None
    month = None if first is None else _month_number(first.month)
    if month is None:
        return f"{rules.specialist_role} {specialist}"
    clock.changes_on_month(month + onboarding.first_bill_max_age_months + 1)  # the first bill grows too old
    age = max(0, now.year * 12 + now.month - month)
    if age > onboarding.first_bill_max_age_months:
        return None
    return f"{rules.specialist_role} {specialist}, first billed {age} months ago"


def _may_csm_downgrade(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A CSM key role and a known ARR below the threshold."""
    if policy.lifecycle.csm_role not in account.roles:  # most accounts
        return False
    arr = account.arr
    return arr is not None and arr < policy.allocation.arr_threshold


def csm_downgrade(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A CSM-owned account whose ARR drops below $20,000 is flagged for review: back to self serve?"""
    rules = policy.lifecycle
    manages = frozenset({rules.segment})
    csm = account.roles.get(rules.csm_role)
    threshold = policy.allocation.arr_threshold
    inputs: dict[str, object] = {"mrr": account.mrr, "arr": account.arr, "csm": csm}
    if csm is None:
        return Decision(_CSM_DOWNGRADE, account.id, False, "not CSM-owned", inputs, manages=manages)
    if account.arr is None:
        return Decision(
            _CSM_DOWNGRADE, account.id, False, f"CSM-owned ({csm}); mrr unknown", inputs, ("mrr",), manages=manages
        )
    if account.arr >= threshold:
        reason = f"CSM-owned ({csm}); ARR {fmt_num(round(account.arr, 2))} ≥ {fmt_num(threshold)}"
        return Decision(_CSM_DOWNGRADE, account.id, False, reason, inputs, manages=manages)
    reason = f"CSM-owned ({csm}); ARR {fmt_num(round(account.arr, 2))} < {fmt_num(threshold)}: back to self serve?"
    return Decision(_CSM_DOWNGRADE, account.id, True, reason, inputs, segments=manages, manages=manages, review=True)


CSM_DOWNGRADE: AccountRule = Rule(_CSM_DOWNGRADE, csm_downgrade, _may_csm_downgrade)


def _newest(leads: tuple[Lead, ...]) -> Lead:
    if len(leads) == 1:  # most accounts with an open lead
        return leads[0]
    oldest = datetime.min.replace(tzinfo=UTC)

    def created(lead: Lead) -> datetime:
        when = lead.created_date or oldest
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)

    return max(leads, key=created)


# Leads handed to the new business team whatever their LeadSource: the onboarding team's direct
# handover, and a BDR's outbound lead a BDR qualified (its source is still the BDRs' own).
_BDR_QUALIFIED = "new_business.bdr_qualified"
_NEW_BUSINESS_HANDOFFS = frozenset({"onboarding.direct_handover", _BDR_QUALIFIED})


def _bdr_handoff(lead: Lead, policy: Policy) -> bool:
    """Whether new_business.bdr_qualified is about to route the lead (the stage of the lead before
    that cycle's write is the one after it): a lead crm-sync did not create, with the BDR-qualified
    LeadSource, waiting for routing, and the rule on and in the routing order."""
    routing = policy.routing
    return (
        not lead.sync_key
        and same_picklist(lead.lead_source, routing.bdr_qualified_source)
        and routing.waiting_for_routing(lead.owner_id) is not None
        and _BDR_QUALIFIED in routing.order
        and _BDR_QUALIFIED not in policy.disabled
    )


def _bdr_said_yes(lead: Lead, rule: str) -> bool:
    """crm-sync's BDR lead handed to a TAE after its BDR qualified it (the flowchart's "BDR → $20k+
    potential? (Onboarding/BDR decides) → Yes → TECHNICAL ACCOUNT EXECUTIVE"): its
    `Routing_Reason__c` is new_business.bdr_qualified's, written with the TAE owner (its
    `Routing_Rule__c` stays the BDR trigger's). Read from the handover, not from the status: the
    TAE working or nurturing the lead does not make it a BDR's again. The reason is written also
    when a person chose the owner (the BDR handed it over themselves), and the account sees it in
    the cycle that writes it (`sync.plan`, the accounts' view of a lead)."""
    return rule.startswith("bdr.") and (lead.routing_reason or "").startswith(f"{_BDR_QUALIFIED}:")


def _lead_stage(lead: Lead, policy: Policy) -> str:
    """The flowchart's lead box of a lead: by the signal that made crm-sync create it
    (`Routing_Rule__c`: a new-business signal is a new business lead whatever its source), else by
    its LeadSource. An inbound lead a lead-source trigger routed keeps the stage of its source: it
    gets its `Routing_Rule__c` in the same cycle that judges the account, which must not see a
    different stage on the next. But a BDR's lead handed to the new business team
    (new_business.bdr_qualified: "Outbound leads manually qualified by BDRs", lead-routing-and-
    scoring.md) is a new business lead whose source is still the BDRs': once routed, and while it
    waits for that routing (the same stage on both sides of the cycle that routes it)."""
    rules = policy.lifecycle
    rule = lead.routing_rule or ""
    if _bdr_said_yes(lead, rule):
        return NEW_BUSINESS_LEAD
    if rule not in LEAD_TRIGGERS:
        for prefix, stage in (("product_led.", EXPANSION_LEAD), ("new_business.", NEW_BUSINESS_LEAD), ("bdr.", BDR)):
            if rule.startswith(prefix):
                return stage
    if rule in _NEW_BUSINESS_HANDOFFS or (not rule and _bdr_handoff(lead, policy)):
        return NEW_BUSINESS_LEAD
    source = lead.lead_source  # compared as the routing triggers compare it: any case, spaces ignored
    if in_picklist(source, rules.bdr_lead_sources):
        return BDR
    if in_picklist(source, rules.expansion_lead_sources):
        return EXPANSION_LEAD
    return NEW_BUSINESS_LEAD


def _owned_stage(
    account: Account,
    segments: frozenset[str],
    open_leads: tuple[Lead, ...],
    open_opportunities: tuple[Opportunity, ...],
    policy: Policy,
    nurtured: str | None = None,
) -> tuple[str, str] | None:
    """The stage of an account someone owns or works: a key role, a TAM segment, an open opportunity,
    a deal closed won its Account Executive still nurtures (`nurtured`: why), or an open lead. An
    Account Executive key role on an account in the Leads segment or with an open product-led lead
    is a TAM qualifying that lead (plg-lead-qualification.md: "Add yourself as the Account Executive
    in Vitally and use the 'Leads' segment to track it separately"): an expansion lead, not yet in
    their book, and not a TAE's account."""
    owner = _owner_stage(account, segments, policy.lifecycle)
    if owner is not None:
        if owner[0] == TAE:
            qualifying = _qualifying(segments, open_leads, policy)
            if qualifying is not None:
                return EXPANSION_LEAD, f"{owner[1]} qualifying a product-led lead ({qualifying})"
        return owner
    if open_opportunities:
        return TAE, f"open opportunity {open_opportunities[0].id}"
    if nurtured:  # a deal closed won: "Close then nurture for 12 months" (rules.guards.nurtured_after_close)
        return TAE, nurtured
    if open_leads:
        lead = _newest(open_leads)
        return _lead_stage(lead, policy), f"open lead {lead.id} (source {lead.lead_source or 'unknown'})"
    return None


def _qualifying(segments: frozenset[str], open_leads: tuple[Lead, ...], policy: Policy) -> str | None:
    """What says an Account Executive is a TAM qualifying a product-led lead: the Leads segment, or
    the newest open lead an expansion lead (None when neither)."""
    leads_segment = policy.episodes.leads_segment
    if leads_segment in segments:
        return f"segment {leads_segment}"
    if open_leads:
        lead = _newest(open_leads)
        if _lead_stage(lead, policy) == EXPANSION_LEAD:
            return f"open lead {lead.id}"
    return None


def _owner_stage(account: Account, segments: frozenset[str], rules: LifecyclePolicy) -> tuple[str, str] | None:
    """The stage of an account whose owner Vitally names: a CSM or TAM key role, then the TAM's
    managed book (`AM Managed`), then an Account Executive key role. The book before the Account
    Executive: a TAM qualifying a lead "adds themselves as the Account Executive in Vitally"
    (plg-lead-qualification.md) and keeps that role once the account is in their book."""
    roles = account.roles
    if roles:
        for role, name in ((rules.csm_role, CSM), (rules.tam_role, TAM)):
            if role in roles:
                return name, _role_holder(account, role)
    if segments:
        for segment in rules.tam_segments:
            if segment in segments:
                return TAM, f"segment {segment}"
    if rules.ae_role in roles:
        return TAE, _role_holder(account, rules.ae_role)
    return None


def _role_holder(account: Account, role: str) -> str:
    """Who holds `role` and where from, for the stage's reason."""
    source = account.role_source(role)
    how = f"{role} key role" if source == "key role" else f"{role} in {source}"
    return f"{how} ({account.roles[role]})"


def _flagged_stage(account: Account, segments: frozenset[str], policy: Policy, now: datetime) -> tuple[str, str] | None:
    """The stage a segment or the onboarding specialist gives an account nobody owns yet (the key
    role while it is current, as Account review reads it: `_specialist_current`)."""
    rules = policy.lifecycle
    if segments:
        for flagged, name in (
            (rules.expansion_segments, EXPANSION_LEAD),
            (rules.new_business_segments, NEW_BUSINESS_LEAD),
        ):
            for segment in flagged:
                if segment in segments:
                    return name, f"segment {segment}"
        if rules.segment in segments:
            return REVIEW, f"segment {rules.segment}"
    roles = account.roles
    if rules.specialist_role in roles and _specialist_current(account, policy, now) is not None:
        return ONBOARDING_SPECIALIST, f"{rules.specialist_role} key role ({roles[rules.specialist_role]})"
    if rules.onboarding_segment in segments:
        return ONBOARDING_SPECIALIST, f"segment {rules.onboarding_segment}"
    return None


def _stage(
    account: Account,
    segments: frozenset[str],
    open_leads: tuple[Lead, ...],
    open_opportunities: tuple[Opportunity, ...],
    policy: Policy,
    now: datetime,
    nurtured: str | None = None,
) -> tuple[str | None, str]:
    rules = policy.lifecycle
    if account.roles or segments or open_leads or open_opportunities or nurtured:  # most have none: by MRR
        found = _owned_stage(account, segments, open_leads, open_opportunities, policy, nurtured) or _flagged_stage(
            account, segments, policy, now
        )
        if found is not None:
            return found
    mrr = account.mrr
    if mrr is None:
        return None, "no owner, lead or lifecycle segment, and mrr unknown"
    if mrr >= rules.review_mrr:
        return REVIEW, f"no owner; mrr {fmt_num(mrr)} ≥ {fmt_num(rules.review_mrr)}"
    return SELF_SERVE, f"no owner; mrr {fmt_num(mrr)} < {fmt_num(rules.review_mrr)}"


def stage(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """Every account's stage in the accounts-overview flowchart, written to the `lifecycle_stage` trait.

    The first that holds decides: a CSM or TAM key role ("Customer success manager", "Technical
    account manager"); an `AM Managed` segment ("Technical account manager": the TAM's managed book,
    whose TAM may hold the Account Executive key role they took to qualify it); an Account Executive
    key role ("Technical account executive", unless it is a TAM qualifying a product-led lead: the
    account in the `Leads` segment or its newest open lead an expansion lead, "Expansion lead"); an
    open opportunity, or a deal Closed Won within `[rules.allocation]
    handover_after_close_months` ("Close then nurture for 12 months"), "Technical account
    executive"; an open lead, the newest, by
    the rule that routed it (`Routing_Rule__c`: product_led.* "Expansion lead", new_business.* and the
    direct handover "New business lead", bdr.* "BDR"), else its LeadSource ("BDR" for `BDR`,
    "Expansion lead" for `Product-led` and `AM referral`, otherwise "New business lead"); a referral or
    product-led segment ("Expansion lead" for `Product-led lead` and `AM referral`, "New business lead"
    for `Onboarding referral` and `AE referral`); the `Account review`
    segment ("Account review"); an Onboarding Specialist key role while the first bill is at most
    `first_bill_max_age_months` old, or the `Onboarding` segment ("Onboarding specialist"); then by
    MRR: ≥ 2,000 "Account review", below "Self serve". Only an account that reaches the MRR step
    with MRR unknown has no stage (the rule does not fire).
    """
    return stage_with(account, account.segments, ctx, policy, now)


def stage_with(
    account: Account, segments: frozenset[str], ctx: AccountContext, policy: Policy, now: datetime
) -> Decision:
    """`stage` of `account` as if its segments were `segments` (what `rules.evaluate_account` judges:
    the segments the evaluation is about to leave the account in), without building that account."""
    if ctx.leads or ctx.opportunities:
        open_leads, open_opportunities = ctx.open_leads, ctx.open_opportunities
    else:  # most accounts: nothing in Salesforce
        open_leads, open_opportunities = (), ()
    nurtured = nurtured_after_close(ctx, policy, now) if ctx.opportunities else None
    name, why = _stage(account, segments, open_leads, open_opportunities, policy, now, nurtured)
    inputs: dict[str, object] = {
        "key_roles": dict(account.key_roles) if account.key_roles else {},
        "segments": sorted(segments) if segments else [],
        "open_leads": [lead.id for lead in open_leads] if open_leads else [],
        "open_opportunities": [o.id for o in open_opportunities] if open_opportunities else [],
        "mrr": account.mrr,
    }
    if name is None:
        return Decision(_STAGE, account.id, False, why, inputs, ("mrr",))
    return Decision(_STAGE, account.id, True, f"{why} → {name}", inputs, traits={"lifecycle_stage": name})


# Every account has a stage: no condition is cheaper than finding it.
STAGE: AccountRule = Rule(_STAGE, stage)
