"""Plan, the second step of a cycle: decide every record of the mirror, diff what the rules want
against what is there and what we last wrote, draw owners, and queue the writes in the outbox.

Runs inside the cycle's transaction (`sync.cycle`), after ingest: the plan, the owners drawn, the
decisions, record errors and conflicts commit with the mirror and cursors that caused them.

The passes, in order:

1. **Linked leads** first: what the lead rules will change on a lead joined to an account is
   part of that account's context now, not one cycle later.
2. **Accounts**, streamed from the mirror in id order and parsed once (`sync.accounts`): their
   traits, segments and tasks are planned at once; a routed account, or one whose onboarding
   lead needs a specialist, is kept as a small projection (`RoutedAccount`,
   `OnboardingAccount`), never as the whole account.
3. **Owners**, drawn in account-id order once every account was judged (the capacity of a pool
   member counts the accounts they manage): a new lead per routed account, a specialist per
   onboarding account.
4. **Leads**, streamed: scores, demo triage, inbound routing with their owners.

A value a person changed since our last write (or set without us) is a conflict: reported, and
left alone unless `[sync] on_conflict = "overwrite"`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from core.model import Account, Lead
from rules import Decision, managed_segments
from rules.context import LeadContext
from rules.scoring import lead_score
from state import OwnerChoice, PlanLog, StateDB
from sync import planned_writes as writes
from sync.accounts import iter_accounts
from sync.config import Config
from sync.decider import Decider, routing_winner
from sync.facts import SalesforceFacts
from sync.owners import Owners
from sync.planned_writes import OnboardingAccount, RoutedAccount
from sync.vocabulary import PAGE, Conflict, CycleReport, Progress, iso
from sync.wire import lead_fields, vitally_task

__all__ = ["COMPUTED_LEAD_FIELDS", "Planner"]

_MISSING = object()
_SPECIALIST_RULE = "onboarding.lead"

# Lead fields only crm-sync computes: a different value there is ours to correct, not a conflict.
COMPUTED_LEAD_FIELDS = frozenset({"Lead_Score__c", "Routing_Rule__c", "Routing_Reason__c"})


# The rules say what they want as intents; sync/wire.py gives them the services' names. These two
# functions are the only places the planner reads them.
def _lead_fields(decision: Decision) -> Mapping[str, Any]:
    return lead_fields(decision.lead)


def _task(decision: Decision) -> Mapping[str, Any] | None:
    return None if decision.task is None else vitally_task(decision.task)


def _unowned(lead: Lead) -> bool:
    """Inbound leads wait unowned or in a queue (00G…) until the round robin gives them an owner."""
    return lead.owner_id is None or lead.owner_id.startswith("00G")


@dataclass
class _Waiting:
    """What the owners' pass needs from the accounts' pass: the projections, and how many accounts
    each TAM manages (a pool member's capacity), by email."""

    routed: list[RoutedAccount] = field(default_factory=list)
    onboarding: list[OnboardingAccount] = field(default_factory=list)
    managed_by_email: Counter[str] = field(default_factory=Counter)


class Planner:
    """Plans one cycle into `plan` (a `PlanLog`: spilled to the state and queued in the outbox a
    batch at a time, unless the cycle is a dry run) and `report`."""

    def __init__(
        self,
        config: Config,
        state: StateDB,
        report: CycleReport,
        plan: PlanLog,
        *,
        now: datetime,
        clock: Callable[[], datetime],
        progress: Progress,
    ) -> None:
        self.config = config
        self.state = state
        self.report = report
        self.plan = plan
        self.now = now
        self.clock = clock
        self.progress = progress
        # Fields that hold a person's decision: a value set without us is theirs, not ours to replace.
        self._protected = frozenset({config.vitally.written_traits.get("new_owner", "new_owner"), "OwnerId"})
        self._specialist_trait = config.vitally.written_traits.get("onboarding_specialist", "onboarding_specialist")
        # What we last wrote, (record, field) → value, read a record at a time (state.last_written).
        self._last_vitally: Mapping[tuple[str, str], Any]
        self._last_salesforce: Mapping[tuple[str, str], Any]

    def run(self) -> None:
        """Plan every record, queue the plan, and remember the decisions, record errors and
        conflicts, in the caller's transaction."""
        facts = SalesforceFacts.load(self.state)
        self._last_vitally = self.state.last_written("vitally")
        self._last_salesforce = self.state.last_written("salesforce")
        decider = Decider.of(self.config, facts, self.now)
        self._plan_linked_leads(facts, decider)
        waiting = self._plan_accounts(decider)
        inactive = frozenset(user.id for user in facts.users.values() if not user.is_active)
        owners = Owners(
            self.config, self.state, inactive, waiting.managed_by_email, self.report.run_id, iso(self.clock())
        )
        for routed in sorted(waiting.routed, key=lambda r: r.account_id):
            self._plan_new_lead(routed, facts, owners)
        for onboarding in sorted(waiting.onboarding, key=lambda o: o.account_id):
            self._plan_specialist(onboarding, owners)
        self._plan_leads(facts, decider, owners)
        self.report.fallbacks.extend(owners.fallbacks)
        self.plan.flush()
        self.report.counts["queued"] = self.plan.queued
        self._remember()

    # -- the passes -----------------------------------------------------------------------------

    def _plan_linked_leads(self, facts: SalesforceFacts, decider: Decider) -> None:
        """Show the accounts' rules each linked lead as this cycle's lead writes will leave it."""
        for lead in facts.linked_leads():
            wanted = {
                name: value
                for d in decider.lead(lead)
                if d.fired
                for name, value in _lead_fields(d).items()
                if name not in COMPUTED_LEAD_FIELDS
            }
            current = (self.state.sf_raw("Lead", lead.id) or {}) if wanted else {}
            changed = {name: value for name, value in wanted.items() if current.get(name) != value}
            if changed:
                facts.plan_lead_fields(lead, changed)

    def _plan_accounts(self, decider: Decider) -> _Waiting:
        counts = self.report.counts
        waiting = _Waiting()
        owned_segments = self.config.policy.guards.owned_segments
        mirrored = self.state.account_count()
        for account in iter_accounts(self.state, self.config, self.report):
            counts["accounts_evaluated"] += 1
            if counts["accounts_evaluated"] % PAGE == 0:
                self.progress("accounts evaluated", counts["accounts_evaluated"], mirrored)
            decisions = decider.account(account, full=False)
            self._keep_decisions(d for d in decisions if d.fired or d.guarded_by)
            self._plan_account(account, decisions, partial(decider.account, account))
            if any(s in account.segments for s in owned_segments) and "TAM" in account.key_role_emails:
                waiting.managed_by_email[account.key_role_emails["TAM"]] += 1
            self._wait_for_owners(account, decisions, waiting, decider)
        self.progress("accounts evaluated", counts["accounts_evaluated"], mirrored)
        return waiting

    def _wait_for_owners(
        self, account: Account, decisions: list[Decision], waiting: _Waiting, decider: Decider
    ) -> None:
        """Keep what the owners' pass needs of a routed account, or of one whose onboarding lead
        has no specialist yet."""
        winner = routing_winner(decisions)
        if winner is not None:
            waiting.routed.append(RoutedAccount.of(account, winner, decider.region(account)))
        specialist = next((d for d in decisions if d.fired and d.rule == _SPECIALIST_RULE), None)
        has_one = "Onboarding Specialist" in account.key_roles or account.written.get(self._specialist_trait)
        if specialist is not None and not has_one:
            waiting.onboarding.append(OnboardingAccount.of(account, specialist, decider.region(account)))

    def _plan_leads(self, facts: SalesforceFacts, decider: Decider, owners: Owners) -> None:
        for lead, fields in facts.iter_leads():
            self.report.counts["leads_evaluated"] += 1
            decisions = decider.lead(lead)
            self._keep_decisions(d for d in decisions if d.fired)
            self._plan_lead(lead, fields, decisions, owners)

    # -- one record -----------------------------------------------------------------------------

    def _plan_account(
        self, account: Account, decisions: list[Decision], explained: Callable[[], list[Decision]]
    ) -> None:
        """Plan the account's trait, segment and task writes; `explained` gives every rule's full
        verdict, needed only to say why a segment is removed."""
        written_traits = self.config.vitally.written_traits
        claimed: set[str] = set()
        for decision in decisions:
            if not decision.fired:
                continue
            task = _task(decision)
            if task is not None:
                self._plan_task(account.id, task, decision.rule, decision.reason)
            wants = {written_traits.get(name, name): value for name, value in decision.traits.items()}
            fields, previous = self._changes(
                "vitally", account.id, wants, account.written, claimed, self._last_vitally, decision.rule
            )
            if fields:
                self.plan.append(writes.set_traits(account.id, fields, previous, decision.rule, decision.reason))
        self._plan_segments(account, decisions, explained)

    def _plan_segments(
        self, account: Account, decisions: list[Decision], explained: Callable[[], list[Decision]]
    ) -> None:
        """Each managed segment the account should join or leave (one boolean trait per segment)."""
        wanted: dict[str, Decision] = {}
        for decision in decisions:
            if decision.fired:
                for segment in decision.segments:
                    wanted.setdefault(segment, decision)
        for segment in sorted(managed_segments(self.config.policy)):
            trait = self.config.vitally.segment_traits.get(segment)
            if trait is None:
                continue
            held = account.written.get(trait)
            join = segment in wanted
            if (held is True) == join:
                continue
            # The rule responsible for a segment that no longer holds says why, in full.
            decision = wanted[segment] if join else next(d for d in explained() if segment in d.manages)
            member = True if join else None
            if self._may_write("vitally", account.id, trait, member, held, self._last_vitally, decision.rule):
                self.plan.append(
                    writes.segment_change(
                        account.id, segment, trait, join=join, was_in=segment in account.segments, decision=decision
                    )
                )

    def _plan_task(self, account_id: str, task: Mapping[str, Any], rule: str, reason: str) -> None:
        """A task is created once: its externalId names the account and period, and once it was
        sent we remember it and never plan it again."""
        key = str(task.get("externalId") or "")
        if key and (key, "task") not in self._last_vitally:
            self.plan.append(writes.create_task(account_id, task, rule, reason))

    def _plan_new_lead(self, routed: RoutedAccount, facts: SalesforceFacts, owners: Owners) -> None:
        """A routed account becomes a Salesforce lead, upserted on a key per account and routing
        episode (a retry can never create a second lead), owned by the round robin."""
        context = facts.context_for(routed.account_id)
        prefix = f"crm-sync-{routed.account_id}-"
        ours = [lead for lead in context.leads if (lead.sync_key or "").startswith(prefix)]
        if any(lead in context.open_leads for lead in ours):
            return  # this episode's lead exists and is being worked
        key = f"{prefix}{len(ours) + 1}"
        if (key, "Sync_Key__c") in self._last_salesforce:
            return  # created already; Salesforce has not shown it to us yet
        owner = owners.owner_for(key, routed.team, routed.region)
        scored = Lead(
            id=key,
            system_modstamp=self.now,
            employees=routed.employees,
            annual_revenue=routed.revenue,
            country=routed.country,
        )
        score = lead_score(scored, LeadContext(), self.config.policy, self.now).inputs.get("score")
        self.plan.append(writes.new_lead(routed, key, score, owner))

    def _plan_specialist(self, onboarding: OnboardingAccount, owners: Owners) -> None:
        """An onboarding lead gets an onboarding specialist on the Vitally side: a trait naming
        them, and a task (created once: its externalId names the account)."""
        owner = owners.owner_for(f"onboarding-{onboarding.account_id}", "Onboarding", onboarding.region)
        if owner is None or owner.user_id is None:
            return
        trait = self._specialist_trait
        rule = onboarding.rule
        if not self._may_write("vitally", onboarding.account_id, trait, owner.name, None, self._last_vitally, rule):
            return
        self.plan.append(writes.specialist(onboarding, trait, owner))
        task = writes.specialist_task(onboarding, owner, self.now)
        self._plan_task(onboarding.account_id, task, rule, onboarding.reason)

    def _plan_lead(self, lead: Lead, current: Mapping[str, Any], decisions: list[Decision], owners: Owners) -> None:
        claimed: set[str] = set()
        for decision in decisions:
            wants = dict(_lead_fields(decision)) if decision.fired else {}
            if not wants:
                continue
            owner = self._inbound_owner(lead, decision, owners)
            if owner is not None and owner.user_id is not None:
                wants["OwnerId"] = owner.user_id
            last = self._last_salesforce
            fields, previous = self._changes(
                "salesforce", lead.id, wants, current, claimed, last, decision.rule, COMPUTED_LEAD_FIELDS
            )
            if not fields:
                continue
            # The plan shows the owner only when this write sets it.
            shown = owner.owner if owner is not None and owner.user_id is not None and "OwnerId" in fields else None
            self.plan.append(writes.lead_update(lead.id, lead.vitally_account_id, fields, previous, decision, shown))

    def _inbound_owner(self, lead: Lead, decision: Decision, owners: Owners) -> OwnerChoice | None:
        """The round robin's owner for an unowned inbound lead this decision routes."""
        if decision.lead is None or decision.lead.routing_rule is None or not decision.team or not _unowned(lead):
            return None
        territories = self.config.policy.territories
        region = territories.region_of(lead.country) if lead.country else territories.default_region
        return owners.owner_for(lead.id, decision.team, region)

    # -- diff -----------------------------------------------------------------------------------

    def _changes(
        self,
        system: str,
        record: str,
        wants: Mapping[str, Any],
        current: Mapping[str, Any],
        claimed: set[str],
        last: Mapping[tuple[str, str], Any],
        rule: str,
        computed: frozenset[str] = frozenset(),
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The fields of `wants` that must change (with their current values): not claimed by an
        earlier rule in the configured order, different from what is there now, and not a
        conflict. `computed` fields are ours alone and never a conflict."""
        fields: dict[str, Any] = {}
        previous: dict[str, Any] = {}
        for name, value in wants.items():
            if name in claimed:
                continue
            claimed.add(name)
            now_value = current.get(name)
            if now_value == value:
                continue
            if name not in computed and not self._may_write(system, record, name, value, now_value, last, rule):
                continue
            fields[name] = value
            previous[name] = now_value
        return fields, previous

    def _may_write(
        self,
        system: str,
        record: str,
        key: str,
        value: Any,
        current: Any,
        last: Mapping[tuple[str, str], Any],
        rule: str,
    ) -> bool:
        """A value a person changed since our last write is a conflict: reported, and overwritten
        only when the config says so. So is a person's decision we never made ourselves: a New
        Owner or an OwnerId already set by someone else."""
        ours = last.get((record, key), _MISSING)
        changed_by_someone = (current is not None and key in self._protected) if ours is _MISSING else current != ours
        if not changed_by_someone:
            return True
        overwrite = self.config.on_conflict == "overwrite"
        self.report.conflicts.append(Conflict(system, record, key, value, current, rule, overwritten=overwrite))
        return overwrite

    # -- remembering ----------------------------------------------------------------------------

    def _keep_decisions(self, decisions: Iterable[Decision]) -> None:
        """Decisions worth remembering (fired, or stopped by a guard) go to the state in batches."""
        self.report.decisions.extend(decisions)
        if len(self.report.decisions) >= PAGE:
            self._flush_decisions()

    def _flush_decisions(self) -> None:
        report = self.report
        report.counts["decisions"] += len(report.decisions)
        if not report.dry_run:  # a dry run's copy of the state is thrown away
            self.state.record_decisions(
                report.run_id,
                (
                    {
                        "record": d.record,
                        "rule": d.rule,
                        "fired": int(d.fired),
                        "reason": d.reason,
                        "review": int(d.review),
                        "guarded_by": d.guarded_by,
                    }
                    for d in report.decisions
                ),
            )
        report.decisions.clear()

    def _remember(self) -> None:
        report = self.report
        report.counts["planned"] = len(report.plan)
        report.counts["conflicts"] = len(report.conflicts)
        report.counts["record_errors"] = len(report.record_errors)
        self._flush_decisions()
        self.state.record_errors(
            report.run_id,
            (
                {"system": e.system, "record": e.record_id, "field": e.field, "message": e.message}
                for e in report.record_errors
            ),
        )
        self.state.record_conflicts(
            report.run_id,
            (
                {
                    "system": c.system,
                    "record": c.record,
                    "field": c.field,
                    "ours": json.dumps(c.ours),
                    "theirs": json.dumps(c.theirs),
                    "rule": c.rule,
                }
                for c in report.conflicts
            ),
        )
