"""Guards: an account that is already owned or being worked is not routed (lead-routing-and-scoring.md,
plg-lead-qualification.md step 4, sales-handover.md), and the one place where a routing trigger's checks
become a decision.

Guards are checked in this order, and the first that holds is the one reported: churned (a churned
account leaves every book), an owner (a key role among `owner_roles`, or Vitally's own owner attribute
read as one: `accountOwnerId`, `csmId`, `accountExecutiveId`), an owned segment, an open opportunity,
an open lead, an active sales segment, a Slack channel, a recent disqualification (cool-off: the
`lead_disqualified_at` trait, or a lead of the account a person disqualified in Salesforce), a lead
of the account converted without an opportunity (`rules.episodes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from core.model import Account
from rules import clock
from rules.base import Decision, Team, months_between
from rules.context import CLOSED_WON, AccountContext, is_stage
from rules.episodes import Family, _policy_statuses, answered, family_of_lead, family_of_rule, hold

if TYPE_CHECKING:
    from rules.policy import Policy

__all__ = [
    "Check",
    "day_of",
    "days_since",
    "may_be_routed",
    "nurtured_after_close",
    "owned_by",
    "routing_guard",
    "summarise",
    "trigger_decision",
    "worked_in_salesforce",
]


# Not frozen: every trigger of every account builds a few, and a frozen dataclass (or a named
# tuple) costs several times a plain one to build; nothing keeps a Check past its rule's verdict.
@dataclass(slots=True)
class Check:
    """One condition of a rule on one input, as the reason shows it.

    `name` is the input checked (named in `Decision.unknown` when it is unknown); `passed` is True
    or False, or None when the input is unknown; `text` is the reason's fragment, e.g.
    ``mrr 812 in [500, 1,667]``.
    """

    name: str
    passed: bool | None
    text: str


def summarise(checks: Sequence[Check]) -> tuple[bool, str, tuple[str, ...]]:
    """(every check passed, the reason, the unknown inputs) of a rule made of checks.

    When one failed or is unknown, the reason lists the failed checks, then the unknown ones;
    otherwise it lists every check, in order. Unknown inputs are named once each.
    """
    failed: list[str] = []
    unknown: list[Check] = []
    for check in checks:  # one pass: every trigger of every account comes through here
        if check.passed is False:
            failed.append(check.text)
        elif check.passed is None:
            unknown.append(check)
    if failed or unknown:
        failed += [check.text for check in unknown]
        return False, "; ".join(failed), tuple(dict.fromkeys([check.name for check in unknown]))
    return True, "; ".join([check.text for check in checks]), ()


def days_since(moment: date | datetime, now: datetime) -> int:
    """Whole calendar days from `moment` to `now` (negative when `moment` is in the future), in `now`'s zone."""
    return (now.date() - day_of(moment, now)).days


def day_of(moment: date | datetime, now: datetime) -> date:
    """The calendar day of `moment` in `now`'s zone (the day `days_since` counts from)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is not None and now.tzinfo is not None:
            moment = moment.astimezone(now.tzinfo)
        return moment.date()
    return moment


def may_be_routed(account: Account, policy: Policy) -> bool:
    """False for a churned account or one with an owner: the first guards of every routing trigger
    hold it back, so no trigger can fire (a cycle skips them all)."""
    if account.churned_at is not None:
        return False
    roles = account.roles
    if not roles:  # most accounts
        return True
    return not any(role in roles for role in policy.owner_roles)


def owned_by(account: Account, policy: Policy) -> str | None:
    """Who owns the account, as a reason says it ("TAM, CSM key role", "CSM in csmId"), or None:
    each of `policy.owner_roles` it holds, through a key role or an owner attribute."""
    roles = account.roles
    if not roles:  # most accounts
        return None
    held = [role for role in policy.owner_roles if role in roles]
    if not held:
        return None
    by_key_role = [role for role in held if account.role_source(role) == "key role"]
    parts = [f"{', '.join(by_key_role)} key role"] if by_key_role else []
    parts += [f"{role} in {account.role_source(role)}" for role in held if role not in by_key_role]
    return "; ".join(parts)


def _churned(account: Account) -> str | None:
    churned = account.churned_at
    return None if churned is None else f"churned on {churned.date().isoformat()}"


def routing_guard(
    account: Account,
    ctx: AccountContext,
    policy: Policy,
    now: datetime,
    *,
    cool_off: bool = True,
    referral: str | None = None,
    family: Family | None = None,
) -> str | None:
    """The reason an account must not be routed (already owned or already being worked), or None.

    `family`: the family of the trigger asking (`rules.episodes.family_of_rule`): a lead crm-sync
    created for another family that a person is working is someone's engagement too (a TAE
    working an AE referral's lead holds the product-led triggers back; `worked_in_salesforce`).

    `cool_off=False` skips the recent-disqualification guard and the hold after a conversion without
    an opportunity (manual referrals: a person asking again is new information), except, for the
    referral rule `referral`, crm-sync's lead for the team it asks (`rules.episodes.answered`: a
    person's "no" to it holds the referral for the cool-off). An open lead the
    daemon created itself (it carries `Sync_Key__c`) is not someone else's engagement: it is the lead
    an earlier cycle routed, and guarding on it would make the routing flap between cycles (the
    planner creates no second lead while it is open).
    """
    guards = policy.guards
    if account.churned_at is not None:
        return _churned(account)
    owners = owned_by(account, policy)
    if owners is not None:
        return f"already owned ({owners})"
    segments = account.segments  # most accounts are in none
    owned = _first_in(guards.owned_segments, segments) if segments else None
    if owned is not None:
        return f"already owned (segment {owned})"
    if ctx.leads or ctx.opportunities:  # most accounts have nothing in Salesforce
        worked = worked_in_salesforce(ctx, family, policy) or nurtured_after_close(ctx, policy, now)
        if worked is not None:
            return worked
    active = _first_in(guards.active_sales_segments, segments) if segments else None
    if active is not None:
        return f"in active sales segment {active}"
    if account.slack_channel and account.slack_channel.strip():
        return f"existing engagement (Slack channel {account.slack_channel.strip()})"
    if cool_off:
        return _cooling_off(account, ctx, policy, now)
    if referral is not None and ctx.leads:
        return answered(referral, ctx, policy, now)
    return None


def _first_in(candidates: Sequence[str], segments: frozenset[str]) -> str | None:
    """The first of `candidates` the account is in."""
    return next((segment for segment in candidates if segment in segments), None)


def _cooling_off(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> str | None:
    """A disqualification within the cool-off (the Vitally trait, or a lead a person disqualified in
    Salesforce), or a conversion without an opportunity within its hold (`rules.episodes.hold`)."""
    if account.lead_disqualified_at is not None:
        since = days_since(account.lead_disqualified_at, now)
        clock.changes_when_days_reach(day_of(account.lead_disqualified_at, now), policy.guards.cool_off_days)
        if since < policy.guards.cool_off_days:
            return f"lead disqualified {since} days ago (cool-off {policy.guards.cool_off_days} days)"
    return hold(account, ctx, policy, now)


def nurtured_after_close(ctx: AccountContext, policy: Policy, now: datetime) -> str | None:
    """An opportunity Closed Won within `[rules.allocation] handover_after_close_months` (12): the
    Technical Account Executive who closed it nurtures the account (accounts-overview.md: "$20k+
    potential? Yes → Close then nurture for 12 months", then Simon decides TAM or CSM), so no
    signal hands it to another team's round robin meanwhile, with or without an Account Executive
    key role in Vitally. A deal that never closed is the flowchart's "No → Self serve", from where
    an account may become a lead again."""
    if not ctx.opportunities:
        return None
    won = [o for o in ctx.opportunities if o.close_date is not None and is_stage(o.stage_name, CLOSED_WON)]
    if not won:
        return None
    last = max(won, key=lambda o: o.close_date or date.min)
    closed = last.close_date or date.min
    months = months_between(closed, now)
    wait = policy.allocation.handover_after_close_months
    clock.changes_when_months_reach(closed, wait)
    if months >= wait:
        return None
    return (
        f"opportunity {last.id} closed won {closed} ({months} months ago): the Account Executive nurtures it "
        f"for {wait} months"
    )


def worked_in_salesforce(ctx: AccountContext, family: Family | None = None, policy: Policy | None = None) -> str | None:
    """An open opportunity, or an open lead someone other than crm-sync created; with `family`
    (a trigger's), also an open lead crm-sync created for another family: one a person is working
    (its status one of `[rules.episodes]` working, qualified or nurturing statuses:
    plg-lead-qualification.md, "Pass or disqualify when ... Already being worked by someone else"),
    or one nobody has moved yet, which keeps its own trigger's segment and reason. crm-sync's own
    lead of the same family is the lead an earlier cycle routed (guarding on it would make the
    routing flap). Without `family` (lifecycle.account_review), crm-sync's own leads hold nothing
    here: one nobody has moved yet is nobody's engagement."""
    opportunities = ctx.open_opportunities
    if opportunities:
        opportunity = opportunities[0]
        return f"open opportunity {opportunity.id} ({opportunity.stage_name or 'no stage'}) in Salesforce"
    lead = next((lead for lead in ctx.open_leads if not lead.sync_key), None)
    if lead is not None:
        return f"open lead {lead.id} ({lead.status or 'no status'}) in Salesforce"
    if family is not None and policy is not None:
        worked = ours_being_worked(ctx, policy, other_than=family)
        if worked is not None:
            return worked
        # Nobody moved it yet, but it is open: its trigger keeps the account's segment and routing
        # reason, and no second lead goes out beside it (`sync.plan`). Another team's trigger
        # winning meanwhile rewrote them for a lead it could not create (found by a review once a
        # person's referral came first in `[rules] order`: an `AE referral` on an account with
        # crm-sync's open product-led lead took its segments away).
        for ours in ctx.open_leads:
            if ours.sync_key and family_of_lead(ours, policy) != family:
                other = family_of_lead(ours, policy).replace("_", "-")
                return f"crm-sync's {other} lead {ours.id} ({ours.status or 'no status'}) is open in Salesforce"
    return None


def ours_being_worked(ctx: AccountContext, policy: Policy, *, other_than: Family | None = None) -> str | None:
    """Why an open lead crm-sync created is being worked by a person (its status one of
    `[rules.episodes]` working, qualified or nurturing statuses), of any family but `other_than`;
    None when none is."""
    _, _, nurturing, qualified, working = _policy_statuses(policy)
    moved = nurturing | qualified | working
    for ours in ctx.open_leads:
        if ours.sync_key and (ours.status or "").strip().casefold() in moved:
            family = family_of_lead(ours, policy)
            if family != other_than:
                return (
                    f"crm-sync's {family.replace('_', '-')} lead {ours.id} ({ours.status}) being worked in Salesforce"
                )
    return None


@lru_cache(maxsize=64)
def _only(segment: str) -> frozenset[str]:
    """{segment}, made once per segment (a trigger's every verdict names the segment it manages)."""
    return frozenset({segment})


def trigger_decision(
    rule: str,
    account: Account,
    ctx: AccountContext,
    policy: Policy,
    now: datetime,
    checks: Sequence[Check],
    inputs: Mapping[str, object],
    *,
    team: Team,
    segment: str | None = None,
    manual: bool = False,
) -> Decision:
    """A routing trigger's verdict from its checks: fired when every check passed and no guard holds.

    Unknown checks stop it and are named (in `unknown` and the reason); a failed check is named in the
    reason; a guard turns a match into `fired=False` with `guarded_by` and the reason
    `<checks>; but <guard>`. `segment` is the managed segment the trigger adds when it fires (and is
    responsible for). `manual` marks a person's referral: the cool-off guard does not apply.
    """
    manages = _only(segment) if segment else frozenset()
    passed, reason, unknown = summarise(checks)
    if not passed:
        return Decision(rule, account.id, False, reason, inputs, unknown, manages=manages, team=team)
    guard = routing_guard(
        account, ctx, policy, now, cool_off=not manual, referral=rule if manual else None, family=family_of_rule(rule)
    )
    if guard is not None:
        return Decision(
            rule,
            account.id,
            False,
            f"{reason}; but {guard}",
            inputs,
            manages=manages,
            team=team,
            guarded_by=guard,
        )
    return Decision(
        rule,
        account.id,
        True,
        reason,
        inputs,
        traits={"routing_reason": f"{rule}: {reason}"},
        segments=manages,
        manages=manages,
        team=team,
    )
