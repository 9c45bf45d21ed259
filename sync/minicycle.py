"""An event's mini-cycle: the records webhooks named (`sync.receiver`, stored in the state's
event inbox) read fresh, decided, planned and applied as a cycle (`sync.cycle`) would, through
the same outbox and its guarantees.

For a batch of queued events (`StateDB.pending_events`):

1. **Read fresh**, outside any transaction: each Vitally account by id (`GET
   /resources/accounts/:id`; a deleted or churned account is left alone, as a cycle's read leaves
   it), the Salesforce leads linked to those accounts (one SOQL query per 200 accounts:
   `Vitally_Account_Id__c IN (...)`, the join the rules read), and each Lead named by an Outbound
   Message (`Id IN (...)`, one query per 200), with the fields a cycle reads (`sf_objects`:
   `CountryCode` too on an org with State and Country/Territory picklists). Each Opportunity
   named by an Outbound Message (a Flow on Opportunity: one opened, moved to another Account, or
   closed) is read by id, and so is each opportunity a lead read was converted into that the
   mirror does not hold (`ConvertedOpportunityId`: a person converted it since the last cycle read
   Opportunities): one query per 200 for both, none without either, so the rules see them as a
   cycle would. The other opportunities, Salesforce Accounts and users are the mirror's, as the
   last cycle read them.
2. **Mirror and plan**, in one transaction: the records go into the mirror as `sync.ingest`
   stores a page (no cursor moves: the next cycle still reads everything changed since its own
   last read); `sync.plan.Planner.run_for` decides and plans these records exactly as a whole
   plan would: the Vitally accounts named, the leads named, the accounts an opportunity named
   belongs to (`SalesforceFacts.accounts_of_opportunities`, before and after it is mirrored: one
   moved to another Account changes both) and the accounts a lead named is linked to
   (`SalesforceFacts.accounts_of_leads`, `Vitally_Account_Id__c`, before and after it is mirrored:
   a lead closed or handed over moves its account's stage in this mini-cycle, not at the next
   cycle), all of these accounts planned from the mirror, their Vitally records not read again;
   owners drawn by `sync.owners` and recorded with the writes that carry them (the pool members'
   capacity counts are the last whole plan's); only these records' earlier pending writes are
   settled.
   With the `llm` classifier, each open demo request read whose submission has no verdict is
   asked about first (`sync.triage.ask_llm`, outside the transaction, once per submission): the
   lead is classified and routed in this mini-cycle, not a cycle later.
3. **Apply** these records' pending writes (`sync.apply.Applier` restricted to them), with the
   same last look before each write (`sync.freshness`; each Vitally account is read again by id),
   then the follow-ups, as a cycle sends them: a lead written is announced in Slack, a support
   request gets its Zendesk ticket (`sync.followups`), once.
4. **Finish the events**, marked done with the run, only now: a crash (kill -9) anywhere before
   leaves them pending, and the daemon processes pending events as it starts, before its first
   cycle, so the writes of an interrupted mini-cycle are sent within seconds of the restart.
   Processing them again is harmless: the record is read fresh, and what the first attempt
   planned is found again by its key (an owner drawn is recorded with the write that carries it
   and never drawn twice; a lead is upserted by its sync key). A write that fails stays pending
   in the outbox, as in a cycle, and its event is done: the outbox, not the event, carries it.

The daemon runs mini-cycles in its main thread, between cycles, never during one: one writer to
the state at a time, so a round-robin draw is serialised against the cycle's. Each mini-cycle
is a run of its own (mode `event`) in the run history. A batch whose read fails stays pending
(its attempts counted) and is retried; after `[events] max_attempts` it is given up (`failed`):
the scheduled cycle still routes those records.

Requests per event, beyond the writes themselves: a Vitally account costs its read, its linked
leads' query (shared by up to 200 accounts) and the last look before its PUT; a Lead costs its
share of one read and one last look per 200, and the last look before its account's PUT when the
account's traits change; an Opportunity, its share of one opportunity query
per 200 and the last look before each of its accounts' PUTs; a conversion not yet mirrored, its
share of that same opportunity query.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connectors.base import SalesforcePort, VitallyPort
from core.decoding import Unreadable
from core.errors import ContractError, RecordError, StopRequested
from core.model import Lead
from core.records import parse_lead
from rules.context import closed_statuses
from state import PlanLog, StateDB
from state.events import QueuedEvents
from sync.accounts import iter_accounts
from sync.app import make_outlets
from sync.apply import Applier
from sync.config import Config
from sync.facts import SalesforceFacts
from sync.followups import FollowUps, Outlets
from sync.freshness import LastLook
from sync.ingest import mirror_accounts, mirror_sf, sf_objects
from sync.outbound import EVENT_OBJECTS
from sync.plan import Planner
from sync.triage import ask_llm
from sync.vocabulary import CycleReport, Hooks, Log, iso

__all__ = ["EventSalesforce", "EventVitally", "run_mini_cycle"]

_DEFAULTS = Hooks()
_SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


class EventVitally(VitallyPort, Protocol):
    """What a mini-cycle needs of Vitally beyond a cycle's port: one account by id."""

    def get_account(self, id_or_external_id: str) -> dict[str, Any] | None: ...


class EventSalesforce(SalesforcePort, Protocol):
    """What a mini-cycle needs of Salesforce beyond a cycle's port: records by a field's values."""

    def read_where(
        self, sobject: str, fields: Iterable[str], field: str, values: Sequence[str]
    ) -> Iterator[dict[str, Any] | Unreadable]: ...


@dataclass
class _Fresh:
    """What the read found: the accounts and leads to mirror, and why some accounts are left."""

    accounts: list[dict[str, Any] | Unreadable] = field(default_factory=list)
    leads: list[dict[str, Any] | Unreadable] = field(default_factory=list)
    opportunities: list[dict[str, Any] | Unreadable] = field(default_factory=list)
    sf_accounts: list[dict[str, Any] | Unreadable] = field(default_factory=list)
    left: dict[str, str] = field(default_factory=dict)  # account id → why it is not planned


def run_mini_cycle(
    config: Config,
    state: StateDB,
    vitally: EventVitally,
    salesforce: EventSalesforce | None,
    queued: Sequence[QueuedEvents],
    *,
    clock: Callable[[], datetime],
    log: Log = _DEFAULTS.log,
    should_stop: Callable[[], bool] = _DEFAULTS.should_stop,
    outlets: Outlets | None = None,
) -> CycleReport:
    """Process these queued events (see the module docstring); returns the run's report.

    `outlets` are Slack, Zendesk and the LLM (`sync.followups.Outlets`; by default as the config
    sets them up, as `sync.cycle.run_cycle` does): a lead this mini-cycle writes is announced and,
    for a support request, ticketed exactly as a cycle's, its follow-ups sent after the CRM writes;
    the LLM is asked about the demo requests read before they are planned.

    Logs `event_cycle_started` and `event_cycle_finished` (with the run id, the records, and
    how long the oldest event waited). A failure to read leaves the events pending, their attempt
    counted (or `failed` after `[events] max_attempts`), and is raised; writes that fail stay
    pending in the outbox, as in a cycle. Asked to stop before the plan, nothing is planned and
    the events stay pending."""
    hooks = Hooks(log=log, should_stop=should_stop)
    if outlets is None:
        outlets = make_outlets(config)
    started = clock()
    with state.atomic():
        run_id = state.begin_run(iso(started), "event", iso(started))
    report = CycleReport(run_id=run_id, dry_run=False, now=started)
    records = sorted({q.record for q in queued})
    hooks.log("event_cycle_started", {"run_id": run_id, "records": len(records)})
    status, error = "failed", None
    try:
        fresh = _read(vitally, salesforce, queued, report, sf_objects(config.salesforce), state)
        if outlets.llm is not None and fresh.leads and not hooks.should_stop():
            # A demo request's verdict, asked before it is planned: routed in this mini-cycle.
            ask_llm(config, state, outlets.llm, report, clock=clock, hooks=hooks, leads=_readable(fresh.leads))
        if hooks.should_stop():
            raise StopRequested("asked to stop before planning")
        followups = FollowUps(state, config.announcements, config.zendesk, config.salesforce.instance_url)
        theirs = _plan(config, state, report, fresh, queued, clock=clock, hooks=hooks, followups=followups)
        closed = closed_statuses(config.policy)
        stale = set(theirs) - {q.record for q in queued if q.source == "vitally"}  # planned from the mirror
        look = LastLook(
            state,
            vitally,
            salesforce,
            report,
            clock,
            read_account=vitally.get_account,
            closed=closed,
            from_mirror=stale,
        )
        targets = state.pending_targets(sorted({*(r for r in records if r not in fresh.left), *theirs}))
        applier = Applier(
            state,
            vitally,
            salesforce,
            report,
            write_workers=config.vitally.write_workers,
            clock=clock,
            hooks=hooks,
            records=targets,
            look=look,
            followups=followups,
            outlets=outlets,
            outlet_settings=config.announcements,
            max_wait=config.max_waits,
        )
        applier.run()
        _finish(state, queued, fresh, report.run_id, iso(clock()))
        status = "ok" if report.exit_code == 0 else "partial"
    except StopRequested:
        status = "stopped"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        _failed(state, config, queued, error, iso(clock()))
        raise
    finally:
        finished = clock()
        with state.atomic():
            state.finish_run(run_id, iso(finished), status, dict(report.counts), error)
        hooks.log("event_cycle_finished", _finished(run_id, status, records, queued, finished, report))
    return report


def _read(
    vitally: EventVitally,
    salesforce: EventSalesforce | None,
    queued: Sequence[QueuedEvents],
    report: CycleReport,
    fields: Mapping[str, tuple[str, ...]],
    state: StateDB,
) -> _Fresh:
    """The records fresh from the services (no transaction is open: the receiver may store events).
    Records are read with the fields a cycle reads (`fields`, `sf_objects`: a Lead with
    Country/Territory picklists has `CountryCode` too), so the mirror holds the same row a cycle's
    read would."""
    fresh = _Fresh()
    for account_id in sorted({q.record for q in queued if q.source == "vitally"}):
        try:
            raw = vitally.get_account(account_id)
        except ContractError as bad:  # this account's answer, not the service, is broken
            report.record_errors.append(RecordError("vitally", account_id, "(body)", str(bad)[:200]))
            fresh.left[account_id] = "unreadable"
            continue
        report.counts["accounts_read"] += 1
        if raw is None:
            fresh.left[account_id] = "not found"
        elif raw.get("churnedAt") is not None:
            # Not planned: no rule decides on a churned account. Not mirrored either: the next
            # cycle's read does that, and a lead's event that plans the account from the mirror
            # meanwhile finds the churn in the last look, which reads the account before its PUT
            # (mirrored here, an account reactivated with no event would wait for that cycle).
            fresh.left[account_id] = "churned"
        else:
            fresh.accounts.append(raw)
    if salesforce is None:
        return fresh
    accounts = sorted({str(raw.get("id")) for raw in fresh.accounts if isinstance(raw, dict)})
    # Under the org's own field names (`[salesforce.fields]`), as a cycle's read: one query per 200.
    fresh.leads.extend(salesforce.read_where("Lead", fields["Lead"], "Vitally_Account_Id__c", accounts))
    leads, opportunities = _named(queued)
    if leads:
        fresh.leads.extend(salesforce.read_by_ids("Lead", fields["Lead"], leads))
    report.counts["sf_lead_read"] += len(fresh.leads)
    wanted = sorted({*opportunities, *_unseen_conversions(fresh.leads, state)})
    if wanted:
        fresh.opportunities.extend(salesforce.read_by_ids("Opportunity", fields["Opportunity"], wanted))
        report.counts["sf_opportunity_read"] += len(fresh.opportunities)
    unseen = _unseen_accounts(fresh.opportunities, state)
    if unseen:
        fresh.sf_accounts.extend(salesforce.read_by_ids("Account", fields["Account"], unseen))
        report.counts["sf_account_read"] += len(fresh.sf_accounts)
    return fresh


def _unseen_accounts(opportunities: Sequence[dict[str, Any] | Unreadable], state: StateDB) -> list[str]:
    """The Salesforce Accounts the opportunities read hang from (`AccountId`) that the mirror does
    not hold: a rep created the Account with its opportunity since the last cycle read Accounts.
    The Account names the Vitally account the opportunity belongs to (`Vitally_Account_Id__c`),
    so it is read by id rather than leave the opportunity to nobody until the next cycle."""
    named = {raw.get("AccountId") for raw in opportunities if isinstance(raw, dict)}
    wanted = {i for i in named if isinstance(i, str) and _SALESFORCE_ID.fullmatch(i)}
    if not wanted:
        return []
    return sorted(wanted - state.sf_digests("Account", sorted(wanted)).keys())


def _named(queued: Sequence[QueuedEvents]) -> tuple[list[str], list[str]]:
    """The Leads and the Opportunities the Outbound Messages named, told apart by their Ids' key
    prefix (`sync.outbound.EVENT_OBJECTS`, checked when the message was received)."""
    named = sorted({q.record for q in queued if q.source == "salesforce"})
    opportunity = EVENT_OBJECTS["Opportunity"]
    return [i for i in named if not i.startswith(opportunity)], [i for i in named if i.startswith(opportunity)]


def _unseen_conversions(leads: Sequence[dict[str, Any] | Unreadable], state: StateDB) -> list[str]:
    """The opportunities the leads read were converted into (`ConvertedOpportunityId`) that the
    mirror does not hold: a person converted a lead since the last cycle read Opportunities. The
    rules join a converted lead's opportunity to its account (an open one makes the account's
    stage "Technical account executive" and holds routing), so the mini-cycle reads them by id
    rather than decide as if the conversion had made none; the other opportunities are the
    mirror's, as the last cycle read them. A value that is not a Salesforce Id (15 or 18 letters
    and digits) names nothing Salesforce holds: not asked for."""
    named = (lead.converted_opportunity_id for lead in _readable(leads))  # a malformed lead is reported when planned
    converted = {opportunity for opportunity in named if opportunity and _SALESFORCE_ID.fullmatch(opportunity)}
    if not converted:
        return []
    held = state.sf_digests("Opportunity", sorted(converted))
    return sorted(converted - held.keys())


def _readable(records: Sequence[dict[str, Any] | Unreadable]) -> Iterator[Lead]:
    """The well-formed leads among those read (a malformed one is reported when it is planned)."""
    for raw in records:
        if isinstance(raw, Unreadable):
            continue
        try:
            yield parse_lead(raw)
        except RecordError:
            continue


def _plan(
    config: Config,
    state: StateDB,
    report: CycleReport,
    fresh: _Fresh,
    queued: Sequence[QueuedEvents],
    *,
    clock: Callable[[], datetime],
    hooks: Hooks,
    followups: FollowUps,
) -> list[str]:
    """Mirror what was read and plan these records, in one transaction; the accounts planned
    because an opportunity or a lead named belongs to them."""
    lead_ids, opportunity_ids = _named(queued)
    with state.atomic():
        plan = PlanLog(state, report.run_id, iso(report.now))
        report.plan = plan
        mirror_accounts(state, fresh.accounts, report=report, hooks=hooks)
        # The accounts a lead or an opportunity named belongs to, as the mirror held them (a lead
        # linked to another account, or an opportunity moved to another, changes both)...
        theirs = SalesforceFacts.accounts_of_leads(state, lead_ids)
        mirror_sf(state, "Lead", fresh.leads, report=report, hooks=hooks)
        theirs |= SalesforceFacts.accounts_of_opportunities(state, opportunity_ids)
        if fresh.sf_accounts:
            mirror_sf(state, "Account", fresh.sf_accounts, report=report, hooks=hooks)
        if fresh.opportunities:
            mirror_sf(state, "Opportunity", fresh.opportunities, report=report, hooks=hooks)
        # ... and as it holds them now.
        theirs |= SalesforceFacts.accounts_of_opportunities(state, opportunity_ids)
        theirs |= SalesforceFacts.accounts_of_leads(state, lead_ids)
        account_ids = sorted(({q.record for q in queued if q.source == "vitally"} | theirs) - set(fresh.left))
        accounts = list(iter_accounts(state, config, report, ids=account_ids))
        facts = SalesforceFacts.load_for(state, account_ids, lead_ids, policy=config.policy)
        planner = Planner(config, state, report, plan, now=report.now, clock=clock, progress=hooks.progress)
        planner.followups = followups  # a write found already applied still queues its follow-ups
        planner.run_for(facts, accounts)
    return sorted(theirs)


def _finish(state: StateDB, queued: Sequence[QueuedEvents], fresh: _Fresh, run_id: int, at: str) -> None:
    """Mark the events done once their records' writes were applied (or tried: a failed write
    stays pending in the outbox); those left unplanned say why."""
    state.finish_events([q for q in queued if q.record not in fresh.left], "done", run_id, at)
    for reason in sorted(set(fresh.left.values())):
        left = [q for q in queued if fresh.left.get(q.record) == reason]
        state.finish_events(left, "done", run_id, at, f"not planned: {reason}")


def _failed(state: StateDB, config: Config, queued: Sequence[QueuedEvents], error: str, at: str) -> None:
    """Count a failed attempt at these events; give up those that reached `max_attempts`."""
    limit = config.events.max_attempts
    with state.atomic():
        state.retry_events([q for q in queued if q.attempts + 1 < limit], error[:300])
        state.finish_events([q for q in queued if q.attempts + 1 >= limit], "failed", None, at, error[:300])


def _finished(
    run_id: int,
    status: str,
    records: Sequence[str],
    queued: Sequence[QueuedEvents],
    finished: datetime,
    report: CycleReport,
) -> dict[str, Any]:
    counts = report.counts
    waited = max((_age(q.first_received, finished) for q in queued), default=0.0)
    return {
        "run_id": run_id,
        "status": status,
        "records": len(records),
        "oldest_event_seconds": round(waited, 3),
        **{k: counts[k] for k in ("queued", "applied", "failed", "parked", "conflicts") if counts.get(k)},
    }


def _age(received: str, now: datetime) -> float:
    try:
        return (now - datetime.fromisoformat(received.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return 0.0
