"""Apply, the last step of a cycle: send every pending write of the outbox (this cycle's plan,
earlier failures it confirmed) and record each result.

Runs after the plan committed, so a write is only ever sent once the state that planned it (its
owner chosen, its outbox row) is on disk. Right before a write goes out, `sync.freshness` looks
again at its target and drops a write a person overtook since the cycle's read. Each success is
marked done together with the values it wrote, in a transaction of its own (per Vitally PUT or
batch of them, per Salesforce collection): a crash between a request and its commit only means
the same idempotent write is sent again. A transient failure stays pending for the next cycle; a
permanent one is parked (`failed`, `retry`); one that stops the whole service ends the cycle.

A write whose answer was lost (`UnansweredError`: the request went out, no answer came) may have
taken effect, and a person, or an org's Flow, may have changed the record since. It is never sent
again blindly: after a pause (1, 2, 4, 8 s plus jitter) the step looks at its records again, as
before a first send (an update's leads re-read by Id, a new lead looked up by its `Sync_Key__c`,
an account in the next look at Vitally, a task on its account), so what took effect is marked
done, what a person overtook is dropped as a conflict, and only what is still missing is sent
again: up to `LOST_ANSWER_RESENDS` times. Lost every time, the service looks down, as after the
retry policy gives up on any request: the step ends (`UnreachableError`) and the write stays
pending for the next cycle, whose plan settles it from what it reads. A write the look finds
landed is recorded as its answer would have been (`_landed`): done, counted as applied, a lead
write with its follow-ups (announcement, ticket). It counts once against `--max-writes`; a stop
during the pause leaves it pending, counted as deferred. A collection of leads a gateway answered at
each of its five sends is split in halves until the one lead it refuses wherever it travels is
singled out and parked (`_single_out`), so that lead holds back no other.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from connectors.base import SalesforcePort, VitallyPort, WriteResult
from connectors.http import backoff_wait, interruptible_sleep
from connectors.slack import AnnounceSettings
from core.errors import (
    ContractError,
    QuotaExhaustedError,
    RecordError,
    RetriableError,
    StopRequested,
    SyncError,
    UnansweredError,
    UnreachableError,
    WriteRejectedError,
)
from rules.context import closed_statuses
from rules.policy import Policy
from state import OutboxRow, StateDB
from sync.followups import FollowUps, FollowUpSender, Outlets
from sync.freshness import RECHECK_EVERY, LastLook, account_echo
from sync.vocabulary import PAGE, CycleReport, Hooks, iso
from sync.wire import WRITTEN_TRAIT, read_written_trait, written_trait, written_trait_at

__all__ = ["LOST_ANSWER_RESENDS", "Applier"]

_COMMIT_EVERY = 100  # Vitally PUTs marked done per transaction, at most…
_COMMIT_WITHIN = 0.02  # …and a success waits no longer than this (seconds) for its commit
COLLECTION = 200  # records per sObject Collections request (Salesforce's maximum)
LOST_ANSWER_RESENDS = 4  # looks (and sends of what is still missing) after a write's answer was lost
_OUTAGE_PROBES = 4  # sends of a split collection lost in a row: the gateway fails everything
_SOLO_SENDS = 2  # more sends of a lead singled out, alone, before it is parked

_Groups = dict[str, list[OutboxRow]]  # outbox rows by the record they write


def _row_ids(groups: _Groups) -> list[int]:
    return [row.id for rows in groups.values() for row in rows]


def _halves(groups: _Groups) -> tuple[_Groups, _Groups]:
    """`groups` split in two, in their order (the first half the smaller one for an odd count)."""
    records = list(groups)
    middle = len(records) // 2
    return {r: groups[r] for r in records[:middle]}, {r: groups[r] for r in records[middle:]}


def _merged(groups: _Groups) -> dict[str, dict[str, Any]]:
    """Every change of a record in one payload (later rows win)."""
    return {record: _payload(rows) for record, rows in groups.items()}


def _newest(values: Mapping[str, Any], times: Mapping[str, str], mark: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """What crm-sync has written to an account, field by field: the state's record (`values`,
    `times`), or the account's `crm_sync_written` trait (`mark`) where the state has none or the
    trait says it was written later. A PUT's trait built from the state alone would forget what
    only the trait knows (a state restored from a backup, or lost and re-learnt)."""
    newest, at = dict(values), dict(times)
    trait, trait_at = read_written_trait(mark), written_trait_at(mark)
    for name, value in trait.items():
        when = trait_at.get(name)
        if name not in newest or (when is not None and when > at.get(name, "")):
            newest[name] = value
            if when is not None:
                at[name] = when
            else:
                at.pop(name, None)
    return newest, at


def _payload(rows: list[OutboxRow]) -> dict[str, Any]:
    return {key: value for row in rows for key, value in row.write.payload.items()}


class Applier:
    """Sends the outbox for one cycle and records the results in `report`."""

    def __init__(
        self,
        state: StateDB,
        vitally: VitallyPort,
        salesforce: SalesforcePort | None,
        report: CycleReport,
        *,
        write_workers: int,
        clock: Callable[[], datetime],
        hooks: Hooks,
        records: Sequence[str] | None = None,
        look: LastLook | None = None,
        followups: FollowUps | None = None,
        outlets: Outlets | None = None,
        outlet_settings: AnnounceSettings | None = None,
        max_writes: int | None = None,
        only_run: int | None = None,
        closed: frozenset[str] | None = None,
        max_wait: Mapping[str, float] | None = None,
    ) -> None:
        """`records`: send the pending writes of these records only (an event's mini-cycle), not
        the whole outbox; `look`: the last look before writes, when not `LastLook`'s own (`closed`:
        the lead statuses its look at leads reads as closed, `rules.context.closed_statuses`);
        `max_wait`: each system's longest wait (`max_wait_seconds`), which caps the pause before a
        look after a lost answer (60 s without it)."""
        self.state = state
        self.followups = followups  # queues a lead write's announcement and ticket when it is done
        self.outlets = outlets or Outlets()
        self.outlet_settings = outlet_settings or AnnounceSettings()
        self.vitally = vitally
        self.salesforce = salesforce
        self.report = report
        self.write_workers = write_workers
        self.clock = clock
        self.hooks = hooks
        self.records = records
        closed = closed if closed is not None else closed_statuses(Policy())
        self.look = look or LastLook(state, vitally, salesforce, report, clock, closed=closed)
        self._to_send = 0  # pending outbox rows when the apply step began
        # `--max-writes`: at most this many records are written (an account's PUT, a task, a lead);
        # the rest stay pending, untouched. Records, not outbox rows: an account's trait changes
        # travel in one PUT, so counting rows would hold back an account with more changes than N
        # and a canary of `--max-writes 2` could send nothing at all.
        self._room = max_writes
        self._cap = max_writes
        self._charged: set[str] = set()  # accounts counted against `--max-writes` (a re-send is not again)
        self._unanswered: dict[int, UnansweredError] = {}  # outbox row → its latest lost answer
        self._losses: Counter[int] = Counter()  # outbox row → its sends whose answers were lost
        self._misses = 0  # sends of a split collection lost in a row (`_single_out`)
        # `apply`: only the rows this run queued or confirmed (a reviewed plan's), none of the others.
        self._only_run = only_run
        self._pause = interruptible_sleep(hooks.should_stop)  # before a look after a lost answer
        self._max_wait = dict(max_wait or {})

    def run(self) -> None:
        """Send every pending write: one Vitally PUT per account with all its trait changes, tasks
        upserted on their externalId, Salesforce leads in collections of 200. A spent API quota
        ends the step; what was not sent stays pending. With `max_writes`, the step stops after that
        many records (an account's trait changes together, a task, a lead), counting the outbox
        rows left in `counts["held_back"]`."""
        self._to_send = self.state.pending_count(self.records, self._only_run)
        self.hooks.progress("writes sent", 0, self._to_send)
        try:
            self._apply_vitally()
            self._apply_salesforce()
            self._apply_followups()
        except QuotaExhaustedError as exc:
            self.report.quota_exhausted = True
            self.report.failures.append(str(exc))
            self.hooks.log("quota_exhausted", {"run_id": self.report.run_id, "error": str(exc)})
        except StopRequested:
            pass  # asked to stop during a wait: what was not sent stays pending, counted as deferred
        if self._room is not None:
            run = self._only_run or self.report.run_id
            self.report.counts["held_back"] = self.state.pending_count(self.records, run)
            self.report.counts["records_written"] = (self._cap or 0) - self._room

    def _fits(self) -> bool:
        """Whether one more record fits under `--max-writes`; if so, it is counted as written."""
        if self._room is None:
            return True
        if self._room <= 0:
            return False
        self._room -= 1
        return True

    # -- Vitally --------------------------------------------------------------------------------

    def _apply_vitally(self) -> None:
        """Send the pending Vitally writes a page of the outbox at a time: one PUT per account with
        all its trait changes, several in flight within the rate limit, each success marked done
        with the values it wrote; then the page's tasks, upserted on their externalId."""
        after = ""
        while True:
            page = self.state.pending_records(
                "vitally", after, PAGE, records=self.records, confirmed_run=self._only_run
            )
            if not page:
                return
            after = page[-1][0].write.record
            self._put_traits({rows[0].write.record: rows for rows in page if rows[0].write.op != "create_task"})
            for rows in page:
                if rows[0].write.op == "create_task":
                    self._send_tasks(rows)

    def _send_tasks(self, rows: list[OutboxRow]) -> None:
        for row in rows:
            if self.hooks.should_stop() or not self._fits():
                self.report.counts["deferred"] += 1  # what is not sent stays pending for the next start
                continue
            self._send_task(row)

    def _send_task(self, row: OutboxRow) -> None:
        """One task: looked up first when an earlier send may have created it (`LastLook.task_exists`),
        and again after a send whose answer was lost, before it is sent again. A task on an
        account an event's mini-cycle planned from the mirror is dropped if the account churned
        since, and one on an account that is gone waits (`LastLook.may_create_task`)."""
        if not self._may_create_task(row):
            return
        for attempt in range(LOST_ANSWER_RESENDS + 1):
            if attempt:
                self._wait_after_loss(attempt, "vitally", {row.write.record: [row]})
                self.look.forget_tasks(row.write.account or "")
            exists = self._send([row.id], partial(self.look.task_exists, row, sent=attempt > 0))
            if exists is None:
                return  # the look-up failed: the task stays pending, or is parked
            if exists:
                break
            lost: list[UnansweredError] = []
            sent = self._send([row.id], partial(self.vitally.upsert_task, dict(row.write.payload)), lost=lost)
            if sent is not None:
                break
            if not lost:
                return  # failed: pending or parked
        else:
            self._still_lost([row.id], "vitally: a task", "vitally")
            return
        # A task found after this step's own lost send is one it created: applied, not "already there".
        self.report.counts["already_there" if exists and not attempt else "applied"] += 1
        at = iso(self.clock())
        with self.state.atomic():
            self.state.mark_done([row.id], at)
            self.state.set_last_written("vitally", row.write.record, {"task": True}, self.report.run_id, at)
        self.hooks.progress("writes sent", self.report.counts["applied"], self._to_send)

    def _may_create_task(self, row: OutboxRow) -> bool:
        """`LastLook.may_create_task`, its read's failure handled as the look before a PUT handles
        it: the task stays pending, counted as failed, its attempts untouched (nothing was sent);
        an account whose answer is malformed is reported (id, body) and its task waits too; an
        error that stops the whole service is raised. A whole cycle's step that sends a task before
        any look listed the accounts lists them first (`LastLook.before_task`): its failure is the
        same wait; a malformed list stops the step, as it stops the look before a PUT."""
        try:
            self.look.before_task()
        except RetriableError as exc:
            return self._task_look_failed(exc)
        try:
            return self.look.may_create_task(row)
        except ContractError as bad:  # this account's answer, not the service, is broken
            account = row.write.account or ""
            self.report.record_errors.append(RecordError("vitally", account, "(body)", str(bad)[:200]))
            return False
        except RetriableError as exc:
            return self._task_look_failed(exc)

    def _task_look_failed(self, exc: RetriableError) -> bool:
        self.report.counts["failed"] += 1
        self.report.failures.append(f"vitally: the last look before a task failed ({exc}); it waits")
        self.hooks.log("write_failed", {"run_id": self.report.run_id, "rows": [], "error": str(exc), "parked": False})
        return False

    def _put_traits(self, groups: _Groups) -> None:
        """The PUTs of `groups` (`_put_traits_once`); those whose answers were lost are looked at
        again after a pause, by the last look that comes before any PUT, and sent again only if
        still wanted (see the module's docstring)."""
        for attempt in range(LOST_ANSWER_RESENDS + 1):
            if attempt:
                self._wait_after_loss(attempt, "vitally", groups)
            groups = self._put_traits_once(groups)
            if not groups:
                return
        self._still_lost([row.id for rows in groups.values() for row in rows], "vitally: account traits", "vitally")

    def _put_traits_once(self, groups: _Groups) -> _Groups:
        """One PUT per account, through the connector's bounded pool, each carrying the
        `crm_sync_written` trait (what crm-sync has written to the account, this PUT included).
        Before every `RECHECK_EVERY` accounts, a last look drops the writes a person overtook.
        Each success is committed within 20 ms, in batches of up to 100 when they come back
        faster than that (an unthrottled sandbox); at Vitally's real pace every PUT commits alone.
        A crash between a PUT and its commit only means the same idempotent PUT is sent again on
        restart. Returns the accounts whose answers were lost."""
        remaining = dict(groups)
        sent: dict[str, list[OutboxRow]] = {}
        merged: dict[str, dict[str, Any]] = {}
        wanted = self._to_put(list(groups), remaining, sent, merged)
        done: list[tuple[str, Any]] = []
        lost: _Groups = {}
        oldest = 0.0  # when the oldest success not yet committed came back
        fatal: SyncError | None = None
        try:
            for record, outcome in self.vitally.put_traits_many(wanted, workers=self.write_workers):
                if isinstance(outcome, UnansweredError):
                    self._lost([row.id for row in sent[record]], outcome)
                    lost[record] = sent[record]
                    continue
                if isinstance(outcome, SyncError):
                    if self._failed_by([row.id for row in sent[record]], outcome):
                        fatal = outcome
                    continue
                if not done:
                    oldest = time.monotonic()
                done.append((record, outcome))
                if len(done) >= _COMMIT_EVERY or time.monotonic() - oldest >= _COMMIT_WITHIN:
                    self._traits_done(done, sent, merged)
        finally:
            self._traits_done(done, sent, merged)
        self.report.counts["deferred"] += len(remaining)
        if fatal is not None:
            raise fatal
        return lost

    def _to_put(
        self,
        records: list[str],
        remaining: _Groups,
        sent: dict[str, list[OutboxRow]],
        merged: dict[str, dict[str, Any]],
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The PUTs to make, read lazily by the connector's pool: a last look before every
        `RECHECK_EVERY` accounts drops from `remaining` what a person overtook; what is yielded
        moves to `sent` (its rows) and `merged` (what it writes). Each PUT carries the
        `crm_sync_written` trait: every value crm-sync has written to the account, this PUT's
        included, each with when it was written: the state's record, or the account's own trait
        where that says it was written later or the state has none (a state restored from a
        backup, or lost: the trait keeps what it knows; `_newest`). What it wrote before is read
        for the whole page at once, an account is written once a page; again for one whose value
        a look recorded as found there meanwhile."""
        written, times = self.state.written_values_of("vitally", records)
        marks = self.state.account_traits(records, WRITTEN_TRAIT)
        for index, record in enumerate(records):
            if self.hooks.should_stop():
                return  # what is not sent stays pending for the next start
            if index % RECHECK_EVERY == 0 and not self._looked_at(remaining):
                return  # no last look, no write: the rest stays pending for the next cycle
            rows = remaining.get(record)
            if rows is None:
                continue  # overtaken by a person, or already there
            if record not in self._charged and not self._fits():
                return  # --max-writes reached: the rest stays pending
            self._charged.add(record)
            del remaining[record]
            sent[record], merged[record] = rows, _payload(rows)
            if record in self.look.recorded:  # a look recorded a value of its as found there: read again
                (fresh, fresh_times) = self.state.written_values_of("vitally", [record])
                written[record], times[record] = fresh.get(record, {}), fresh_times.get(record, {})
            values, at = _newest(written.get(record, {}), times.get(record, {}), marks.get(record))
            values.update(merged[record])
            at.update(dict.fromkeys(merged[record], iso(self.clock())))
            trait = written_trait(values, at=at)
            yield record, {**merged[record], WRITTEN_TRAIT: trait}

    def _looked_at(self, remaining: _Groups) -> bool:
        """The last look at the accounts about to be written; False when Vitally could not answer
        it (those writes are counted as failed and stay pending). An error that stops the whole
        service is raised. After a lost answer it also says what became of that PUT: one that
        took effect changed its account, which the look then lists (or, in a mini-cycle, reads)."""
        try:
            self.look.accounts(remaining)
            self._landed()
        except RetriableError as exc:
            rows = sum(len(rows) for rows in remaining.values())
            self.report.counts["failed"] += rows
            self.report.failures.append(f"vitally: the last look before writing failed ({exc}); {rows} write(s) wait")
            self.hooks.log(
                "write_failed", {"run_id": self.report.run_id, "rows": [], "error": str(exc), "parked": False}
            )
            return False
        return True

    def _traits_done(
        self, done: list[tuple[str, Any]], groups: _Groups, merged: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """Mark these PUTs done, with the values they wrote and the account Vitally answered."""
        if not done:
            return
        counts = self.report.counts
        self.hooks.progress("writes sent", counts["applied"] + sum(len(groups[r]) for r, _ in done), self._to_send)
        at = iso(self.clock())
        with self.state.atomic():
            ids = [row.id for record, _ in done for row in groups[record]]
            self.state.mark_done(ids, at)
            counts["applied"] += len(ids)
            echoes = []
            for record, updated in done:
                self.state.set_last_written("vitally", record, merged[record], self.report.run_id, at)
                counts["vitally_puts"] += 1
                echo = self._echo(record, updated)
                if echo is not None:
                    echoes.append(echo)
            self.state.upsert_accounts(echoes, read_run=self.report.run_id)
        self.look.written(record for record, _ in done)
        done.clear()

    def _echo(self, record: str, updated: Any) -> dict[str, Any] | None:
        """The mirror's row for an account as our PUT's answer shows it (`account_echo`)."""
        return account_echo(self.state, record, updated)

    # -- Salesforce -----------------------------------------------------------------------------

    def _apply_salesforce(self) -> None:
        """Send the pending lead writes a page of the outbox at a time, in collections of 200: new
        leads as an upsert on Sync_Key__c (never a create, so a retry cannot duplicate them), then
        lead updates, all their fields in one record, each collection right after a last look at
        its leads. Every Lead write that sets an owner, and every update, carries
        `Sforce-Auto-Assign: FALSE`: the org's assignment rule never moves an owner behind us. A
        new lead without an owner (its team has no pool for its region) goes in a collection of
        its own without it, so that the org's assignment rule or default lead owner takes it, as
        the plan says, and not the integration user."""
        salesforce = self.salesforce
        if salesforce is None:
            return
        for op in ("upsert_lead", "update_lead"):
            after = ""
            while not self.hooks.should_stop():
                page = self.state.pending_records(
                    "salesforce", after, PAGE, op=op, records=self.records, confirmed_run=self._only_run
                )
                if not page:
                    break
                after = page[-1][0].write.record
                for start in range(0, len(page), COLLECTION):
                    if self.hooks.should_stop():
                        break
                    collection = self._collection(page[start : start + COLLECTION])
                    if collection:
                        self._send_leads(salesforce, op, collection)
                self.hooks.progress("writes sent", self.report.counts["applied"], self._to_send)

    def _collection(self, records: list[list[OutboxRow]]) -> _Groups:
        """The records of one collection that fit under `--max-writes` (all of them without it)."""
        collection: _Groups = {}
        for rows in records:
            if not self._fits():
                break
            collection[rows[0].write.record] = rows
        return collection

    def _send_leads(self, salesforce: SalesforcePort, op: str, groups: _Groups) -> None:
        """One collection: upserts of new leads, or updates of leads a last look found unchanged.
        Leads whose collection's answer was lost are looked at again after a pause (updates: the
        same last look; new leads: looked up by key, and those the lost upsert created are done)
        and only what is still missing is sent again (see the module's docstring). Lost every
        time, to a gateway's answer, the collection is split to single out the lead it holds
        that a gateway refuses (`_single_out`)."""
        for attempt in range(LOST_ANSWER_RESENDS + 1):
            if attempt:
                self._wait_after_loss(attempt, "salesforce", groups)
                if op == "upsert_lead" and not self._created_by_lost(groups):
                    return  # the look-up failed or was held: the leads stay pending
            if not groups:
                return
            groups = self._send_leads_once(salesforce, op, groups)
            if not groups:
                return
        self._single_out(salesforce, op, groups)

    def _single_out(self, salesforce: SalesforcePort, op: str, lost: _Groups) -> None:
        """Leads whose collection was lost at every send. When a gateway answered each time (502,
        504, 520, 524: Salesforce's edge was reached) and the collection held more than one lead,
        a payload may be what fails (an origin or a web application firewall refusing a lead
        wherever it travels), and it would hold back every lead sent beside it, cycle after cycle.
        So the collection is split in halves, each looked at and sent on its own (one pause for
        both), and every half lost again is split again, down to the leads to blame, each sent
        alone `_SOLO_SENDS` times more and, lost every time, parked with its reason (`failed`,
        `retry`): about two sends per halving (16 to single out one lead of 200). When
        `_OUTAGE_PROBES` sends of the split are lost in a row (at its start, or once an outage
        begins during it), no lead is to blame (the gateway fails everything): the rest wait, as a
        collection lost every time does (`_still_lost`), and none is parked.
        A part any of whose sends got no answer at all ends the step (`UnreachableError`)."""
        parts = [lost]
        answered = self.report.counts["salesforce_writes"]
        self._misses = 0
        try:
            while parts:
                part = parts.pop(0)
                ids = _row_ids(part)
                through = self.report.counts["salesforce_writes"] > answered  # the gateway passes some
                if not self._gateway_answered(ids) or (not through and len(part) < 2) or self._outage():
                    self._still_lost(ids, "salesforce: leads", "salesforce")
                elif len(part) == 1:
                    self._park_refused(salesforce, op, part)
                else:
                    self._split(salesforce, op, part, parts)
        except StopRequested:
            self.report.counts["deferred"] += sum(len(_row_ids(part)) for part in parts)  # pending, as they were
            raise
        except UnreachableError as error:
            for part in parts:  # not sent again in this step: they wait for the next cycle, counted
                self._failed(_row_ids(part), str(error), park=False)
            raise

    def _split(self, salesforce: SalesforcePort, op: str, part: _Groups, parts: list[_Groups]) -> None:
        """Send each half of `part` on its own after one pause and a look; append to `parts` the
        halves lost again. A stop or an unreachable service leaves the halves not sent yet in
        `parts`, for `_single_out` to count."""
        self._wait_after_loss(1, "salesforce", part)
        halves = list(_halves(part))
        for index, half in enumerate(halves):
            try:
                if op == "upsert_lead" and not self._created_by_lost(half):
                    continue  # the look-up failed or was held: those leads stay pending
                if half:
                    lost_half = self._send_counted(salesforce, op, half)
                    if lost_half:
                        parts.append(lost_half)
            except (StopRequested, UnreachableError):
                parts.extend(rest for rest in halves[index + 1 :] if rest)
                raise

    def _send_counted(self, salesforce: SalesforcePort, op: str, groups: _Groups) -> _Groups:
        """`_send_leads_once` of a split's half, counting the halves lost in a row since the last
        that went through (`_outage`; a lead sent alone is not counted: several leads to blame,
        each sent alone in turn, are no outage)."""
        before = self.report.counts["salesforce_writes"]
        lost = self._send_leads_once(salesforce, op, groups)
        if self.report.counts["salesforce_writes"] > before:
            self._misses = 0
        elif lost:
            self._misses += 1
        return lost

    def _outage(self) -> bool:
        """`_OUTAGE_PROBES` sends of the split lost in a row: the gateway fails everything now (an
        outage, from the start or begun during the split), no lead is to blame."""
        return self._misses >= _OUTAGE_PROBES

    def _gateway_answered(self, ids: list[int]) -> bool:
        """Whether each of these rows' latest lost send got a gateway's answer (not none at all)."""
        return all((error := self._unanswered.get(row)) is not None and error.status is not None for row in ids)

    def _park_refused(self, salesforce: SalesforcePort, op: str, lead: _Groups) -> None:
        """The one lead a gateway refused at every send that held it, while sends without it went
        through: sent alone `_SOLO_SENDS` more times, each after a pause and a look (a gateway that
        fails at random must not get a healthy lead parked), then looked at a last time (its lost
        sends may have landed, or a person may have it now) and, still missing, parked with its
        reason, so that it holds back no other lead. No answer at all ends the step instead."""
        for attempt in range(1, _SOLO_SENDS + 1):
            self._wait_after_loss(attempt, "salesforce", lead)
            if op == "upsert_lead" and not self._created_by_lost(lead):
                return  # the look-up failed or was held: the lead waits
            if lead:  # an update's last look is `_send_leads_once`'s own; not counted by `_outage`
                lead = self._send_leads_once(salesforce, op, lead)
            if not lead:
                return  # it went through, landed, or a person has it now
        self._wait_after_loss(_SOLO_SENDS + 1, "salesforce", lead)
        if not self._look_again(op, lead) or not lead:
            return
        ids = _row_ids(lead)  # after the look: rows it settled are not parked
        if not self._gateway_answered(ids) or self._outage():  # no answer, or the gateway now fails all
            self._still_lost(ids, "salesforce: leads", "salesforce")
            return
        [record] = lead
        status = self._unanswered[ids[0]].status
        sends = max(self._losses[row] for row in ids)
        self._failed(
            ids,
            f"salesforce: lead {record}: a gateway answered {status} to each of the {sends} sends that held it, "
            "while other leads of its collection went through: parked (`retry` sends it again)",
            park=True,
        )

    def _look_again(self, op: str, lead: _Groups) -> bool:
        """The look before a lead is sent again (new: by its key; an update: by Id), recording what
        landed; drops from `lead` what is settled. False when the look failed."""
        if op == "upsert_lead":
            return self._created_by_lost(lead)
        looked = self._send(_row_ids(lead), partial(self.look.leads, lead))
        self._landed()
        return looked is not None

    def _send_leads_once(self, salesforce: SalesforcePort, op: str, groups: _Groups) -> _Groups:
        """Send one collection (two for new leads: with and without an owner); returns the leads
        whose answer was lost."""
        if op == "update_lead":
            ids = [row.id for rows in groups.values() for row in rows]
            looked = self._send(ids, partial(self.look.leads, groups))
            self._landed()
            if looked is None or not groups:
                return {}
        merged = _merged(groups)
        if op == "update_lead":
            records = [{"Id": record, **fields} for record, fields in merged.items()]
            return self._send_collection(groups, merged, partial(salesforce.update, "Lead", records, set_owner=True))
        lost: _Groups = {}
        for owned in (True, False):
            part = {record: fields for record, fields in merged.items() if ("OwnerId" in fields) == owned}
            if part:
                call = partial(salesforce.upsert, "Lead", "Sync_Key__c", list(part.values()), set_owner=owned)
                lost.update(self._send_collection({record: groups[record] for record in part}, part, call))
        return lost

    def _created_by_lost(self, groups: _Groups) -> bool:
        """Look up new leads whose upsert's answer was lost, by their key: those it created are
        done (with their follow-ups) and leave `groups`; False when the look-up failed."""
        ids = [row.id for rows in groups.values() for row in rows]
        try:
            found = self.look.new_leads(groups)
        except SyncError as exc:
            if self._failed_by(ids, exc):
                raise
            return False
        if found is None:
            self._failed(
                ids, "salesforce: a new lead came back unreadable when looked up after a lost answer", park=False
            )
            return False
        if found:
            taken = {key: groups.pop(key) for key in found}
            results = [WriteResult(key=key, ok=True, id=lead_id) for key, lead_id in found.items()]
            self._record_results(results, taken, _merged(taken))
        return True

    def _send_collection(
        self, groups: _Groups, merged: Mapping[str, Mapping[str, Any]], call: Callable[[], list[WriteResult]]
    ) -> _Groups:
        """Send one collection and record its results; returns `groups` when its answer was lost."""
        lost: list[UnansweredError] = []
        results = self._send([row.id for rows in groups.values() for row in rows], call, lost=lost)
        if results is not None:
            self.report.counts["salesforce_writes"] += 1
            self._record_results(results, groups, merged)
        return dict(groups) if lost else {}

    def _record_results(
        self, results: list[WriteResult], groups: _Groups, merged: Mapping[str, Mapping[str, Any]]
    ) -> None:
        at = iso(self.clock())
        counts = self.report.counts
        updated: dict[str, Mapping[str, Any]] = {}  # the updates done, shown to the mirror
        with self.state.atomic():
            for result in results:
                ids = [row.id for row in groups.get(result.key, [])]
                if not ids:
                    continue
                if result.ok:
                    self.state.mark_done(ids, at)
                    self.state.set_last_written("salesforce", result.key, merged[result.key], self.report.run_id, at)
                    counts["applied"] += len(ids)
                    self._follow(groups[result.key], result.id or result.key, at)
                    if all(row.write.op == "update_lead" for row in groups[result.key]):
                        updated[result.key] = merged[result.key]
                    continue
                error = f"{result.key}: {result.code}: {result.message}"
                self.state.mark_failed(ids, error, at, park=not result.transient)
                counts["failed" if result.transient else "parked"] += len(ids)
                self.report.failures.append(error)
            self.state.echo_sf_writes("Lead", updated)

    def _follow(self, rows: list[OutboxRow], lead_id: str, at: str) -> None:
        """Queue the follow-ups of a lead write now done, in the transaction that marks it done."""
        if self.followups is not None:
            for row in rows:
                self.report.counts["followups_queued"] += self.followups.lead_written(
                    row.write, lead_id, self.report.run_id, at
                )

    # -- follow-ups: announcements and tickets ------------------------------------------------------

    def _apply_followups(self) -> None:
        """After every CRM write: the pending Zendesk tickets and Slack announcements
        (`sync.followups`); a failure there is recorded on its row and never ends the cycle."""
        if self.hooks.should_stop():
            return
        FollowUpSender(
            self.state,
            self.outlets,
            self.report,
            checks_history=self.outlet_settings.checks_history,
            max_posts=self.outlet_settings.max_per_cycle,
            clock=self.clock,
            hooks=self.hooks,
        ).run()

    # -- failures -------------------------------------------------------------------------------

    def _send(self, ids: list[int], call: Callable[[], Any], *, lost: list[UnansweredError] | None = None) -> Any:
        """One write request; on failure the rows stay pending (transient) or are parked
        (refused for good). Returns None when it failed. With `lost`, an answer that was lost is
        appended there, the attempt counted on the rows but not yet reported as a failure: the
        caller looks again and decides (`_still_lost` when it gives up)."""
        try:
            return call()
        except UnansweredError as exc:
            if lost is None:
                if self._failed_by(ids, exc):
                    raise
                return None
            self._lost(ids, exc)
            lost.append(exc)
        except SyncError as exc:
            if self._failed_by(ids, exc):
                raise
        return None

    def _lost(self, ids: list[int], error: UnansweredError) -> None:
        """A write whose answer was lost: its attempt is counted and it stays pending, with the
        error, until a look says what became of it (it counted against `--max-writes` once: its
        re-send does not again)."""
        with self.state.atomic():
            self.state.mark_failed(ids, str(error), iso(self.clock()), park=False)
        self._unanswered.update(dict.fromkeys(ids, error))
        self._losses.update(ids)
        self.hooks.log("write_unanswered", {"run_id": self.report.run_id, "rows": ids, "error": str(error)})

    def _wait_after_loss(self, attempt: int, system: str, lost: _Groups) -> None:
        """The pause before looking again at `lost`, whose answers were lost (`attempt` 1, 2, …:
        1, 2, 4, 8 s plus up to 1 s, capped by the system's `max_wait_seconds`); a stop asked for
        ends it (`StopRequested`: those writes stay pending, counted as deferred, and the next
        start settles them)."""
        try:
            self._pause(backoff_wait(attempt, max_wait=self._max_wait.get(system, 60.0)))
        except StopRequested:
            self.report.counts["deferred"] += sum(len(rows) for rows in lost.values())
            raise
        self.look.after_loss(lost)

    def _landed(self) -> None:
        """Record what the last look found applied by this step's own sends whose answers were lost
        (`LastLook.take_landed`): done with the values they wrote and counted as applied, a lead
        write with its follow-ups (its announcement, its ticket), as if the answer had come."""
        landed = self.look.take_landed()
        if not landed:
            return
        groups: _Groups = {}
        for row in landed:
            groups.setdefault(row.write.record, []).append(row)
        merged = _merged(groups)
        if landed[0].write.system == "salesforce":
            self._record_results([WriteResult(key=record, ok=True, id=record) for record in groups], groups, merged)
            return
        at = iso(self.clock())
        with self.state.atomic():
            self.state.mark_done([row.id for row in landed], at)
            for record, values in merged.items():
                self.state.set_last_written("vitally", record, values, self.report.run_id, at)
        self.report.counts["applied"] += len(landed)
        self.look.written(groups)

    def _still_lost(self, ids: list[int], what: str, system: str) -> None:
        """Writes whose answers were lost `LOST_ANSWER_RESENDS + 1` times in a row, each resend
        looked at first. They stay pending, counted as failed (the next cycle's plan settles them
        from what it reads). When no answer came at all, the service looks down, as after the
        retry policy gave up on any request: the step ends (`UnreachableError`). When a gateway
        answered each time (502, 504, 520, 524: the service was reached, this record's write is
        what fails, for every one of these writes), the step goes on with the other writes."""
        sends = max((self._losses[row] for row in ids), default=LOST_ANSWER_RESENDS + 1)
        error = f"{what}: no answer to {sends} sends, each but the first looked at before; {len(ids)} write(s) wait"
        self._failed(ids, error, park=False)
        if any(self._unanswered.get(row) is None or self._unanswered[row].status is None for row in ids):
            raise UnreachableError(error, system=system)

    def _failed_by(self, ids: list[int], error: SyncError) -> bool:
        """Record a failed write: parked when refused for good, pending otherwise. True when the
        error stops the whole service (auth, unreachable, quota) and the cycle must end. A write
        whose wait a stop cut short (`StopRequested`) was not refused: it stays pending as it was,
        counted as deferred, and the step ends."""
        if isinstance(error, StopRequested):
            self.report.counts["deferred"] += len(ids)
            return True
        if isinstance(error, WriteRejectedError | ContractError | RecordError):
            self._failed(ids, str(error), park=True)
            return False
        self._failed(ids, str(error), park=False)
        return not isinstance(error, RetriableError)

    def _failed(self, ids: list[int], error: str, *, park: bool) -> None:
        with self.state.atomic():
            self.state.mark_failed(ids, error, iso(self.clock()), park=park)
        self.report.counts["parked" if park else "failed"] += len(ids)
        self.report.failures.append(error)
        self.hooks.log("write_failed", {"run_id": self.report.run_id, "rows": ids, "error": error, "parked": park})
