"""Plan, the second step of a cycle: decide every record of the mirror, diff what the rules want
against what is there and what we last wrote, draw owners, and queue the writes in the outbox.

Runs inside the cycle's transaction (`sync.cycle`), after ingest: the plan, the owners drawn, the
decisions, record errors and conflicts commit with the mirror and cursors that caused them.

The passes, in order:

1. **Linked leads** first: what the lead rules will change on a lead joined to an account is
   part of that account's context now, not one cycle later.
2. **Accounts**, streamed from the mirror in its order (`state.db.MIRROR_ORDER`: the order
   crm-sync first read them) and parsed once (`sync.accounts`): their
   traits, segments and tasks are planned at once; a routed account, or one whose onboarding
   lead needs a specialist, is kept as a small projection (`RoutedAccount`,
   `OnboardingAccount`), never as the whole account.
3. **Owners**, drawn in account-id order once every account was judged (the capacity of a pool
   member counts the accounts they manage): a new lead per routed account, a specialist per
   onboarding account.
4. **Leads**, streamed: scores, demo triage, inbound routing with their owners.
5. **Settle** the writes queued by earlier cycles that this plan did not want again (the person
   changed the field since, the rule's inputs changed, or the send took effect and only its
   answer was lost): none of them is ever sent as it is. Each is marked done when its values are
   already there, else dropped, and a person's change it would have undone is a conflict.

Every field follows one ownership rule (`sync.ownership`): a value crm-sync did not write is a
person's, a conflict reported once and left alone unless the config says otherwise
(`[sync] on_conflict`, `on_first_sight`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import partial
from typing import Any

from core.countries import normalise_country
from core.model import Account, Lead
from rules import Decision, managed_by, managed_segments
from rules.allocation import owner_region
from rules.base import REASON_TRAITS, reason_gist
from rules.clock import Horizon, watching
from rules.context import LeadContext
from rules.new_business import BDR_QUALIFIED
from rules.policy import RoutingPolicy
from rules.scoring import lead_score
from state import LastWritten, OutboxRow, OwnerChoice, PlanLog, PlannedWrite, StateDB
from sync import planned_writes as writes
from sync.accounts import iter_accounts, parser_fingerprint
from sync.config import Config
from sync.decider import Decider, routing_winner
from sync.facts import SalesforceFacts
from sync.followups import FollowUps
from sync.incremental import Book, LeadBook
from sync.owners import Owners, unavailable_users
from sync.ownership import (
    COMPUTED_LEAD_FIELDS,
    Conflicts,
    Ownership,
    Verdict,
    changed_fields,
    new_statuses,
    ours_in,
)
from sync.planned_writes import OnboardingAccount, RoutedAccount
from sync.scope import EVERYTHING, Scope
from sync.signups import Signups
from sync.verdicts import Verdicts
from sync.vocabulary import PAGE, Conflict, CycleReport, Progress, iso
from sync.wire import (
    TASK_KEY_PREFIX,
    WRITTEN_TRAIT,
    Truncation,
    fit_lead_fields,
    lead_fields,
    read_written_trait,
    sync_key,
    sync_key_prefix,
    vitally_task,
    written_trait_at,
)

__all__ = ["COMPUTED_LEAD_FIELDS", "Planner"]

_SPECIALIST_RULE = "onboarding.lead"
_SPECIALIST_TEAM = "Onboarding"  # the pools' team the specialists are drawn from


def _specialist_key(account_id: str) -> str:
    """The round robin's key of an onboarding account's specialist."""
    return f"onboarding-{account_id}"


_Ours = Callable[[str], list[Any]]  # field → the values crm-sync knows it wrote there


# The rules say what they want as intents; sync/wire.py gives them the services' names. These two
# functions are the only places the planner reads them.


def _diff(
    wants: Mapping[str, Any],
    current: Mapping[str, Any],
    claimed: set[str],
    may_write: Callable[[str, Any, Any], bool],
    computed: frozenset[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`Planner._changes`' diff: (the fields of `wants` to write, their current values). A field
    another decision claimed first is skipped (and this one claims the rest); a field equal to
    its current value needs nothing; one `may_write(name, value, current)` refuses holds the whole
    decision (none of its fields), unless it is `computed` (crm-sync's alone)."""
    fields: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    held = False
    for name, value in wants.items():
        if name in claimed:
            continue
        claimed.add(name)
        now_value = current.get(name)
        if now_value == value:
            continue
        if name not in computed and not may_write(name, value, now_value):
            held = True
            continue
        fields[name] = value
        previous[name] = now_value
    if held:
        return {}, {}
    return fields, previous


# A BDR's yes on a lead crm-sync created for the BDRs: its owner drawn from the TAE round robin,
# and its `Routing_Reason__c` (which the account's lifecycle stage reads) new_business.bdr_qualified's.
BDR_HANDOVER = BDR_QUALIFIED.id
HANDOVER_MARK = frozenset({"Routing_Reason__c"})


def handover_due(lead: Lead, last: Mapping[tuple[str, str], Any], routing: RoutingPolicy) -> bool:
    """Whether a BDR's yes on crm-sync's own BDR lead (`rules.new_business.bdr_handover`) is still
    to be carried out, given `last`, what crm-sync last wrote to Salesforce: the lead is still with
    the owner crm-sync gave it when it created it (its BDR, or the BDR pool's fallback queue;
    created with no owner, while it waits for routing), and crm-sync has not written it an owner
    since. A lead whose owner a person changed (passed to a colleague, dropped in a queue, claimed
    from the queue, handed to a TAE, handed back by the TAE) is theirs: no owner is drawn, and the
    decision writes only its reason (crm-sync's own field: the BDR said yes, which the account's
    stage reads)."""
    return handover_state(lead, last, routing)[0]


def handover_state(lead: Lead, last: Mapping[tuple[str, str], Any], routing: RoutingPolicy) -> tuple[bool, str]:
    """`handover_due`, and why, in words (for `explain`)."""
    if not lead.sync_key:
        return False, "not a lead crm-sync created"
    written = ours_in(last, lead.id, "OwnerId")
    if written:
        return False, f"handed over already (crm-sync wrote owner {written[0]}): who has it now is people's business"
    created_with = ours_in(last, lead.sync_key, "OwnerId")
    owner = lead.owner_id or "none"
    if not created_with:  # created without an owner (no BDR pool for its region): while it waits
        waiting = routing.waiting_for_routing(lead.owner_id)
        if waiting is not None:
            return True, f"created without an owner and {waiting}: a TAE is drawn"
        return False, f"created without an owner, since given {owner} by a person: theirs"
    if lead.owner_id in created_with:
        return True, f"still with {owner}, the owner crm-sync created it with: a TAE is drawn"
    return False, f"owner {owner} is not the one crm-sync created it with ({created_with[0]}): a person's choice"


def _lead_fields(decision: Decision) -> Mapping[str, Any]:
    return lead_fields(decision.lead)


def _our_leads(facts: SalesforceFacts, account_id: str) -> list[Lead]:
    """The leads crm-sync created for the account (their Sync_Key__c names it), one per episode,
    those merged into another lead included (each used its key)."""
    prefix = sync_key_prefix(account_id)
    return [lead for lead in facts.linked_to(account_id) if (lead.sync_key or "").startswith(prefix)]


def _episode_lead_open(facts: SalesforceFacts, account_id: str) -> bool:
    """Whether the lead of the account's current routing episode exists and is being worked."""
    context = facts.context_for(account_id)
    return any(lead in context.open_leads for lead in _our_leads(facts, account_id))


@dataclass
class _Waiting:
    """What the owners' pass needs from the accounts' pass: the projections, and how many accounts
    each TAM manages (a pool member's capacity), by email."""

    routed: list[RoutedAccount] = field(default_factory=list)
    onboarding: list[OnboardingAccount] = field(default_factory=list)
    # Onboarding accounts no specialist can be drawn for (no pool for their region, none drawn
    # before): reported by the owners' pass, but waiting for nothing a cycle could bring, so their
    # judgement holds (`_wait_for_owners`).
    unpooled: list[OnboardingAccount] = field(default_factory=list)
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
        scope: Scope = EVERYTHING,
        full: bool = False,
    ) -> None:
        self.config = config
        self.state = state
        self._spells_day: str | None = None
        self.report = report
        self.plan = plan
        self.now = now
        self.clock = clock
        self.progress = progress
        self.scope = scope
        self.full = full  # judge every account, not only those whose inputs changed (sync.incremental)
        self.ownership = Ownership(
            config.on_conflict,
            config.on_first_sight,
            config.policy.routing,
            new_statuses(config.policy),
        )
        self.conflicts = Conflicts.of(state, report)
        self.followups: FollowUps | None = None  # queues the follow-ups of a write found applied
        self._specialist_trait = config.vitally.written_traits.get("onboarding_specialist", "onboarding_specialist")
        # Segments a rule switched off manages ([rules.enabled]): never taken away while it is off.
        policy = config.policy
        self._kept_segments = frozenset().union(
            *(managed_by(rule, policy, config.custom_triggers) for rule in policy.disabled)
        )
        # What we last wrote, (record, field) → value, read a record at a time (state.last_written).
        self._last_vitally: LastWritten
        self._last_salesforce: Mapping[tuple[str, str], Any]
        # The watch of the rules' clock while a plan runs (`run`, `run_for`).
        self._horizon = Horizon(now)

    def run(self) -> None:
        """Plan every record, queue the plan, and remember the decisions, record errors and
        conflicts, in the caller's transaction."""
        # One watch of the rules' clock for the whole plan, cleared before each record is judged:
        # what its dates say of when its judgement may change (`rules.clock`).
        self._spells_since()  # marked by the first cycle that plans: every later spell counts
        with watching(self.now) as self._horizon:
            self._run()

    def _run(self) -> None:
        # A planning scope judges what it plans in full and teaches the next cycle nothing.
        full = self.full or self.scope.limited
        # Accounts found malformed under other parse settings are parsed again (`sync.accounts`).
        rechecked = self.state.recheck_malformed(parser_fingerprint(self.config))
        if rechecked:
            self.report.counts["malformed_rechecked"] = rechecked
        # Parse the linked leads when an account's context first needs them, unless every account
        # will be judged (a cold or `--full` cycle: one streamed read is cheaper then).
        facts = SalesforceFacts.load(
            self.state,
            lazy=not full and self.state.has_judgements(),
            policy=self.config.policy,
        )
        decider = self._begin(facts)
        inactive, unknown = unavailable_users(facts.users, self.config)
        leads = LeadBook.of(
            self.config,
            self.state,
            facts,
            self.now,
            full=full,
            learn=not self.scope.limited,
            unavailable=inactive | unknown,  # as `Owners.take_back` reads them, members or not
        )
        self._leads_holding = leads.holding
        self._plan_linked_leads(facts, decider, leads)
        book = Book.of(self.config, self.state, facts, self.now, full=full)
        self._rules = book.rules
        waiting = self._plan_accounts(decider, book)
        self.state.save_member_load(waiting.managed_by_email)  # what an event's mini-cycle draws against
        owners = self._draw_owners(waiting, facts)
        self._plan_leads(facts, decider, owners, leads)
        self._finish(owners, lambda: self.state.unconfirmed(self.report.run_id))

    def run_for(self, facts: SalesforceFacts, accounts: Sequence[Account]) -> None:
        """Plan these accounts and the leads of `facts` only (an event's mini-cycle,
        `sync.minicycle`), exactly as `run` plans them: `facts` holds their Salesforce records
        (`SalesforceFacts.load_for`), the pool members' capacity counts are the last whole plan's.
        Only the pending writes of these records (and of these accounts' leads and tasks) are
        settled; conflicts of other records stay open."""
        with watching(self.now) as self._horizon:
            self._run_for(facts, accounts)

    def _run_for(self, facts: SalesforceFacts, accounts: Sequence[Account]) -> None:
        decider = self._begin(facts, few=True)
        leads = LeadBook.everything(self.config, self.state, facts, self.now)
        self._plan_linked_leads(facts, decider, leads)
        waiting = _Waiting(managed_by_email=self.state.member_load())
        for account in accounts:
            self._judge_account(account, decider, waiting)
        owners = self._draw_owners(waiting, facts)
        self._plan_leads(facts, decider, owners, leads)
        records = [account.id for account in accounts] + [lead.id for lead, _ in facts.iter_leads()]
        self._finish(owners, lambda: self.state.unconfirmed_for(self.report.run_id, records), records=records)

    def _begin(self, facts: SalesforceFacts, *, few: bool = False) -> Decider:
        self._last_vitally = self.state.last_written("vitally")
        self._last_salesforce = self.state.last_written("salesforce")
        self._linked_changed: set[str] = set()
        # The records whose judgement held (not judged): their standing conflicts stay open (`_held`).
        self._leads_holding = frozenset[str]()
        self._judged_conflicted: set[str] = set()  # the accounts judged that had a conflict standing
        self._rules = ""  # the rules' fingerprint of a whole plan's `Book`
        demo = self.config.policy.demo
        # A mini-cycle's few demo requests read their own verdicts, not every one kept.
        verdicts = None if demo.classifier == "llm" else Verdicts.of(self.state, demo, few=few)
        self._verdicts = verdicts
        signups = Signups.of(self.config, self.state)
        signups.catch_up()  # before the judgements that hold are counted (`sync.incremental.Book`)
        return Decider.of(self.config, facts, self.now, verdicts, signups)

    def _draw_owners(self, waiting: _Waiting, facts: SalesforceFacts) -> Owners:
        """Owners for the routed accounts' new leads and the onboarding specialists, drawn in
        account-id order once every account was judged."""
        inactive, unknown = unavailable_users(facts.users, self.config)
        owners = Owners(
            self.config,
            self.state,
            inactive,
            waiting.managed_by_email,
            self.report.run_id,
            iso(self.clock()),
            unknown_users=unknown,
        )
        for routed in sorted(waiting.routed, key=lambda r: r.account_id):
            self._plan_new_lead(routed, facts, owners)
        for onboarding in sorted(waiting.onboarding, key=lambda o: o.account_id):
            self._plan_specialist(onboarding, owners)
        for onboarding in sorted(waiting.unpooled, key=lambda o: o.account_id):
            owners.unpooled(_specialist_key(onboarding.account_id), _SPECIALIST_TEAM, onboarding.region)
        return owners

    def _finish(
        self, owners: Owners, unconfirmed: Callable[[], Iterable[OutboxRow]], *, records: Sequence[str] | None = None
    ) -> None:
        """Queue the rest of the plan, settle the `unconfirmed` writes (read once the plan is
        queued) and remember what the plan found (about these `records` only, when given)."""
        self.report.fallbacks.extend(owners.fallbacks)
        if owners.no_pool:
            self.report.counts["no_pool"] += owners.no_pool
        self.plan.flush()
        self.report.counts["queued"] = self.plan.queued
        if not self.report.dry_run:
            self._settle_unconfirmed(unconfirmed())
        self._remember(records)

    # -- the passes -----------------------------------------------------------------------------

    def _plan_linked_leads(self, facts: SalesforceFacts, decider: Decider, leads: LeadBook) -> None:
        """Show the accounts' rules each linked lead as this cycle's lead writes will leave it (a
        lead whose judgement holds would change nothing: `sync.incremental.LeadBook`). A lead
        deleted in Salesforce (crm-sync's own, kept marked) is never written to (`iter_leads`), so
        this cycle leaves it as it is: it is not judged here either, or it would be at every cycle."""
        counts = self.report.counts
        for lead in facts.linked_leads(skip=leads.holding):
            if lead.is_deleted:
                continue
            counts["linked_leads_judged"] += 1
            decisions = [d for d in decider.lead(lead, full=False) if d.fired and _lead_fields(d)]
            current = (self.state.sf_raw("Lead", lead.id) or {}) if decisions else {}
            changed = self._lead_changes(lead, decisions, current)
            if changed:
                self._linked_changed.add(lead.id)
                facts.plan_lead_fields(lead, changed)

    def _lead_changes(self, lead: Lead, decisions: Sequence[Decision], current: Mapping[str, Any]) -> dict[str, Any]:
        """The fields the accounts' rules read that this cycle's writes will change on `lead`, as
        `_plan_lead` plans them: a field is the first decision's to claim it, and a decision in
        which a person's value is left alone (a conflict, `sync.ownership`) or outside the scope
        changes none of its fields. No conflict is reported here (the leads' own pass does), and
        no owner is drawn: the round robin draws after every account was judged, so the accounts'
        rules see an inbound lead's owner as it is (crm-sync's computed fields are left out too)."""
        ours = self._ours_lead(lead)
        claimed: set[str] = set()
        changed: dict[str, Any] = {}
        for decision in decisions:
            wants, _ = fit_lead_fields(lead.id, dict(_lead_fields(decision)))
            may_write = partial(self._linked_may_write, lead.id, ours, self.scope.has_rule(decision.rule))
            fields, _ = _diff(wants, current, claimed, may_write, COMPUTED_LEAD_FIELDS)
            # crm-sync's computed fields are its alone, and no field the accounts' rules read; but
            # a BDR's yes, which the lifecycle stage reads from the handover's `Routing_Reason__c`.
            shown = HANDOVER_MARK if decision.rule == BDR_HANDOVER and lead.sync_key else frozenset()
            changed.update(
                (name, value) for name, value in fields.items() if name not in COMPUTED_LEAD_FIELDS or name in shown
            )
        return changed

    def _linked_may_write(self, lead_id: str, ours: _Ours, in_scope: bool, name: str, value: Any, current: Any) -> bool:
        """`_may_write` for the accounts' view of a lead: the same verdict, no conflict reported."""
        return in_scope and self._verdict("salesforce", lead_id, name, current, ours(name)) != "conflict"

    def _plan_accounts(self, decider: Decider, book: Book) -> _Waiting:
        """Judge the accounts `book` says may have changed; the others would plan nothing again."""
        waiting = _Waiting()
        mirrored = self.state.account_count()
        policy = self.config.policy
        counts = self.report.counts
        seen = 0
        conflicted = self.conflicts.records("vitally")
        for account in iter_accounts(self.state, self.config, self.report, rows=book.accounts()):
            seen += 1
            if account.id in conflicted:
                self._judged_conflicted.add(account.id)
            if seen % PAGE == 0:
                self.progress("accounts evaluated", seen, mirrored)
            # Capacity counts every managed account, also outside a planning scope; a churned
            # account counts toward nobody's.
            tam_email = account.role_emails.get(policy.lifecycle.tam_role)
            managed = any(s in account.segments for s in policy.guards.owned_segments)
            manager = tam_email if account.churned_at is None and managed else None
            if manager is not None:
                waiting.managed_by_email[manager] += 1
            if not self.scope.has_account(account.id):
                continue
            before = self._planned_so_far(waiting)
            until, since, until_at = self._judge_account(account, decider, waiting)
            if not self.scope.limited:
                quiet = self._planned_so_far(waiting) == before
                book.judged(
                    account, planned_nothing=quiet, manager=manager, until=until, since=since, until_at=until_at
                )
        book.save()
        waiting.managed_by_email.update(book.managers)
        counts["accounts_not_judged"] = book.skipped
        self.progress("accounts evaluated", seen, mirrored)
        return waiting

    def _planned_so_far(self, waiting: _Waiting) -> tuple[int, ...]:
        """What an account's judgement may add to: writes, conflicts, owners awaited."""
        counts = self.report.counts
        # A conflict reported before and found again with the same value of the person's
        # (`conflicts_held`) is no change: it stays open while the judgement holds (`_remember`).
        return (
            len(self.plan),
            counts.get("conflicts", 0),
            counts.get("rule_errors", 0),
            len(waiting.routed),
            len(waiting.onboarding),
        )

    def _judge_account(
        self, account: Account, decider: Decider, waiting: _Waiting
    ) -> tuple[date | None, datetime | None, datetime | None]:
        """Decide one account, plan its own writes, and keep what the owners' pass needs of it
        (its managed-account capacity is counted by the caller: a mini-cycle has it already).
        Returns what `rules.clock` collected of its verdicts: the first day on which the clock alone
        may change them (None: never), and the instants between which those reading a count that
        steps at an instant hold (None: no such bound)."""
        counts = self.report.counts
        counts["accounts_evaluated"] += 1
        if account.churned_at is not None:
            # A churned account leaves every book: no rule fires on it, nothing is written to
            # it (not even a segment crm-sync once managed).
            counts["accounts_churned"] += 1
            return None, None, None
        horizon = self._horizon
        horizon.clear()  # collected afresh for this account (`rules.clock`)
        decisions = decider.account(account, full=False)
        said = horizon.day, horizon.since, horizon.until
        # A custom trigger that could not be evaluated for this account (`review`, not fired)
        # is skipped for it and reported; the cycle goes on.
        for decision in decisions:
            if decision.review and not decision.fired:
                self.report.rule_error(decision)
        self._keep_decisions(d for d in decisions if d.fired or d.guarded_by or d.review)
        self._plan_account(account, decisions, partial(decider.account, account))
        self._wait_for_owners(account, decisions, waiting, decider)
        return said

    def _wait_for_owners(
        self, account: Account, decisions: list[Decision], waiting: _Waiting, decider: Decider
    ) -> None:
        """Keep what the owners' pass needs of a routed account, or of one whose onboarding lead
        has no specialist yet."""
        winner = routing_winner(decisions)
        # An account whose routing episode has its open lead already wants no new one: it does not
        # wait for the owners' pass, so its judgement planned nothing and is not repeated next
        # cycle while its inputs and facts stay the same (`sync.incremental`).
        if (
            winner is not None
            and self.scope.has_rule(winner.rule)
            and not _episode_lead_open(decider.facts, account.id)
        ):
            waiting.routed.append(RoutedAccount.of(account, winner, decider.region(account)))
        specialist = next((d for d in decisions if d.fired and d.rule == _SPECIALIST_RULE), None)
        specialist_role = self.config.policy.lifecycle.specialist_role
        has_one = specialist_role in account.roles or account.written.get(self._specialist_trait)
        if specialist is None or not self.scope.has_rule(specialist.rule):
            return
        if not has_one:
            if not self._specialist_cleared(account, specialist.rule):
                onboarding = OnboardingAccount.of(account, specialist, decider.region(account))
                # No pool for its region and no specialist drawn before: the owners' pass would
                # report it and draw nobody at every cycle, until the pools change (which re-judges
                # every account, `rules_fingerprint`) or the account does. Reported, not waiting: its
                # judgement holds, and a daemon says it once, not at every cycle.
                unpooled = self.config.pool_for(_SPECIALIST_TEAM, onboarding.region) is None
                if unpooled and self.state.assignment(_specialist_key(account.id)) is None:
                    waiting.unpooled.append(onboarding)
                else:
                    waiting.onboarding.append(onboarding)
        else:
            self._confirm_specialist_task(account)

    def _specialist_cleared(self, account: Account, rule: str) -> bool:
        """Whether a person emptied the specialist trait crm-sync filled: a conflict (reported by
        `_may_write`), so the account does not wait for a specialist to be named again, unless
        `[sync] on_conflict = "overwrite"`. An empty trait crm-sync never filled (or emptied
        itself) is nobody's decision: the owners' pass fills it."""
        trait = self._specialist_trait
        named = [value for value in self._ours_vitally(account)(trait) if value not in (None, "")]
        if not named:
            return False
        return not self._may_write("vitally", account.id, trait, named[0], account.written.get(trait), named, rule)

    def _confirm_specialist_task(self, account: Account) -> None:
        """Keep the specialist's task that is still owed: its trait went out, the task did not.

        The owners' pass plans the specialist trait and its task together, for an account whose
        trait is empty; once the trait is written the account waits for no specialist and the task
        is never planned again. A task whose send failed (every attempt: a 503, a reset, a timeout)
        while the trait's PUT went through would then be dropped as "not planned again" and never
        sent: a lost write, and a final state that depends on which request a fault hit. So while
        the account's trait still names the specialist crm-sync wrote there and the task is not
        known to be sent, its pending write is planned again as it was queued (same due date,
        same specialist), which keeps it pending. A trait a person set or changed owes no task."""
        key = writes.specialist_task_key(account.id)
        if (key, "task") in self._last_vitally:
            return  # sent already
        trait = self._specialist_trait
        if account.written.get(trait) not in self._ours_vitally(account)(trait):
            return  # the specialist is a person's choice: crm-sync owes no task for it
        for rows in self.state.pending_records("vitally", records=[key], op="create_task"):
            self._queue(rows[-1].write)

    def _plan_leads(self, facts: SalesforceFacts, decider: Decider, owners: Owners, leads: LeadBook) -> None:
        """Judge and plan every lead but those whose judgement holds (neither parsed nor judged)."""
        counts = self.report.counts
        horizon = self._horizon
        for lead, fields in facts.iter_leads(skip=leads.holding):
            if not self.scope.has_account(lead.vitally_account_id, lead.id):
                continue
            counts["leads_evaluated"] += 1
            horizon.clear()  # collected afresh for this lead (`rules.clock`)
            decisions = decider.lead(lead, full=False)
            until = horizon.day
            self._keep_decisions(d for d in decisions if d.fired)
            before = self._planned_for_lead()
            drew = self._plan_lead(lead, fields, decisions, owners)
            quiet = not drew and lead.id not in self._linked_changed and self._planned_for_lead() == before
            leads.judged(lead, planned_nothing=quiet, until=until)
        leads.save()
        if self._verdicts is not None:
            self._verdicts.save()
        counts["leads_not_judged"] = len(leads.holding)

    def _planned_for_lead(self) -> tuple[int, ...]:
        """What a lead's judgement may add to: writes, new conflicts (one held is none, as for an
        account: `_planned_so_far`), truncations."""
        counts = self.report.counts
        return (len(self.plan), counts.get("conflicts", 0), len(self.report.truncations))

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
            task = self._task(decision)
            if task is not None:
                self._plan_task(account.id, task, decision.rule, decision.reason)
            ours = self._ours_vitally(account)
            wants = {}
            for name, value in decision.traits.items():
                key = written_traits.get(name, name)
                current = account.written.get(key)
                if (
                    name in REASON_TRAITS
                    and reason_gist(name, current) == reason_gist(name, value)
                    and current in ours(key)
                ):
                    value = current  # the same rule's reason, a day on (`rules.base.reason_gist`): as written
                wants[key] = value
            fields, previous = self._changes(
                "vitally", account.id, wants, account.written, claimed, ours, decision.rule
            )
            if fields:
                self._queue(writes.set_traits(account.id, fields, previous, decision.rule, decision.reason))
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
            if (held is True) == join or (not join and segment in self._kept_segments):
                continue
            # The rule responsible for a segment that no longer holds says why, in full.
            decision = wanted[segment] if join else next(d for d in explained() if segment in d.manages)
            member = True if join else None
            ours = self._ours_vitally(account)(trait)
            if self._may_write("vitally", account.id, trait, member, held, ours, decision.rule):
                was_in = segment in account.segments
                self._queue(
                    writes.segment_change(
                        account.id, segment, trait, join=join, was_in=was_in, held=held, decision=decision
                    )
                )

    def _task(self, decision: Decision) -> Mapping[str, Any] | None:
        """The Vitally task `decision` wants, if any. A task due once per spell (`TaskIntent.spell`:
        a lead nurtured again) keeps its key in its first spell, and in a later one takes the key
        `<key>:<day the spell began>` when a task was sent under its key before that day. Only a
        spell that began after spells were dated counts (the state's mark `nurture_spells_since`,
        the first planning cycle): a state resynced, or a lead out of sight and back, before the
        status dates survived either had its leads dated anew, after the task already sent for
        the same "not yet" (found by an adversarial review)."""
        intent = decision.task
        if intent is None:
            return None
        if intent.spell is not None:
            first = f"{TASK_KEY_PREFIX}{intent.key}"
            sent = self._last_vitally.written_at(first, "task")
            day = intent.spell.isoformat()
            if sent is not None and sent[:10] < day and self._spells_since() < day:
                intent = replace(intent, key=f"{intent.key}:{day}")
        return vitally_task(intent)

    def _spells_since(self) -> str:
        """The day nurture spells began to be dated in this state (`StateDB.mark`, by the wall clock
        of its first planning cycle, not the rules' `--now`); a spell counts from the day after it,
        as a lead an earlier release re-dated may carry that very day (found by an adversarial
        review: the old release's resync and the upgrade on the day a tool touched the lead)."""
        if self._spells_day is None:
            self._spells_day = self.state.mark("nurture_spells_since", iso(self.clock()))[:10]
        return self._spells_day

    def _plan_task(self, account_id: str, task: Mapping[str, Any], rule: str, reason: str) -> None:
        """A task is created once: its externalId names the account and period, and once it was
        sent we remember it and never plan it again."""
        key = str(task.get("externalId") or "")
        if key and (key, "task") not in self._last_vitally:
            self._queue(writes.create_task(account_id, task, rule, reason))

    def _plan_new_lead(self, routed: RoutedAccount, facts: SalesforceFacts, owners: Owners) -> None:
        """A routed account becomes a Salesforce lead, upserted on a key per account and routing
        episode (a retry can never create a second lead), owned by the round robin."""
        if _episode_lead_open(facts, routed.account_id):
            return  # this episode's lead exists and is being worked
        key = sync_key(routed.account_id, len(_our_leads(facts, routed.account_id)) + 1)
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
        country_field = "CountryCode" if self.config.salesforce.state_country_picklists else "Country"
        write, cut = writes.new_lead(routed, key, score, owner, country_field=country_field)
        self._queue(write)
        self._truncated(cut)

    def _plan_specialist(self, onboarding: OnboardingAccount, owners: Owners) -> None:
        """An onboarding lead gets an onboarding specialist on the Vitally side: a trait naming
        them, and a task (created once: its externalId names the account)."""
        key = _specialist_key(onboarding.account_id)
        owner = owners.owner_for(key, _SPECIALIST_TEAM, onboarding.region, salesforce_owner=False)
        if owner is None or owner.user_id is None or owner.user_id.startswith("00G"):
            return  # a queue is no specialist: the fallback is reported, the trait stays empty
        trait = self._specialist_trait
        rule = onboarding.rule
        # The owners' pass keeps only accounts whose specialist trait is empty: nobody's decision.
        if not self._may_write("vitally", onboarding.account_id, trait, owner.name, None, [], rule):
            return
        self._queue(writes.specialist(onboarding, trait, owner))
        task = writes.specialist_task(onboarding, owner, self.now)
        self._plan_task(onboarding.account_id, task, rule, onboarding.reason)

    def _plan_lead(self, lead: Lead, current: Mapping[str, Any], decisions: list[Decision], owners: Owners) -> bool:
        """Plan the lead's field writes; whether the round robin drew an owner for it in this run
        (a judgement that drew cannot hold: the draw is new). An owner drawn by an earlier run is
        what the round robin gives the lead until the lead changes (or the owner leaves
        Salesforce, and then its write cannot be pending: it is the person's owner that stands,
        as a held conflict), so asking for it again keeps nothing from holding."""
        claimed: set[str] = set()
        drew = False
        ours = self._ours_lead(lead)
        for decision in decisions:
            wants = dict(_lead_fields(decision)) if decision.fired else {}
            if not wants:
                continue
            owner = self._inbound_owner(lead, decision, owners)
            drew = drew or (owner is not None and owner.run_id == self.report.run_id)
            if owner is not None and owner.user_id is not None:
                wants["OwnerId"] = owner.user_id
            # Cut to the fields' lengths before the diff, or a long value would differ every cycle.
            wants, cut = fit_lead_fields(lead.id, wants)
            fields, previous = self._changes(
                "salesforce", lead.id, wants, current, claimed, ours, decision.rule, COMPUTED_LEAD_FIELDS
            )
            if not fields:
                continue
            self._truncated(c for c in cut if c.field in fields)
            # The plan shows the owner only when this write sets it.
            shown = owner.owner if owner is not None and owner.user_id is not None and "OwnerId" in fields else None
            self._queue(writes.lead_update(lead.id, lead.vitally_account_id, fields, previous, decision, shown))
        return drew

    def _inbound_owner(self, lead: Lead, decision: Decision, owners: Owners) -> OwnerChoice | None:
        """The round robin's owner for an unowned inbound lead this decision routes, or for a lead
        crm-sync created for the BDRs that its BDR qualified (`_handed_over`)."""
        if decision.lead is None or not decision.team or not self.scope.has_rule(decision.rule):
            return None
        if decision.lead.routing_rule is None:
            return self._handed_over(lead, decision, owners)
        # Inbound leads wait unowned, in a queue or with an unrouted owner (the org's default lead
        # owner) until the round robin gives them an owner.
        if self.config.policy.routing.waiting_for_routing(lead.owner_id) is None:
            return None
        return owners.owner_for(lead.id, decision.team, self._inbound_region(lead))

    def _handed_over(self, lead: Lead, decision: Decision, owners: Owners) -> OwnerChoice | None:
        """A BDR's yes (`rules.new_business.bdr_handover`): the TAE the round robin draws for the
        lead, while the handover is due (`_handover_due`)."""
        team = decision.team
        if team is None or not self._handover_due(lead, decision):
            return None
        return owners.owner_for(lead.id, team, self._inbound_region(lead))

    def _handover_due(self, lead: Lead, decision: Decision) -> bool:
        """`handover_due` for this decision, with what crm-sync last wrote to Salesforce."""
        if decision.rule != BDR_HANDOVER:
            return False
        return handover_due(lead, self._last_salesforce, self.config.policy.routing)

    def _inbound_region(self, lead: Lead) -> str:
        """The region of an inbound lead's pool: its country's; when it names none (unset, or text
        that is no country), that of the Vitally account it is linked to (`Vitally_Account_Id__c`:
        where most of its users are, else its HQ country, as for the account's own leads); else
        `[territories] default_region`."""
        policy = self.config.policy
        territories = policy.territories
        if lead.country and normalise_country(lead.country) is not None:
            return territories.region_of(lead.country)
        if lead.vitally_account_id:
            for account in iter_accounts(self.state, self.config, ids=[lead.vitally_account_id]):
                region, _ = owner_region(account, policy)
                if region is not None:
                    return region
        return territories.default_region

    # -- diff -----------------------------------------------------------------------------------

    def _ours_vitally(self, account: Account) -> _Ours:
        """What crm-sync knows it wrote to the account's traits: the state's record and the
        account's own `crm_sync_written` trait (what survives a lost state file, and tells a
        state restored from an older backup by when it was written)."""
        mark = account.written.get(WRITTEN_TRAIT)
        last = self._last_vitally
        return partial(
            ours_in,
            last,
            account.id,
            trait=read_written_trait(mark),
            trait_at=written_trait_at(mark),
            state_at=last.written_at,
            adopt=partial(self._adopt, account.id),
        )

    def _ours_lead(self, lead: Lead) -> _Ours:
        """What crm-sync knows it wrote to the lead's fields: under its Id, else, for a lead crm-sync
        created, under its `Sync_Key__c` (the values it was created with: its owner, its routing)."""
        last = self._last_salesforce
        if not lead.sync_key:
            return partial(ours_in, last, lead.id)
        key = lead.sync_key

        def ours(name: str) -> list[Any]:
            return ours_in(last, lead.id, name) or ours_in(last, key, name)

        return ours

    def _adopt(self, record: str, field: str, value: Any, at: str) -> None:
        """The account's trait says crm-sync wrote `value` to `field` at `at`, after what the state
        records (a state restored from an older backup): the state learns it, so later PUTs carry
        it in the trait and later plans know it."""
        self.state.set_last_written("vitally", record, {field: value}, self.report.run_id, at)
        self._last_vitally.forget(record)

    def _changes(
        self,
        system: str,
        record: str,
        wants: Mapping[str, Any],
        current: Mapping[str, Any],
        claimed: set[str],
        ours: _Ours,
        rule: str,
        computed: frozenset[str] = frozenset(),
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The fields of `wants` that must change (with their current values): not claimed by an
        earlier rule in the configured order, different from what is there now, and crm-sync's to
        replace (`sync.ownership`). `computed` fields are crm-sync's alone and never a conflict.

        A decision is one change: when a person's value in any of its fields is a conflict left
        alone, none of its fields is written (the triage's spam verdict is the classification and
        the closed status together: a person's "sales" keeps the lead open too), as the last look
        drops a whole write a person overtook (`sync.freshness`)."""

        def may_write(name: str, value: Any, now_value: Any) -> bool:
            return self._may_write(system, record, name, value, now_value, ours(name), rule)

        return _diff(wants, current, claimed, may_write, computed)

    def _may_write(
        self, system: str, record: str, key: str, value: Any, current: Any, ours: list[Any], rule: str
    ) -> bool:
        """Whether `current` is crm-sync's to replace with `value` (`sync.ownership.Ownership`); a
        person's value is a conflict, reported once, and replaced only when the config says so."""
        if not self.scope.has_rule(rule):
            return False  # out of scope: not written, and no conflict reported
        verdict = self._verdict(system, record, key, current, ours)
        if verdict == "adopt":
            self.report.counts["adopted"] += 1
        if verdict in ("write", "adopt"):
            return True
        overwrite = verdict == "overwrite"
        self.conflicts.found(Conflict(system, record, key, value, current, rule, overwritten=overwrite))
        return overwrite

    def _verdict(self, system: str, record: str, key: str, current: Any, ours: list[Any]) -> Verdict:
        """`Ownership.judge`, knowing crm-sync's sends whose answers were lost."""
        verdict = self.ownership.judge(key, current, ours)
        if verdict in ("conflict", "overwrite") and current in self.state.values_sent(system, record, key):
            # crm-sync's own value from a send whose answer was lost: not a person's (a lost answer
            # is settled after the plan, `_settle_unconfirmed`; until then the state lacks it).
            verdict = "write"
        return verdict

    def _queue(self, write: PlannedWrite) -> None:
        """Plan `write`, if it is in the scope of the command."""
        if self.scope.wants(write):
            self.plan.append(write)

    def _truncated(self, cut: Iterable[Truncation]) -> None:
        self.report.truncations.extend(cut)

    # -- settling earlier cycles' writes --------------------------------------------------------

    def _settle_unconfirmed(self, rows: Iterable[OutboxRow]) -> None:
        """Writes queued by earlier cycles that this plan did not want again (`rows`) are never
        sent as they are: done when their values are already there (the send took effect, its
        answer was lost), else dropped; a person's change that one would have undone is a conflict."""
        at = iso(self.clock())
        for row in rows:
            if row.write.system not in ("vitally", "salesforce"):
                continue  # an announcement or a ticket is queued once, never planned again: it stays
            current = self._target_now(row.write)
            if current is None:
                self._drop(row, "not planned again: the rules no longer want it", at)
                continue
            if row.write.system == "vitally" and self._rewritten_since(row, current):
                self._drop(row, "crm-sync wrote its fields again since it was queued (its trait says so)", at)
                continue
            applied, changed = changed_fields(row.write.payload, row.write.expects, current, COMPUTED_LEAD_FIELDS)
            for name, theirs in changed.items():
                self.conflicts.found(
                    Conflict(row.write.system, row.write.record, name, row.write.payload[name], theirs, row.write.rule)
                )
            if changed:
                # Found here, not by judging the record: its judgement (kept if it planned nothing
                # else) must not hold, or the conflict would stay open while it does (`_held`),
                # although judging it again would not find it.
                self._forget_judgement(row, current)
            if applied or row.write.op == "upsert_lead":
                # The lead exists under our key: our upsert was applied, whatever a person did since.
                self.state.mark_done([row.id], at)
                self.state.set_last_written(
                    row.write.system, row.write.record, row.write.payload, self.report.run_id, at
                )
                self.report.counts["applied_earlier"] += 1
                lead_id = current.get("Id") if row.write.system == "salesforce" else None
                if self.followups is not None and isinstance(lead_id, str):
                    self.followups.lead_written(row.write, lead_id, self.report.run_id, at)
            elif changed:
                self._drop(row, f"a person changed {', '.join(sorted(changed))} since it was planned", at)
            else:
                self._drop(row, "not planned again: the rules no longer want it", at)

    def _forget_judgement(self, row: OutboxRow, current: Mapping[str, Any]) -> None:
        """The stored judgement of the record `row` writes: its account's, or its lead's."""
        write = row.write
        if write.system == "vitally":
            self.state.forget_account_inputs([write.account or write.record])
        else:
            lead_id = current.get("Id")
            self.state.forget_lead_inputs({write.record, *([lead_id] if isinstance(lead_id, str) else [])})

    def _rewritten_since(self, row: OutboxRow, traits: Mapping[str, Any]) -> bool:
        """Whether the account's `crm_sync_written` trait says crm-sync wrote another value of one
        of the row's fields after the row last changed: a row a restored state still holds,
        overtaken by writes the state no longer knows of. Whatever the account holds now is not
        this row's doing, and must not be recorded as crm-sync's (a person may have set that very
        value since)."""
        mark = traits.get(WRITTEN_TRAIT)
        times = written_trait_at(mark)
        if not times:
            return False
        since = self.state.outbox_times([row.id]).get(row.id, "")
        values = read_written_trait(mark)
        return any(
            times.get(name, "") > since and values.get(name, value) != value
            for name, value in row.write.payload.items()
        )

    def _target_now(self, write: PlannedWrite) -> Mapping[str, Any] | None:
        """What the write's target holds now, as this cycle read it (None: not in the mirror)."""
        if write.op == "create_task":
            return None
        if write.system == "vitally":
            raw = self.state.account_raw(write.record)
            traits = None if raw is None else raw.get("traits")
            return traits if isinstance(traits, dict) else None
        if write.op == "upsert_lead":
            return self.state.lead_by_sync_key(write.record)
        return self.state.sf_raw("Lead", write.record)

    def _drop(self, row: OutboxRow, reason: str, at: str) -> None:
        self.state.supersede([row.id], reason, at)
        self.report.counts["dropped"] += 1

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

    def _remember(self, records: Sequence[str] | None) -> None:
        """Keep the decisions, record errors and conflicts of the plan; a mini-cycle's (`records`)
        closes no conflict it did not look at, and forgets only its own records' fixed errors."""
        report = self.report
        report.counts["planned"] = len(report.plan)
        report.counts["record_errors"] = len(report.record_errors)
        self._flush_decisions()
        found = [
            {"system": e.system, "record": e.record_id, "field": e.field, "message": e.message}
            for e in report.record_errors
        ]
        self.state.record_errors(report.run_id, found)
        self.state.remember_malformed(report.run_id, iso(self.clock()), found)
        self.state.forget_fixed(records)
        whole = records is None
        self.conflicts.save(close_unseen=whole, held=self._held() if whole else None)

    def _held(self) -> Callable[[str, str], bool]:
        """Whether a record's judgement held in this plan (it was not judged, `sync.incremental`):
        a lead the `LeadBook` held, or an account with a standing conflict that was not judged and
        whose judgement the state keeps under these rules (one not judged and not kept so left the
        mirror, is malformed now, or could not be read under a changed config: its conflicts
        close). A conflict found while settling earlier writes forgot its record's judgement
        (`_forget_judgement`)."""
        leads = self._leads_holding
        unjudged = self.conflicts.records("vitally") - self._judged_conflicted
        accounts = self.state.judged_accounts(unjudged, self._rules) if unjudged else set()

        def held(system: str, record: str) -> bool:
            return record in (leads if system == "salesforce" else accounts if system == "vitally" else ())

        return held
