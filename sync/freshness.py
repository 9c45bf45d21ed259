"""The last look before a write is sent: a value a person changed since the cycle read it is
never undone.

Every pending write was planned, or confirmed, by this cycle's plan from this cycle's read
(`sync.plan` settles the others), so what is left is the window between that read and the write.
It is narrowed as far as the services allow:

- **Salesforce**: right before each collection of up to 200 lead updates, one SOQL query re-reads
  those leads' fields (`WHERE Id IN (...)`). What remains is the time between that query and the
  collection's commit: one request. Salesforce's conditional request headers do not help here:
  `If-Unmodified-Since` and `If-Match` apply to sObject Rows, one record per request (and ETags
  exist for Account records only); sObject Collections take no precondition, so a conditional
  write would cost a request per lead instead of one per 200. New leads need no look: their key
  is crm-sync's own and did not exist when the cycle read the leads.
- **Vitally** has no conditional PUT and no "changed since" filter, and a GET before each PUT
  would double a cycle's write requests. Instead (an event's mini-cycle, which writes a few
  accounts read moments before, does GET each one: `read_account`), before every `RECHECK_EVERY` (50) account PUTs, the
  accounts list is read newest-first down to the previous look, usually one page (the echoes of
  the previous 50 PUTs), and each account a person changed since is checked. What remains is at
  most those 50 PUTs: about 3 s at Vitally's rate limit (1,000 requests a minute).
- **Tasks** are created once, upserted on their `externalId`; a send that may have taken effect
  (an earlier attempt failed after the request went out) or a state that is re-learning
  (`sync.relearn`) looks the task up on its account first, and one that exists is not sent again.

A write whose target no longer holds what it expects is not sent: it is dropped (superseded, with
the reason), each field a person changed is a conflict (reported once), and the next cycle's rules
decide again. A write whose values are all there already is marked done without a request (for a
record an event's mini-cycle planned from the mirror, its values are recorded as crm-sync's only
when crm-sync sent them before: `LastLook._sent`). A write to an account that churned since it was
planned is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping
from datetime import datetime
from functools import partial
from typing import Any

from connectors.base import SalesforcePort, VitallyPort
from core.decoding import Unreadable
from core.errors import ContractError, RecordError
from core.records import parse_timestamp
from rules.context import closed_statuses, is_closed
from rules.policy import Policy
from state import OutboxRow, StateDB
from sync.budget import RECHECK_EVERY
from sync.ownership import COMPUTED_LEAD_FIELDS, Conflicts, changed_fields, ours_in
from sync.vocabulary import Conflict, CycleReport, iso
from sync.wire import WRITTEN_TRAIT, read_written_trait, written_trait_at

__all__ = ["RECHECK_EVERY", "LastLook"]

_Groups = MutableMapping[str, list[OutboxRow]]  # pending rows by the record they write
# The lead fields that say whether a lead is still open, read by every look at leads.
_LEAD_STATE = frozenset({"Status", "IsConverted"})
_CLOSED = closed_statuses(Policy())


class LastLook:
    """The checks one apply step makes before sending (see the module's docstring)."""

    def __init__(
        self,
        state: StateDB,
        vitally: VitallyPort,
        salesforce: SalesforcePort | None,
        report: CycleReport,
        clock: Callable[[], datetime],
        read_account: Callable[[str], Mapping[str, Any] | None] | None = None,
        closed: frozenset[str] = _CLOSED,
        from_mirror: Collection[str] = (),
    ) -> None:
        """`read_account(id)`: look at Vitally accounts one by one (an event's mini-cycle, which
        writes a few accounts read moments before) instead of listing every account changed since
        the cycle's read (None when the account is gone). `closed`: the lead statuses that close a
        lead (`rules.context.closed_statuses` of the config's policy). `from_mirror`: the records
        planned from the mirror as the last cycle read them, not read by this step's plan (the
        accounts of a lead or an opportunity an event named): a value found there may have been
        there long before the plan, as a whole cycle would have read it (`_sent`)."""
        self.state = state
        self._closed = closed
        self._from_mirror = frozenset(from_mirror)
        self._churn_seen: dict[str, bool | None] = {}  # account → churned (None: gone), as read by id
        self._listed = False  # a look listed the accounts changed since the cycle's read, in this step
        self._vitally = vitally
        self._read_account = read_account
        self._salesforce = salesforce
        self.report = report
        self.clock = clock
        self.conflicts = Conflicts.of(state, report)
        # Where the previous look at Vitally stopped: first, where this cycle's read stopped.
        self._watermark = state.cursor("vitally.accounts")
        # Accounts changed since this cycle's read, as the looks found them: an account written
        # on a later page of the outbox is checked against what an earlier look saw.
        self._changed: dict[str, Mapping[str, Any]] = {}
        self._tasks: dict[str, set[str]] = {}  # account → its tasks' externalIds, once looked up
        # Records whose write this step sent and got no answer for (`after_loss`): rows of theirs
        # a look finds applied landed, and are the caller's to record (`take_landed`).
        self._lost: set[str] = set()
        self._landed: list[OutboxRow] = []
        # Accounts whose write the running look found applied (already there, or this step's lost
        # send landed): shown to the mirror as the look read them (`_check`).
        self._applied: set[str] = set()
        # Records whose values a look recorded as crm-sync's (found already there): what the
        # caller read of the state's record for them before the look is out of date.
        self.recorded: set[str] = set()

    def after_loss(self, records: Iterable[str]) -> None:
        """The next looks are at records whose write this step sent and got no answer for: a row
        found applied there was crm-sync's own send landing, not a value already there. It is
        left for the caller to record (`take_landed`: as applied, with the follow-ups a lead
        write calls for), and a lead that send closed is not taken for one a person closed."""
        self._lost.update(records)

    def take_landed(self) -> list[OutboxRow]:
        """The rows the looks since the last call found applied by this step's own lost sends."""
        landed, self._landed = self._landed, []
        return landed

    # -- Vitally accounts -----------------------------------------------------------------------

    def accounts(self, groups: _Groups) -> None:
        """Look at the accounts changed since the previous look; drop from `groups` the writes a
        person overtook (and those already done). One page of the accounts list, newest first,
        unless more accounts changed since."""
        if self._read_account is not None:
            self._accounts_by_id(groups)
            return
        if self._watermark is None:
            return  # this cycle read no account: there is nothing to write either
        changed: dict[str, dict[str, Any]] = {}
        newest = self._watermark
        unreadable: set[str] = set()
        for raw in self._vitally.iter_accounts_since(self._watermark):
            if isinstance(raw, Unreadable):
                # A person's change we cannot read is still a change: hold its writes (pending).
                unreadable.add(raw.record_id or "")
                continue
            record, updated = raw.get("id"), raw.get("updatedAt")
            if isinstance(record, str) and isinstance(updated, str):
                changed[record] = raw
                newest = _later(newest, updated)
        self._watermark = newest
        self._listed = True  # listed whole: a failed list leaves the next task's look to come
        _hold(groups, unreadable)
        churned = {record for record, raw in changed.items() if raw.get("churnedAt") is not None}
        self._churn_seen.update(dict.fromkeys(churned, True))  # their tasks too (`may_create_task`)
        self._drop_churned(groups, churned)
        held = self.state.account_versions(list(changed))
        self._changed.update(
            (record, _traits(raw)) for record, raw in changed.items() if held.get(record) != raw["updatedAt"]
        )
        fresh = {record: traits for record, traits in self._changed.items() if record in groups}
        self._check(groups, fresh, exempt=frozenset(), read=changed)

    def before_task(self) -> None:
        """Before a whole cycle's task, when no look of this step has listed the accounts yet (a
        step with tasks and no trait write: a nurture task of a new period, a task whose send
        failed before): list the accounts changed since the cycle's read, once, so that a task on
        an account a person churned meanwhile is dropped (`may_create_task`), as its trait writes
        would be. A step that writes traits has listed them already, before its first PUT, and
        sends each page's tasks right after its PUTs. Raises what `accounts` raises."""
        if self._read_account is None and not self._listed:
            self.accounts({})

    def written(self, records: Iterable[str]) -> None:
        """These accounts' writes are done and their echoes in the mirror: no later page of this
        cycle writes them again, so what a look saw of them is forgotten. A look that ran between
        a PUT and its commit saw the PUT's own echo as a change; kept, those echoes grew with
        every account written (a fifth of a cold run's accounts, measured at 10,000)."""
        for record in records:
            self._changed.pop(record, None)

    def _accounts_by_id(self, groups: _Groups) -> None:
        """Read each account about to be written again; a gone account's writes are held, and so
        are those of one whose answer is malformed, reported with its id (once a step: its task
        then waits unread, `may_create_task`), as the cycle's read reports a malformed record."""
        assert self._read_account is not None
        fresh: dict[str, Mapping[str, Any]] = {}
        raws: dict[str, Mapping[str, Any]] = {}
        gone: set[str] = set()
        churned: set[str] = set()
        for record in list(groups):
            try:
                raw = self._read_account(record)
            except ContractError as bad:  # this account's answer, not the service, is broken
                self.report.record_errors.append(RecordError("vitally", record, "(body)", str(bad)[:200]))
                self._churn_seen[record] = None
                gone.add(record)
                continue
            self._churn_seen[record] = None if raw is None else raw.get("churnedAt") is not None
            if raw is None:
                gone.add(record)
            elif raw.get("churnedAt") is not None:
                churned.add(record)
            else:
                fresh[record], raws[record] = _traits(raw), raw
        _hold(groups, gone)
        self._drop_churned(groups, churned)
        self._check(groups, fresh, exempt=frozenset(), read=raws)

    def may_create_task(self, row: OutboxRow) -> bool:
        """For a task to create on an account an event's mini-cycle planned from the mirror
        (`from_mirror`): whether the account is still there and active, read by id (once a step:
        the look before its PUT may have read it already). A task on an account that churned
        since is dropped, with the reason, as `_drop_churned` drops trait writes; one on an
        account that is gone stays pending, as `_hold` keeps trait writes. Other tasks are not
        looked at, unless a look before a PUT saw their account already (churned, in a whole
        cycle's list too; gone or malformed, read by id: the task is dropped or waits, as its trait
        writes were; a step with tasks only lists them first, `before_task`). Raises the
        connector's `SyncError` (the task stays pending, as trait writes do when their look fails)."""
        account = row.write.account or ""
        if account not in self._churn_seen and (self._read_account is None or account not in self._from_mirror):
            return True  # read by this cycle or mini-cycle, and not seen churned or gone since
        if account not in self._churn_seen:
            assert self._read_account is not None
            raw = self._read_account(account)
            self._churn_seen[account] = None if raw is None else raw.get("churnedAt") is not None
        churned = self._churn_seen[account]
        if churned:
            self.state.supersede([row.id], "the account churned in Vitally before it was sent", iso(self.clock()))
            self.report.counts["dropped"] += 1
        return churned is False

    def _drop_churned(self, groups: _Groups, churned: set[str]) -> None:
        """The writes to accounts that churned since they were planned are not sent: a churned
        account leaves every book, and no rule decides on it (`rules.evaluation`). Planned from
        what was read before the churn (an event's mini-cycle plans a lead's account from the
        mirror as the last cycle read it), they are dropped, with the reason; the next cycle reads
        the churn and plans nothing for the account."""
        rows = [row.id for record in churned & groups.keys() for row in groups.pop(record)]
        if rows:
            self.state.supersede(rows, "the account churned in Vitally before it was sent", iso(self.clock()))
            self.report.counts["dropped"] += len(rows)

    # -- Salesforce leads -----------------------------------------------------------------------

    def leads(self, groups: _Groups) -> int:
        """Re-read the leads about to be updated (one query per 200) and drop from `groups` the
        writes a person overtook (and those already done). Returns how many leads were read."""
        if self._salesforce is None or not groups:
            return 0
        fields = sorted(
            {name for rows in groups.values() for row in rows for name in (row.write.expects or {})} | _LEAD_STATE
        )
        fresh: dict[str, Mapping[str, Any]] = {}
        unreadable: set[str] = set()
        for raw in self._salesforce.read_by_ids("Lead", fields, list(groups)):
            if isinstance(raw, Unreadable):
                unreadable.add(raw.record_id or "")
            else:
                fresh[str(raw.get("Id"))] = raw
        _hold(groups, unreadable)
        self._check(groups, fresh, exempt=COMPUTED_LEAD_FIELDS, leads=True)
        return len(fresh)

    # -- Vitally tasks --------------------------------------------------------------------------

    def task_exists(self, row: OutboxRow, *, sent: bool = False) -> bool:
        """Whether the task of `row` is in Vitally already, looked up only when an earlier send may
        have created it (of this row, or of one it superseded: the same task planned again with
        another due date after a send whose answer was lost; `sent`: this step's own send, whose
        answer was lost) or the state is re-learning (otherwise it cannot exist: its key is
        crm-sync's and crm-sync never sent it). Raises the connector's `SyncError`."""
        first = row.attempts == 0 and not sent
        if first and not self.report.relearning and not self.state.sent_before("vitally", row.write.record):
            return False
        account = row.write.account or ""
        if account not in self._tasks:
            tasks = self._vitally.iter_account_tasks(account)
            self._tasks[account] = {
                str(task["externalId"]) for task in tasks if isinstance(task, dict) and task.get("externalId")
            }
        return row.write.record in self._tasks[account]

    def forget_tasks(self, account: str) -> None:
        """Forget the tasks looked up on `account`: a send whose answer was lost may have added one."""
        self._tasks.pop(account, None)

    # -- new Salesforce leads, after a lost answer ------------------------------------------------

    def new_leads(self, groups: _Groups) -> dict[str, str] | None:
        """New leads whose upsert's answer was lost, looked up by their key (`Sync_Key__c`, one
        query per 200): key → Id of each the upsert created. Those are crm-sync's, written: the
        caller marks them done; a field that already differs from what crm-sync wrote (an org's
        Flow, or a person, since) is reported as a conflict, as a later cycle's settling would.
        The others were not created: they stay in `groups`, to be sent again. None when a lead
        came back unreadable: nothing is sent again (the next cycle reads and reports it)."""
        if self._salesforce is None or not groups:
            return {}
        fields = sorted({name for rows in groups.values() for row in rows for name in row.write.payload})
        found: dict[str, Mapping[str, Any]] = {}
        for raw in self._salesforce.read_where("Lead", [*fields, "Sync_Key__c"], "Sync_Key__c", list(groups)):
            if isinstance(raw, Unreadable):
                return None
            key = raw.get("Sync_Key__c")
            if isinstance(key, str) and key in groups:
                found[key] = raw
        with self.state.atomic():
            for key, lead in found.items():
                for row in groups[key]:
                    _, changed = changed_fields(row.write.payload, None, lead, COMPUTED_LEAD_FIELDS)
                    for name, theirs in changed.items():
                        wanted = row.write.payload[name]
                        self.conflicts.found(Conflict("salesforce", key, name, wanted, theirs, row.write.rule))
            self.conflicts.save(close_unseen=False)
        return {key: str(lead.get("Id")) for key, lead in found.items()}

    # -- the check --------------------------------------------------------------------------------

    def _check(
        self,
        groups: _Groups,
        fresh: Mapping[str, Mapping[str, Any]],
        exempt: frozenset[str],
        *,
        leads: bool = False,
        read: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Keep in `groups` only the writes still to send (`_still_wanted`); for `leads`, none to a
        lead a person closed or converted since the cycle read it (`_closed_state`). The Vitally
        accounts whose writes are applied already are shown to the mirror as the look `read` them
        (`account_echo`), in the transaction that marks those writes done: such a write gets no
        answer to show it, as a PUT's does, and an event's mini-cycle planning the account from
        the mirror before the next cycle's read would take the value it replaced for a person's."""
        at = iso(self.clock())
        with self.state.atomic():
            for record, current in fresh.items():
                rows = groups.get(record)
                if not rows:
                    continue
                closed = _closed_state(current, self._closed) if leads else None
                if closed is not None and record in self._lost and _closed_by(rows, current):
                    closed = None  # closed by this step's own lost send (the triage's status), not a person
                kept = [row for row in rows if self._still_wanted(row, current, exempt, at, closed)]
                if kept:
                    groups[record] = kept
                else:
                    del groups[record]
            self.conflicts.save(close_unseen=False)
            applied, self._applied = sorted(self._applied), set()
            shown = read or {}
            echoes = [e for r in applied if r in shown and (e := account_echo(self.state, r, shown[r])) is not None]
            if echoes:
                self.state.upsert_accounts(echoes, read_run=self.report.run_id)

    def _still_wanted(
        self, row: OutboxRow, current: Mapping[str, Any], exempt: frozenset[str], at: str, closed: str | None
    ) -> bool:
        """False for a write a person overtook (dropped, its conflicts reported) or one whose values
        are all there already (marked done); True for one to send.

        `closed` says how a person closed the lead since the cycle read it: every lead write is
        planned for an open lead (no lead rule fires on a closed one), and re-reading only the
        fields a write replaces would miss it (an inbound lead a TAE disqualified in its queue
        would still be given an owner, and announced), so such a write is dropped. One that sets
        `Status` itself (the triage closing spam) expects the status it read: the field check
        below finds the person's."""
        write = row.write
        if closed is not None and "Status" not in (write.expects or {}):
            self.state.supersede([row.id], f"a person {closed} the lead before it was sent", at)
            self.report.counts["dropped"] += 1
            return False
        applied, changed = changed_fields(write.payload, write.expects, current, exempt)
        if changed:
            for name, theirs in changed.items():
                wanted = write.payload[name]
                self.conflicts.found(Conflict(write.system, write.record, name, wanted, theirs, write.rule))
            self.state.supersede([row.id], f"a person changed {', '.join(sorted(changed))} before it was sent", at)
            self.report.counts["dropped"] += 1
            return False
        if applied and write.system == "vitally":
            self._applied.add(write.record)
        elif applied and write.op == "update_lead":
            # The mirror shown the lead as the update left it (the look read only some of its
            # fields), as an answered update shows it.
            self.state.echo_sf_writes("Lead", {write.record: write.payload})
        if applied and write.record in self._lost:
            self._landed.append(row)
            return False
        if applied:
            self.state.mark_done([row.id], at)
            if self._sent(row, current):
                self.state.set_last_written(write.system, write.record, write.payload, self.report.run_id, at)
                self.recorded.add(write.record)
            self.report.counts["already_there"] += 1
            return False
        return True

    def _sent(self, row: OutboxRow, current: Mapping[str, Any]) -> bool:
        """Whether the values of `row`, found already there, are recorded as crm-sync's.

        Yes for a record the plan read: whoever put them there in the moments since, crm-sync
        wanted them, and the record is a conflict for the next person to change them. For a
        record planned from the mirror (`from_mirror`), only when crm-sync put them there: the
        account's `crm_sync_written` trait names them (every PUT of crm-sync's carries it, so a
        PUT that landed before a crash, its row never marked, says so itself), or this row, or
        a write that carried the same values, was sent before and its answer never came.
        Otherwise a person may have put them there any time since the last cycle read the
        record, and a whole cycle would have read them as the person's, wanted or not (its plan
        writes nothing, and records nothing); taken for crm-sync's, they would be overwritten
        when the rules next want another value (found by a review of lead events)."""
        write = row.write
        if write.record not in self._from_mirror or row.attempts > 0:
            return True
        ours: Callable[[str], list[Any]] = _nothing_known
        if write.system == "vitally":
            # As a plan reads ownership (`sync.ownership.ours_in`): the state's record, the trait
            # only where the state has none or the trait says it was written later (a PUT that
            # landed before a crash is recorded nowhere else). A trait naming an older value of
            # crm-sync's, one a person has set again since, does not count.
            mark = current.get(WRITTEN_TRAIT)
            last = self.state.last_written("vitally")
            trait, trait_at = read_written_trait(mark), written_trait_at(mark)
            ours = partial(ours_in, last, write.record, trait=trait, trait_at=trait_at, state_at=last.written_at)
        return all(
            value in ours(name) or value in self.state.values_sent(write.system, write.record, name)
            for name, value in write.payload.items()
        )


def _nothing_known(name: str) -> list[Any]:
    """What crm-sync knows it wrote to a field it has no record of (a lead's, for `_sent`)."""
    return []


def _closed_state(lead: Mapping[str, Any], closed: frozenset[str]) -> str | None:
    """How the lead as read now is closed ("converted", "closed (status X)"), or None when open."""
    if lead.get("IsConverted") is True:
        return "converted"
    status = lead.get("Status")
    if isinstance(status, str) and is_closed(status, closed):
        return f"closed (status {status})"
    return None


def _closed_by(rows: list[OutboxRow], lead: Mapping[str, Any]) -> bool:
    """Whether one of a lead's rows sets the `Status` the lead now has."""
    return any("Status" in row.write.payload and row.write.payload["Status"] == lead.get("Status") for row in rows)


def account_echo(state: StateDB, record: str, updated: Any) -> dict[str, Any] | None:
    """The mirror's row for an account as Vitally just showed it (a PUT's answer, or the account a
    look read and found a write applied to), so that the next read drops the echo as unchanged;
    None when it is not that account, or the mirror does not hold it.

    What Vitally computes is never taken from it: a segment follows its trait only when the
    Playbook runs, later (about hourly), so the answer shows the segments as they were. The mirror
    keeps the segments it read; when the answer's differ (a person, or a Playbook, moved one since
    the read), the row keeps the version it had, so the next read takes the account as it then is.
    A version SQLite cannot store (a lone surrogate) is left to that read, which reports it."""
    if not isinstance(updated, dict) or updated.get("id") != record:
        return None
    version = updated.get("updatedAt")
    held = state.account_raw(record)
    if held is None or not isinstance(version, str) or not _storable_text(version):
        return None
    if held.get("segments") != updated.get("segments"):
        version = str(held.get("updatedAt"))
    raw = {**updated, "segments": held.get("segments"), "updatedAt": version}
    return {"id": record, "updated_at": version, "raw": json.dumps(raw), "error": None}


def _storable_text(value: str) -> bool:
    """Whether SQLite can store `value` (UTF-8: no lone surrogate)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _hold(groups: _Groups, records: set[str]) -> None:
    """Writes to records that came back unreadable are not sent now: they stay pending, and the
    next cycle reads (and reports) the record before anything is written to it."""
    for record in records & groups.keys():
        del groups[record]


def _traits(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    traits = raw.get("traits")
    return traits if isinstance(traits, dict) else {}


def _later(first: str, second: str) -> str:
    """The later of two Vitally timestamps (an unreadable one never wins)."""
    try:
        return second if parse_timestamp(second) > parse_timestamp(first) else first
    except ValueError:
        return first
