"""Lead episodes: a lead's life after it is created, per account and trigger family, read from
what people do in Salesforce and Vitally (plg-lead-qualification.md, lead-routing-and-scoring.md,
accounts-overview.md).

A family is the team a trigger sends its lead to: `product_led` (a TAM), `new_business` (a TAE),
`bdr` (a BDR) and `onboarding` (an onboarding specialist). An account's episode in a family is
read from the newest lead of that family linked to it (`AccountContext.leads`), and from Vitally:

- **open**: the lead exists and nobody has touched it yet;
- **working**: its status is a working one ("Working", "Contacted"), or a person gave it another
  owner than the one crm-sync drew;
- **qualified**: its status says the owner qualified it ("In progress", "Qualified"), or, for a
  product-led lead, the TAM added themselves as Account Executive and put the account in the
  `Leads` segment;
- **nurturing**: its status is "Nurturing" ("not yet": the owner comes back later);
- **disqualified**: its status is "Disqualified" (or "Unqualified", "Closed - Not Converted"): the
  cool-off starts, dated by the lead's last change (Salesforce keeps no disqualification date);
- **converted**: `IsConverted` (or a converted status), with or without an opportunity
  (`ConvertedOpportunityId`), or, for a product-led lead, the account joined the TAM's managed book
  (`AM Managed`). Conversion ends the episode.

The state is a pure function of the records at `now`: nothing is stored, so a person's change in
either service moves the episode on the next cycle. Which states stop a signal from routing the
account again is `hold` (what the routing guards read) and `verdict` (what `explain` shows).
The follow-up tasks of the nurture window and of the qualified lead's three months are the rules
`episode.nurture_follow_up` and `episode.qualified_window`, each created once per lead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from core.model import Account, Lead
from rules import clock
from rules.base import AccountRule, Decision, Rule, TaskIntent, add_months, per_policy
from rules.context import CLOSED_LOST, dropped_as_spam, in_picklist, is_stage, support_request

if TYPE_CHECKING:
    from rules.context import AccountContext
    from rules.policy import EpisodePolicy, Policy

__all__ = [
    "ACTIVE_STATES",
    "FAMILIES",
    "NURTURE_FOLLOW_UP",
    "QUALIFIED_WINDOW",
    "Episode",
    "Family",
    "State",
    "add_months",
    "describe",
    "episodes",
    "family_of_lead",
    "family_of_rule",
    "hold",
    "nurture_follow_up",
    "qualified_window",
    "verdict",
]

Family = Literal["product_led", "new_business", "bdr", "onboarding"]
State = Literal["open", "working", "qualified", "nurturing", "disqualified", "converted"]

FAMILIES: tuple[Family, ...] = ("product_led", "new_business", "bdr", "onboarding")
ACTIVE_STATES: tuple[State, ...] = ("open", "working", "qualified", "nurturing")
"""States in which a person has the lead: nothing routes the account again."""

_NURTURE_RULE = "episode.nurture_follow_up"
_QUALIFIED_RULE = "episode.qualified_window"
_OLDEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Episode:
    """An account's episode in one family: its state, the lead it is read from (None when read
    from Vitally alone), since when (when known), and the signal it was read from, in words."""

    family: Family
    state: State
    lead: Lead | None
    since: date | None
    signal: str
    ours: bool = False
    opportunity: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def family_of_rule(rule: str) -> Family | None:
    """The family of a routing rule id (None for a config-defined trigger: its team decides)."""
    if rule.startswith("product_led."):
        return "product_led"
    if rule.startswith("new_business.") or rule == "onboarding.direct_handover":
        return "new_business"
    if rule.startswith("bdr."):
        return "bdr"
    return None


def family_of_lead(lead: Lead, policy: Policy) -> Family:
    """A lead's family: from the rule that routed it (`Routing_Rule__c`), else its LeadSource (BDR
    sources, product-led sources, and every other source is new business)."""
    found = family_of_rule(lead.routing_rule or "")
    if found is not None:
        return found
    source = lead.lead_source  # compared as the routing triggers compare it: any case, spaces ignored
    if in_picklist(source, policy.lifecycle.bdr_lead_sources):
        return "bdr"
    if in_picklist(source, policy.lifecycle.expansion_lead_sources):
        return "product_led"
    return "new_business"


@functools.lru_cache(maxsize=16)
def _statuses(rules: EpisodePolicy) -> tuple[frozenset[str], ...]:
    """The status lists, case-folded: converted, disqualified, nurturing, qualified, working."""
    lists = (
        rules.converted_statuses,
        rules.disqualified_statuses,
        rules.nurturing_statuses,
        rules.qualified_statuses,
        rules.working_statuses,
    )
    return tuple(frozenset(s.strip().casefold() for s in statuses) for statuses in lists)


@per_policy
def _policy_statuses(policy: Policy) -> tuple[frozenset[str], ...]:
    """`_statuses` of the policy's episodes, looked up by the policy's identity (hashing the episode
    policy, as `_statuses`'s cache does, costs more than a gate that reads it)."""
    return _statuses(policy.episodes)


def _day(moment: datetime | None) -> date | None:
    return None if moment is None else moment.date()


def _created(lead: Lead) -> datetime:
    when = lead.created_date or lead.system_modstamp or _OLDEST
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _status_day(lead: Lead) -> datetime:
    """When the lead was moved to its status, as near as crm-sync knows: the first version it read
    with it (`Lead.status_since`), else its last change (a lead mirrored before crm-sync kept that)."""
    return lead.status_since or lead.system_modstamp


def lead_episode(lead: Lead, family: Family, ctx: AccountContext, policy: Policy) -> Episode:
    """The episode one lead is in, from its status, conversion and owner."""
    converted, disqualified, nurturing, qualified, working = _statuses(policy.episodes)
    status = (lead.status or "").strip().casefold()
    shown = lead.status or "no status"
    ours = bool(lead.sync_key)
    if lead.is_deleted:
        # A person deleted it in Salesforce (only crm-sync's own leads stay mirrored once deleted):
        # their "no", read as a disqualification on the day of the deletion, so it is not re-created.
        # Merged into a lead the mirror holds, the account's context shows that lead instead
        # (`sync.facts`); into one it does not, it stays a deletion.
        since = _day(lead.system_modstamp)
        how = "deleted" if lead.master_record_id is None else f"merged into lead {lead.master_record_id}, unseen,"
        return Episode(family, "disqualified", lead, since, f"lead {lead.id} {how} in Salesforce", ours)
    named = _named(lead)
    if lead.is_converted or status in converted:
        opportunity = lead.converted_opportunity_id
        into = f"into opportunity {opportunity}" if opportunity else "without an opportunity"
        since = lead.converted_date or _day(lead.system_modstamp)
        return Episode(family, "converted", lead, since, f"{named} converted {into}", ours, opportunity)
    states: tuple[tuple[frozenset[str], State], ...] = (
        (disqualified, "disqualified"),
        (nurturing, "nurturing"),
        (qualified, "qualified"),
    )
    for statuses, state in states:
        if status in statuses:
            # Disqualified and qualified are dated by the move to the status (the cool-off; the
            # three months a TAM has once they qualify: "Qualifying a lead means you're investing
            # time in it ... You have up to 3 months"); nurturing by the lead's creation.
            dated = state in ("disqualified", "qualified")
            since = _day(_status_day(lead)) if dated else _day(_created(lead))
            return Episode(family, state, lead, since, f"{named} status {shown}", ours)
    if status in working:
        return Episode(family, "working", lead, _day(_created(lead)), f"{named} status {shown}", ours)
    assigned = ctx.assigned_owners.get(lead.id)
    if assigned and lead.owner_id and lead.owner_id != assigned:
        signal = f"{named} owner changed from {assigned} to {lead.owner_id}"
        return Episode(family, "working", lead, _day(_created(lead)), signal, ours)
    return Episode(family, "open", lead, _day(_created(lead)), f"{named} status {shown}", ours)


def _named(lead: Lead) -> str:
    """ "lead <Id>", and the crm-sync lead a person merged into it (`Lead.merged_from`)."""
    if lead.merged_from is None:
        return f"lead {lead.id}"
    return f"lead {lead.id} (crm-sync's lead {lead.merged_from} merged into it)"


def _vitally_product_led(account: Account, found: Episode | None, policy: Policy) -> Episode | None:
    """What Vitally adds to the product-led episode: the TAM's managed book ends it (converted);
    the TAM as Account Executive with the account in `Leads` means they qualified it, unless the
    lead's status says "nurturing": the TAM's "not yet" (plg-lead-qualification.md: change the
    status to "nurturing" and come back), given after qualifying or instead of it, while the key
    role and the segment may stay."""
    if found is not None and not found.active:
        return found  # what the lead says in Salesforce is the latest word
    lifecycle = policy.lifecycle
    if found is not None and any(s in account.segments for s in lifecycle.tam_segments):
        segment = next(s for s in lifecycle.tam_segments if s in account.segments)
        return Episode("product_led", "converted", None, None, f"segment {segment}: in the managed book", found.ours)
    if found is not None and found.state == "nurturing":
        return found
    executive = account.roles.get(lifecycle.ae_role)
    if executive is not None and policy.episodes.leads_segment in account.segments:
        signal = f"{lifecycle.ae_role} {executive} and segment {policy.episodes.leads_segment}"
        lead = None if found is None else found.lead
        since = None if found is None else found.since
        return Episode("product_led", "qualified", lead, since, signal, found is not None and found.ours)
    return found


def _onboarding(account: Account, policy: Policy) -> Episode | None:
    """An onboarding specialist's episode (Vitally only): open in the Onboarding segment, worked
    once a specialist is assigned."""
    specialist = account.roles.get(policy.onboarding.specialist_role)
    if specialist is not None:
        signal = f"{policy.onboarding.specialist_role} {specialist}"
        return Episode("onboarding", "working", None, None, signal)
    if policy.onboarding.segment in account.segments:
        return Episode("onboarding", "open", None, None, f"segment {policy.onboarding.segment}")
    return None


def episodes(account: Account, ctx: AccountContext, policy: Policy) -> tuple[Episode, ...]:
    """The account's episode in each family that has one, in `FAMILIES` order. A support request
    nobody moved on (`rules.context.support_request`) is no family's episode: it skipped the round
    robin for Zendesk, and taken for the newest lead of its family it would hide a person's "no"
    before it (a disqualified lead's cool-off; found by a review)."""
    newest: dict[Family, Lead] = {}
    new = ctx.new
    for lead in ctx.leads:
        if lead.classification is not None and support_request(lead, new):
            continue
        family = family_of_lead(lead, policy)
        known = newest.get(family)
        if known is None or _created(lead) > _created(known):
            newest[family] = lead
    found: dict[Family, Episode] = {family: lead_episode(lead, family, ctx, policy) for family, lead in newest.items()}
    product_led = _vitally_product_led(account, found.get("product_led"), policy)
    if product_led is not None:
        found["product_led"] = product_led
    onboarding = _onboarding(account, policy)
    if onboarding is not None:
        found["onboarding"] = onboarding
    return tuple(found[family] for family in FAMILIES if family in found)


def _days(since: date | None, now: datetime) -> int | None:
    return None if since is None else (now.date() - since).days


def _changes_after(since: date | None, days: int) -> None:
    """A cool-off or hold of `days` days from `since` ends on `since + days` (`rules.clock`)."""
    if since is not None:
        clock.changes_when_days_reach(since, days)


def _spam(episode: Episode) -> bool:
    """A lead crm-sync's own demo triage dropped as spam: no person disqualified it."""
    return episode.lead is not None and dropped_as_spam(episode.lead)


def _ended(episode: Episode, policy: Policy, now: datetime) -> tuple[bool, str]:
    """(whether it still holds the account back, why) for a disqualified or converted episode."""
    days = _days(episode.since, now)
    lead = episode.lead.id if episode.lead is not None else "the lead"
    if episode.state == "disqualified":
        if _spam(episode):
            return False, f"{lead} dropped as spam by the demo triage, not disqualified by a person"
        cool_off = policy.guards.cool_off_days
        _changes_after(episode.since, cool_off)
        if days is None or days < cool_off:
            ago = "on an unknown day" if days is None else f"{days} days ago"
            return True, f"lead {lead} disqualified in Salesforce {ago} (cool-off {cool_off} days)"
        return False, f"lead {lead} disqualified {days} days ago: the {cool_off}-day cool-off is over"
    if episode.opportunity is not None:
        return False, f"lead {lead} converted into opportunity {episode.opportunity}: the opportunity decides"
    if episode.lead is None:
        return True, f"{episode.signal}: owned"
    held = policy.guards.converted_hold_days
    _changes_after(episode.since, held)
    if days is None or days < held:
        ago = "on an unknown day" if days is None else f"{days} days ago"
        return True, f"lead {lead} converted {ago} without an opportunity (hold {held} days)"
    return False, f"lead {lead} converted {days} days ago without an opportunity: the {held}-day hold is over"


def hold(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> str | None:
    """Why a signal must not route the account now, from its ended episodes: a lead a person
    disqualified in Salesforce within the cool-off, a lead converted without an opportunity within
    the hold, or one converted into an opportunity closed lost within the cool-off. None when no
    ended episode holds it (open episodes are the routing guards' business: someone else's open
    lead holds the account, crm-sync's own is not created twice)."""
    if not ctx.leads:
        return None
    for episode in episodes(account, ctx, policy):
        if episode.state in ("disqualified", "converted") and episode.lead is not None:
            holds, why = _ended_with(episode, ctx, policy, now)
            if holds:
                return why
    return None


def _ended_with(episode: Episode, ctx: AccountContext, policy: Policy, now: datetime) -> tuple[bool, str]:
    """`_ended`, where a lead converted into an opportunity lets that opportunity decide: lost (a
    person's "no", as a disqualification is) it holds the account for the cool-off from its close.
    An opportunity the account's context does not hold (deleted, or not shared with crm-sync; an
    event's mini-cycle reads the one a lead it read was converted into when the mirror lacks it)
    cannot decide: the lead holds the account as a conversion without an opportunity
    does, for the hold from its conversion, rather than let a second lead go out beside a deal."""
    if episode.opportunity is not None:
        if not any(o.id == episode.opportunity for o in ctx.opportunities):
            return _unseen(episode, policy, now)
        lost = _lost(episode, ctx, policy, now)
        if lost is not None:
            return True, lost
    return _ended(episode, policy, now)


def _unseen(episode: Episode, policy: Policy, now: datetime) -> tuple[bool, str]:
    """A lead converted into an opportunity crm-sync does not see: held for `converted_hold_days`."""
    days = _days(episode.since, now)
    lead = episode.lead.id if episode.lead is not None else "the lead"
    unseen = f"lead {lead} converted into opportunity {episode.opportunity}, which crm-sync does not see"
    held = policy.guards.converted_hold_days
    _changes_after(episode.since, held)
    if days is None or days < held:
        ago = "on an unknown day" if days is None else f"{days} days ago"
        return True, f"{unseen} (not read yet, deleted, or not shared with it) {ago} (hold {held} days)"
    return False, f"{unseen}, {days} days ago: the {held}-day hold is over"


def answered(rule: str, ctx: AccountContext, policy: Policy, now: datetime) -> str | None:
    """Why a person's referral (`rule`: its segment still on the account) must not route the account
    again: the team it asks has just answered "no" for this account. The newest lead crm-sync
    created for the account in the referral's family, or the lead a person merged it into (a
    TAM's product-led lead for `AM referral`,
    a TAE's new-business lead for `AE referral` and `Onboarding referral`: whichever trigger won
    it, the referral may only have also matched) was closed by a person ("if the answer is no,
    simply mark the task as 'disqualified'": plg-lead-qualification.md): disqualified, or
    converted without an opportunity, within the cool-off or the hold, or converted into an
    opportunity Closed Lost within the cool-off. The segment a person added stays, and without
    this every "no" would be followed by a new lead and a new owner on the next cycle. A lead
    someone else created, or another team's, does not hold a referral back (a person asking is new
    information), nor does this one once its cool-off or hold is over."""
    family = family_of_rule(rule)
    newest: Lead | None = None
    for lead in ctx.leads:
        if not (lead.sync_key or lead.merged_from) or family_of_lead(lead, policy) != family:
            continue
        if newest is None or _created(lead) > _created(newest):
            newest = lead
    if newest is None:
        return None
    episode = lead_episode(newest, family or "new_business", ctx, policy)
    if episode.state not in ("disqualified", "converted"):
        return None
    holds, why = _ended_with(episode, ctx, policy, now)
    return f"the team this referral asks answered: {why}" if holds else None


def _lost(episode: Episode, ctx: AccountContext, policy: Policy, now: datetime) -> str | None:
    """Why an episode whose lead became an opportunity holds the account: that opportunity went
    Closed Lost within the cool-off (None otherwise: open, the open-opportunity guard holds it;
    won, the Account Executive's nurture does, `rules.guards.nurtured_after_close`)."""
    won_or_lost = next((o for o in ctx.opportunities if o.id == episode.opportunity), None)
    if won_or_lost is None or won_or_lost.close_date is None or not is_stage(won_or_lost.stage_name, CLOSED_LOST):
        return None
    days = (now.date() - won_or_lost.close_date).days
    cool_off = policy.guards.cool_off_days
    _changes_after(won_or_lost.close_date, cool_off)
    if days >= cool_off:
        return None
    lead = episode.lead.id if episode.lead is not None else "the lead"
    return (
        f"lead {lead} converted into opportunity {won_or_lost.id}, closed lost "
        f"{won_or_lost.close_date} ({days} days ago; cool-off {cool_off} days)"
    )


def verdict(episode: Episode, policy: Policy, now: datetime, ctx: AccountContext | None = None) -> tuple[bool, str]:
    """(whether the episode blocks a new lead for the account, why), as `explain` shows it."""
    if episode.family == "onboarding":
        return False, "an onboarding specialist's account may still become a sales lead (coordinate with them)"
    if episode.active:
        if episode.lead is None:
            return True, f"qualified in Vitally ({episode.signal}): the TAM is working it"
        if episode.ours:
            return True, f"crm-sync's lead {episode.lead.id} is {episode.state}: no second lead while it is"
        return True, f"lead {episode.lead.id} ({episode.lead.status or 'no status'}) is someone's: not routed"
    return _ended(episode, policy, now) if ctx is None else _ended_with(episode, ctx, policy, now)


def describe(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> list[str]:
    """One line per episode of the account, for `explain`: family, state, since, signal, verdict."""
    lines = []
    for episode in episodes(account, ctx, policy):
        blocks, why = verdict(episode, policy, now, ctx)
        since = f" since {episode.since}" if episode.since is not None else ""
        owner = "crm-sync's lead" if episode.ours else "read from Vitally" if episode.lead is None else "a lead"
        effect = "blocks a new lead" if blocks else "allows a new lead"
        lines.append(f"{episode.family}: {episode.state}{since} ({episode.signal}; {owner}): {effect}: {why}")
    return lines


# -- the follow-up tasks -------------------------------------------------------------------------


def _assignee(account: Account, family: Family, policy: Policy) -> str | None:
    """The Vitally user to give a follow-up task: the Account Executive key role (a TAM who
    qualified a lead names themselves there), else the family's owner role."""
    lifecycle = policy.lifecycle
    role = lifecycle.tam_role if family == "product_led" else lifecycle.ae_role
    return account.roles.get(lifecycle.ae_role) or account.roles.get(role)


def _task_inputs(episode: Episode) -> dict[str, object]:
    lead = episode.lead
    return {
        "family": episode.family,
        "state": episode.state,
        "lead": None if lead is None else lead.id,
        "lead_status": None if lead is None else lead.status,
        "lead_owner": None if lead is None else lead.owner_id,
        "since": episode.since,
    }


def _may_nurture(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """Some lead of the account in a nurturing status."""
    if not ctx.leads:
        return False
    nurturing = _policy_statuses(policy)[2]
    return any((lead.status or "").strip().casefold() in nurturing for lead in ctx.leads)


def nurture_follow_up(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A lead its owner set to "Nurturing" gets a Vitally task to revisit the account in 30-60 days
    (45 by default), once each time they do ("Track as a nurture ... Set a Vitally task to revisit
    in 30-60 days"; "If the answer is 'not yet,' change status to 'nurturing' and come back"): the
    spell begins the day crm-sync first read the lead in that status (`TaskIntent.spell`; before
    2026-12-07 once per lead, and a second "not yet" got no task)."""
    rules = policy.episodes
    if not ctx.leads:  # `explain` asks of every account: most have no lead at all
        return Decision(_NURTURE_RULE, account.id, False, "no lead of the account in Salesforce")
    known = episodes(account, ctx, policy)
    found = [e for e in known if e.state == "nurturing" and e.lead is not None]
    if not found:
        states = ", ".join(f"{e.family} {e.state}" for e in known) or "no lead episode"
        return Decision(_NURTURE_RULE, account.id, False, f"no lead is nurturing ({states})")
    episode = found[0]
    lead = episode.lead
    assert lead is not None  # found keeps only episodes read from a lead
    reason = (
        f"{episode.family} lead {lead.id} is nurturing (status {lead.status}, owner {lead.owner_id or 'none'}): "
        f"revisit in {rules.nurture_days} days"
    )
    task = TaskIntent(
        key=f"{_NURTURE_RULE}:{account.id}:{lead.id}",
        account_id=account.id,
        title=f"{rules.nurture_task_name}: {account.name}",
        description=reason,
        due=(now + timedelta(days=rules.nurture_days)).date(),
        assignee=_assignee(account, episode.family, policy),
        tags=rules.task_tags,
        # Only a noted status day dates a spell: SystemModstamp moves with every edit, and each
        # edit would look like a new "not yet" (a lead without the note keeps one task).
        spell=None if lead.status_since is None else lead.status_since.date(),
    )
    return Decision(_NURTURE_RULE, account.id, True, reason, _task_inputs(episode), task=task)


NURTURE_FOLLOW_UP: AccountRule = Rule(_NURTURE_RULE, nurture_follow_up, _may_nurture)


def _may_qualified(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A lead of the account, or the account in the Leads segment."""
    return bool(ctx.leads) or policy.episodes.leads_segment in account.segments


def qualified_window(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> Decision:
    """A product-led lead its TAM qualified gets a Vitally task due when the three months to decide
    whether it belongs in their book end ("You have up to 3 months to figure out whether a new lead
    belongs in your book"), counted from the day they qualified it (the first version of the lead
    crm-sync read in that status; before 2026-12-07 from the lead's creation, which gave a lead
    nurtured for months before its "yes" no time at all); once per lead."""
    rules = policy.episodes
    if not _may_qualified(account, ctx, policy, now):  # `explain` asks of every account: most have no lead
        return Decision(_QUALIFIED_RULE, account.id, False, "no lead of the account, not in segment Leads")
    found = next(
        (e for e in episodes(account, ctx, policy) if e.family == "product_led" and e.state == "qualified"), None
    )
    if found is None:
        return Decision(_QUALIFIED_RULE, account.id, False, "no qualified product-led lead")
    start = found.since or now.date()
    end = add_months(start, rules.qualified_window_months)
    left = (end - now.date()).days
    timing = f"decide by {end} ({left} days left)" if left >= 0 else f"the window ended {end}: decide now"
    reason = (
        f"product-led lead qualified ({found.signal}); {rules.qualified_window_months} months from {start} "
        f"to decide whether it belongs in the book: {timing}"
    )
    key = found.lead.id if found.lead is not None else "vitally"
    task = TaskIntent(
        key=f"{_QUALIFIED_RULE}:{account.id}:{key}",
        account_id=account.id,
        title=f"{rules.qualified_task_name} ({account.name})",
        description=reason,
        due=max(end, now.date()),
        assignee=_assignee(account, "product_led", policy),
        tags=rules.task_tags,
    )
    return Decision(_QUALIFIED_RULE, account.id, True, reason, _task_inputs(found), task=task)


def _may_qualified_window(account: Account, ctx: AccountContext, policy: Policy, now: datetime) -> bool:
    """A qualified product-led episode is possible: the Account Executive key role with the account in
    the Leads segment (`_vitally_product_led`), or a lead of the account in a qualified status
    (`lead_episode`). Most accounts with leads have none qualified."""
    if policy.episodes.leads_segment in account.segments and policy.lifecycle.ae_role in account.roles:
        return True
    if not ctx.leads:
        return False
    qualified = _policy_statuses(policy)[3]
    return any((lead.status or "").strip().casefold() in qualified for lead in ctx.leads)


QUALIFIED_WINDOW: AccountRule = Rule(_QUALIFIED_RULE, qualified_window, _may_qualified_window)
