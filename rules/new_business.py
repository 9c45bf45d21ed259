"""New-business routing: companies early in their life with us, for a Technical Account Executive
(lead-routing-and-scoring.md, new business sales team).

Account triggers take the Vitally account; lead-source triggers take a Salesforce Lead that arrived
through a channel (demo form, sales@, Trust Center, ...) and fire only while it is open and unowned
(no owner, or still in a queue).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from core.model import Account, Lead
from rules import clock
from rules.base import AccountRule, Decision, LeadIntent, LeadRule, Rule, Team, fmt_num
from rules.context import closed_statuses, is_closed, same_picklist
from rules.guards import Check, day_of, days_since, summarise, trigger_decision
from rules.product_led import last_invoice

if TYPE_CHECKING:
    from collections.abc import Callable

    from rules.context import AccountContext, LeadContext
    from rules.policy import Policy, RoutingPolicy

__all__ = [
    "AE_REFERRAL",
    "BDR_QUALIFIED",
    "BIG_FISH",
    "CAMPAIGN",
    "DEMO_REQUEST",
    "ONBOARDING_REFERRAL",
    "ONBOARDING_REFERRAL_LEAD",
    "SALES_EMAIL",
    "STARTUP_CREDITS",
    "TRUST_CENTER",
    "ae_referral",
    "bdr_handover",
    "bdr_qualified",
    "big_fish",
    "big_fish_candidate",
    "campaign",
    "demo_request",
    "lead_source_decision",
    "onboarding_referral",
    "onboarding_referral_lead",
    "sales_email",
    "startup_credits",
    "trust_center",
]

TEAM: Team = "TAE"


# -- account triggers ---------------------------------------------------------------------------


def _may_onboarding_referral(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """In the Onboarding referral segment."""
    return policy.routing.onboarding_referral_segment in account.segments


def onboarding_referral(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """An account an onboarding specialist put in the `Onboarding referral` segment becomes a new
    business lead for a TAE (a person's referral: the cool-off after a disqualification does not apply)."""
    segment = policy.routing.onboarding_referral_segment
    return _segment_referral("new_business.onboarding_referral", segment, account, ctx, policy, now)


ONBOARDING_REFERRAL: AccountRule = Rule(
    "new_business.onboarding_referral", onboarding_referral, _may_onboarding_referral
)


def _may_ae_referral(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """In the AE referral segment."""
    return policy.routing.ae_referral_segment in account.segments


def ae_referral(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """An account someone put in the `AE referral` segment becomes a new business lead for a TAE
    (a person's referral: the cool-off after a disqualification does not apply)."""
    segment = policy.routing.ae_referral_segment
    return _segment_referral("new_business.ae_referral", segment, account, ctx, policy, now)


AE_REFERRAL: AccountRule = Rule("new_business.ae_referral", ae_referral, _may_ae_referral)


def big_fish_candidate(account: Account, policy: Policy, now: datetime) -> bool:
    """Known employees at or above the Big Fish size, created recently enough: whether the rule
    needs to know if another account of the company signed up first (`AccountContext.earlier_signup`)."""
    routing = policy.routing
    return (
        account.employee_count is not None
        and account.employee_count >= routing.big_fish_employees
        and account.created_at is not None
        and _recent(account.created_at, routing.big_fish_days, now)
    )


def _may_big_fish(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A candidate (`big_fish_candidate`) that is its company's first signup, as far as known."""
    return ctx.earlier_signup is None and big_fish_candidate(account, policy, now)


def _recent(created: datetime, days: int, now: datetime) -> bool:
    """Created at most `days` days ago (or ahead of the rules' day); the verdict changes the day the
    age becomes `days + 1`."""
    clock.changes_when_days_reach(day_of(created, now), days + 1)
    return max(days_since(created, now), 0) <= days


def big_fish(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A signup in the last 14 days from a company with 1,000 or more employees ('Big Fish') becomes a
    new business lead for a TAE when it is the company's first signup (lead-routing-and-scoring.md:
    "First signup from a company with 1000+ employees"): not when another Vitally account of its
    domain was created before it (`ctx.earlier_signup`, `sync.signups`; an account of a personal
    mail domain names no company)."""
    routing = policy.routing
    checks: list[Check] = []
    age: int | None = None
    if account.created_at is None:
        checks.append(Check("created_at", None, "created at unknown"))
    else:
        age = max(days_since(account.created_at, now), 0)
        ok = _recent(account.created_at, routing.big_fish_days, now)
        checks.append(Check("created_at", ok, f"created {age} days ago {'≤' if ok else '>'} {routing.big_fish_days}"))
    employees = account.employee_count
    if employees is None:
        checks.append(Check("employee_count", None, "employees unknown"))
    else:
        ok = employees >= routing.big_fish_employees
        checks.append(
            Check(
                "employee_count",
                ok,
                f"employees {fmt_num(employees)} {'≥' if ok else '<'} {fmt_num(routing.big_fish_employees)}",
            )
        )
    inputs: dict[str, object] = {"created_at": account.created_at, "age_days": age, "employee_count": employees}
    earlier = ctx.earlier_signup
    if earlier is not None:
        first, when = earlier
        domain = (account.domain or "").strip()
        checks.append(Check("domain", False, f"not the first signup of {domain}: {first} signed up {when.date()}"))
        inputs["earlier_signup"] = first
    return trigger_decision("new_business.big_fish", account, ctx, policy, now, checks, inputs, team=TEAM)


BIG_FISH: AccountRule = Rule("new_business.big_fish", big_fish, _may_big_fish)


def _may_startup_credits(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """Known credits used, enough of a known, positive total, and a last invoice above the floor."""
    routing = policy.routing
    used, total, last = account.startup_credits_used, account.startup_credits_total, last_invoice(account)
    return (
        used is not None
        and total is not None
        and total > 0
        and used >= routing.credits_used_share * total
        and last is not None
        and last > routing.credits_last_invoice_above
    )


def startup_credits(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """Customers who have used 50 % or more of their startup credits and whose last invoice was more
    than $5,000 become a new business lead for a TAE."""
    routing = policy.routing
    used, total = account.startup_credits_used, account.startup_credits_total
    share = routing.credits_used_share
    checks: list[Check] = []
    if used is None or total is None:
        missing = [n for n, v in (("startup_credits_used", used), ("startup_credits_total", total)) if v is None]
        checks += [Check(name, None, f"{name.replace('_', ' ')} unknown") for name in missing]
    elif total <= 0:
        checks.append(Check("startup_credits_total", False, f"no startup credits (total {fmt_num(total)})"))
    else:
        ok = used >= share * total
        pct = fmt_num(round(100 * used / total, 1))
        checks.append(
            Check(
                "startup_credits_used",
                ok,
                f"startup credits used {fmt_num(used)} of {fmt_num(total)} ({pct} %) "
                f"{'≥' if ok else '<'} {fmt_num(round(100 * share, 1))} %",
            )
        )
    last = last_invoice(account)
    limit = routing.credits_last_invoice_above
    if last is None:
        checks.append(Check("last_invoice", None, "last invoice unknown"))
    else:
        ok = last > limit
        checks.append(Check("last_invoice", ok, f"last invoice {fmt_num(last)} {'>' if ok else '≤'} {fmt_num(limit)}"))
    inputs: dict[str, object] = {
        "startup_credits_used": used,
        "startup_credits_total": total,
        "last_invoice": last,
    }
    return trigger_decision("new_business.startup_credits", account, ctx, policy, now, checks, inputs, team=TEAM)


STARTUP_CREDITS: AccountRule = Rule("new_business.startup_credits", startup_credits, _may_startup_credits)


def _segment_referral(
    rule: str, segment: str, account: Account, ctx: AccountContext, policy: Policy, now: datetime
) -> Decision:
    inside = segment in account.segments
    checks: list[Check] = [Check("segments", inside, f"{'in' if inside else 'not in'} segment {segment}")]
    inputs: dict[str, object] = {"segments": sorted(account.segments)}
    return trigger_decision(rule, account, ctx, policy, now, checks, inputs, team=TEAM, manual=True)


# -- lead-source triggers -----------------------------------------------------------------------


def demo_request(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime) -> Decision:
    """An open, unowned lead that completed the book-a-demo form goes to a TAE."""
    routing = policy.routing
    return lead_source_decision(
        "new_business.demo_request", routing.demo_request_source, lead, routing, closed_statuses(policy)
    )


def sales_email(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime) -> Decision:
    """An open, unowned lead that emailed sales@ goes to a TAE."""
    routing = policy.routing
    return lead_source_decision(
        "new_business.sales_email", routing.sales_email_source, lead, routing, closed_statuses(policy)
    )


def onboarding_referral_lead(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime) -> Decision:
    """An open, unowned lead referred by an onboarding specialist goes to a TAE."""
    routing = policy.routing
    return lead_source_decision(
        "new_business.onboarding_referral", routing.onboarding_referral_source, lead, routing, closed_statuses(policy)
    )


def trust_center(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime) -> Decision:
    """An open, unowned lead that requested Trust Center access (NDA) goes to a TAE."""
    routing = policy.routing
    return lead_source_decision(
        "new_business.trust_center", routing.trust_center_source, lead, routing, closed_statuses(policy)
    )


def campaign(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime) -> Decision:
    """An open, unowned lead from a self-generated campaign (e.g. Top10) goes to a TAE."""
    routing = policy.routing
    return lead_source_decision(
        "new_business.campaign", routing.campaign_source, lead, routing, closed_statuses(policy)
    )


def bdr_qualified(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime) -> Decision:
    """An outbound lead manually qualified by a BDR goes to a TAE ("Outbound leads manually qualified
    by BDRs", new business sales team; the flowchart's "BDR → $20k+ potential? (Onboarding/BDR
    decides) → Yes → TECHNICAL ACCOUNT EXECUTIVE", lead-routing-and-scoring.md, accounts-overview.md).

    Two ways a BDR says yes. A lead a person created with the BDRs' LeadSource, released to routing
    (unowned, in a queue, or with an unrouted owner: `lead_source_decision`). And a lead crm-sync
    created for the BDRs (its `Routing_Rule__c` a `bdr.` trigger, its owner drawn from the BDR pool)
    that its BDR moved to a qualified status (`[rules.episodes] qualified_statuses`): handed over
    (`bdr_handover`)."""
    routing = policy.routing
    if lead.sync_key:
        return bdr_handover(lead, policy)
    return lead_source_decision(
        "new_business.bdr_qualified", routing.bdr_qualified_source, lead, routing, closed_statuses(policy)
    )


def _our_bdr_lead(lead: Lead) -> bool:
    """Whether crm-sync created the lead for the BDRs (a `bdr.` trigger routed it)."""
    return bool(lead.sync_key) and (lead.routing_rule or "").startswith("bdr.")


def _qualified(lead: Lead, policy: Policy) -> bool:
    status = (lead.status or "").strip().casefold()
    return any(status == s.strip().casefold() for s in policy.episodes.qualified_statuses)


def bdr_handover(lead: Lead, policy: Policy) -> Decision:
    """A lead crm-sync created for the BDRs that its BDR qualified (status one of `[rules.episodes]
    qualified_statuses`) goes to a TAE: the planner draws its owner from the TAE round robin and
    writes it, with the reason, while the lead is still with the BDR crm-sync gave it (a person who
    gave it another owner decided already: nothing is written). Its `Routing_Rule__c` stays the BDR
    trigger's: the account's BDR episode is this lead, and a second BDR lead must not follow."""
    rule = "new_business.bdr_qualified"
    checks: list[Check] = []
    if _our_bdr_lead(lead):
        checks.append(Check("routing_rule", True, f"crm-sync's BDR lead (routed by {lead.routing_rule})"))
    else:
        by = lead.routing_rule or "no routing rule"
        checks.append(Check("routing_rule", False, f"created by crm-sync ({by}), not for the BDRs"))
    if lead.is_converted:
        checks.append(Check("is_converted", False, "lead already converted"))
    elif _qualified(lead, policy):
        checks.append(Check("status", True, f"qualified by its BDR (status {lead.status})"))
    else:
        status = lead.status or "none"
        ours = f"crm-sync's BDR lead (routed by {lead.routing_rule})" if _our_bdr_lead(lead) else "lead"
        checks.append(
            Check("status", False, f"{ours} not qualified by its BDR (status {status}): it stays with the BDR")
        )
    inputs = _lead_inputs(lead, "routing_rule", lead.routing_rule)
    return _lead_verdict(
        rule, lead, checks, inputs, lambda reason: LeadIntent(routing_reason=f"{rule}: {reason} → a TAE")
    )


def _lead_inputs(lead: Lead, first: str, value: object) -> dict[str, object]:
    """A lead trigger's inputs: `first` (what it reads the lead by), then its status and owner."""
    return {
        first: value,
        "status": lead.status,
        "is_converted": lead.is_converted,
        "owner_id": lead.owner_id,
        "sync_key": lead.sync_key,
    }


def _lead_verdict(
    rule: str, lead: Lead, checks: list[Check], inputs: dict[str, object], intent: Callable[[str], LeadIntent]
) -> Decision:
    """The lead trigger's decision from its checks: fired (with the `intent` of its reason, for a
    TAE) when every check passed, else why not."""
    passed, reason, unknown = summarise(checks)
    if not passed:
        return Decision(rule, lead.id, False, reason, inputs, unknown, team=TEAM)
    return Decision(rule, lead.id, True, reason, inputs, team=TEAM, lead=intent(reason))


def _may_source(source: Callable[[RoutingPolicy], str]) -> Callable[[Lead, LeadContext, Policy, datetime], bool]:
    """A lead-source trigger's necessary condition (`lead_source_decision` fires only then): an
    open lead with that LeadSource, not crm-sync's own, waiting for routing. A cycle evaluates every lead each time,
    and most are owned or closed: their six non-firing verdicts are not built."""

    def may_fire(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime) -> bool:
        routing = policy.routing
        return (
            not lead.is_converted
            and not lead.sync_key
            and bool(lead.lead_source)
            and not is_closed(lead.status, closed_statuses(policy))
            and routing.waiting_for_routing(lead.owner_id) is not None
            and same_picklist(lead.lead_source, source(routing))
        )

    return may_fire


DEMO_REQUEST: LeadRule = Rule("new_business.demo_request", demo_request, _may_source(lambda r: r.demo_request_source))
SALES_EMAIL: LeadRule = Rule("new_business.sales_email", sales_email, _may_source(lambda r: r.sales_email_source))
ONBOARDING_REFERRAL_LEAD: LeadRule = Rule(
    "new_business.onboarding_referral",
    onboarding_referral_lead,
    _may_source(lambda r: r.onboarding_referral_source),
)
TRUST_CENTER: LeadRule = Rule("new_business.trust_center", trust_center, _may_source(lambda r: r.trust_center_source))
CAMPAIGN: LeadRule = Rule("new_business.campaign", campaign, _may_source(lambda r: r.campaign_source))
_may_bdr_source = _may_source(lambda r: r.bdr_qualified_source)


def _may_bdr_qualified(lead: Lead, ctx: LeadContext, policy: Policy, now: datetime) -> bool:
    """A person's BDR lead released to routing, or crm-sync's own BDR lead in a qualified status."""
    if lead.sync_key:
        return _our_bdr_lead(lead) and not lead.is_converted and _qualified(lead, policy)
    return _may_bdr_source(lead, ctx, policy, now)


BDR_QUALIFIED: LeadRule = Rule("new_business.bdr_qualified", bdr_qualified, _may_bdr_qualified)


def lead_source_decision(
    rule: str, source: str, lead: Lead, routing: RoutingPolicy, closed: frozenset[str]
) -> Decision:
    """Fires when the lead's LeadSource is `source` (case- and space-insensitive) and the lead is open
    (not converted, status not one of `closed`: `rules.context.closed_statuses`), was not created
    by crm-sync, and waits for routing (no OwnerId, a queue, or one of the configured
    `unrouted_owners`: the org's default lead owner); says why not otherwise.

    A lead crm-sync created (it carries `Sync_Key__c`) was routed when it was created, by the
    account trigger its `Routing_Rule__c` names, and its owner drawn then: one the round robin put
    in a queue (no member available) waits there for the queue's members. Routing it again by its
    LeadSource would draw a second owner, and for crm-sync's own BDR leads (LeadSource `BDR`, the
    BDR team's) hand them to a TAE as if a BDR had qualified them (lead-routing-and-scoring.md
    lists the two apart).

    A fired decision wants the lead's routing rule and routing reason written (`Routing_Rule__c` and
    `Routing_Reason__c`).
    """
    checks: list[Check] = []
    if lead.lead_source is None or not lead.lead_source.strip():
        checks.append(Check("lead_source", None, "LeadSource unknown"))
    else:
        ok = same_picklist(lead.lead_source, source)
        checks.append(Check("lead_source", ok, f"LeadSource {lead.lead_source}" + ("" if ok else f" is not {source}")))
    if lead.is_converted:
        checks.append(Check("is_converted", False, "lead already converted"))
    elif is_closed(lead.status, closed):
        checks.append(Check("status", False, f"lead status {lead.status} is closed"))
    else:
        checks.append(Check("status", True, f"lead open (status {lead.status or 'none'})"))
    if lead.sync_key:
        by = f" by {lead.routing_rule}" if lead.routing_rule else ""
        checks.append(Check("sync_key", False, f"created by crm-sync (Sync_Key__c {lead.sync_key}), routed{by} then"))
    owner = lead.owner_id
    waiting = routing.waiting_for_routing(owner)
    if waiting is not None:
        checks.append(Check("owner_id", True, waiting))
    else:
        checks.append(Check("owner_id", False, f"already owned by {owner}"))
    inputs = _lead_inputs(lead, "lead_source", lead.lead_source)
    return _lead_verdict(
        rule, lead, checks, inputs, lambda reason: LeadIntent(routing_rule=rule, routing_reason=f"{rule}: {reason}")
    )
