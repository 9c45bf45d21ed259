"""One sync cycle: read changes → update the mirror → evaluate every rule over the whole mirror →
diff against what is there and what we last wrote → plan → (apply) → remember.

A dry run does all of it on an in-memory copy of the state and applies nothing.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from connectors.base import WriteResult
from core.errors import (
    ContractError,
    QuotaExhaustedError,
    RecordError,
    RetriableError,
    SyncError,
    WriteRejectedError,
)
from core.model import Account, Lead
from core.records import (
    parse_account,
    parse_lead,
    parse_opportunity,
    parse_sf_account,
    parse_timestamp,
    parse_user,
)
from rules import Decision, evaluate_account, evaluate_lead, managed_segments
from rules.allocation import owner_region
from rules.context import EMPTY, AccountContext, LeadContext
from rules.routing import lead_source_for
from rules.scoring import lead_score
from state import OutboxRow, PlanLog, PlannedWrite, StateDB
from sync.config import Config
from sync.facts import SalesforceFacts
from sync.owners import Owners
from sync.wire import lead_fields, vitally_task

__all__ = ["SF_OBJECTS", "Conflict", "CycleReport", "Engine", "SalesforceReader", "VitallyPort"]

# Salesforce objects mirrored each cycle and the fields read (data-model.md).
SF_OBJECTS: Mapping[str, tuple[str, ...]] = {
    "Lead": (
        "Id", "FirstName", "LastName", "Email", "Company", "Title", "Role__c", "Sub_Role__c", "Country",
        "NumberOfEmployees", "AnnualRevenue", "Industry", "LeadSource", "Status", "OwnerId", "IsConverted",
        "Form_Text__c", "Vitally_Account_Id__c", "CreatedDate", "SystemModstamp", "Lead_Score__c",
        "Sync_Key__c", "Routing_Rule__c", "Classification__c",
    ),
    "User": ("Id", "Name", "Email", "IsActive", "SystemModstamp"),
    "Opportunity": ("Id", "AccountId", "StageName", "CloseDate", "Loss_Reason__c", "OwnerId", "SystemModstamp"),
    "Account": ("Id", "Name", "Website", "Vitally_Account_Id__c", "OwnerId", "SystemModstamp"),
}  # fmt: skip
_SF_PARSERS: Mapping[str, Callable[[Mapping[str, Any]], object]] = {
    "Lead": parse_lead,
    "User": parse_user,
    "Opportunity": parse_opportunity,
    "Account": parse_sf_account,
}
_MISSING = object()
_PAGE = 1000  # records stored, decisions remembered, writes queued and sent per batch
_COMMIT_EVERY = 100  # Vitally PUTs marked done per transaction, at most…
_COMMIT_WITHIN = 0.02  # …and a success waits no longer than this (seconds) for its commit


class _Stopped(Exception):
    """Asked to stop while reading: the cycle's transaction is rolled back."""


_ROUTED_TEAMS = ("TAM", "TAE", "BDR")
_REASON_MAX = 255  # a Salesforce text field


def _detached(error: RecordError) -> RecordError:
    """A caught record error, kept for the report without its traceback and context: their frames
    hold the page of records being read, and would keep every such page alive until the end."""
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error


def _unowned(lead: Lead) -> bool:
    """Inbound leads wait unowned or in a queue (00G…) until the round robin gives them an owner."""
    return lead.owner_id is None or lead.owner_id.startswith("00G")


# Lead fields only crm-sync computes: a different value there is ours to correct, not a conflict.
COMPUTED_LEAD_FIELDS = frozenset({"Lead_Score__c", "Routing_Rule__c", "Routing_Reason__c"})


class VitallyPort(Protocol):
    """What the engine needs from the Vitally connector."""

    def iter_accounts_since(self, watermark: str | None) -> Iterator[dict[str, Any]]: ...

    def put_traits_many(
        self, items: Iterable[tuple[str, Mapping[str, Any]]], *, workers: int = ...
    ) -> Iterator[tuple[str, dict[str, Any] | SyncError]]: ...

    def upsert_task(self, task: Mapping[str, Any]) -> dict[str, Any]: ...


class SalesforceReader(Protocol):
    """What the engine needs from the Salesforce connector."""

    def iter_changed(
        self, sobject: str, fields: Iterable[str], since: str | None, *, lookback_seconds: int = ...
    ) -> Iterator[dict[str, Any]]: ...

    last_query_time: datetime | None

    def update(self, sobject: str, records: Sequence[Mapping[str, Any]], *, set_owner: bool) -> list[WriteResult]: ...

    def upsert(
        self, sobject: str, external_id_field: str, records: Sequence[Mapping[str, Any]], *, set_owner: bool
    ) -> list[WriteResult]: ...


@dataclass(frozen=True)
class Conflict:
    """A value a person changed since our last write (or set without us): reported, not overwritten."""

    system: str
    record: str
    field: str
    ours: Any
    theirs: Any
    rule: str
    overwritten: bool = False


@dataclass
class CycleReport:
    run_id: int
    dry_run: bool
    now: datetime
    # Every write planned, in order (a PlanLog while the cycle runs; empty when it was stopped).
    plan: Sequence[PlannedWrite] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    record_errors: list[RecordError] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failures: list[str] = field(default_factory=list)
    quota_exhausted: bool = False
    fallbacks: list[str] = field(default_factory=list)
    # Decisions worth remembering (fired, or stopped by a guard) not yet stored in the state.
    decisions: list[Decision] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """cli.md: 0 all applied (or a dry run); 1 some writes failed and wait to be retried."""
        if self.dry_run:
            return 0
        return 1 if self.counts.get("failed", 0) or self.counts.get("parked", 0) or self.quota_exhausted else 0


def _later(first: str | None, second: str | None) -> str | None:
    """The later of two timestamps (either may be missing or, from an old state, unreadable)."""
    try:
        if first is None or (second is not None and parse_timestamp(second) > parse_timestamp(first)):
            return second
    except ValueError:
        return first
    return first


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Engine:
    """Runs cycles against the given connectors and state. Time is an input: `clock` gives the
    wall time (run history, cursors), `now` fixes the rules' "today" (defaults to the clock)."""

    def __init__(
        self,
        config: Config,
        state: StateDB,
        vitally: VitallyPort,
        salesforce: SalesforceReader | None,
        *,
        clock: Callable[[], datetime],
        now: datetime | None = None,
        dry_run: bool = False,
        log: Callable[[str, Mapping[str, Any]], None] = lambda event, data: None,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[str, int, int | None], None] = lambda phase, done, total: None,
    ) -> None:
        self.config = config
        self.state = state
        self.vitally = vitally
        self.salesforce = salesforce
        self.clock = clock
        self.fixed_now = now
        self.dry_run = dry_run
        self.log = log
        self.should_stop = should_stop
        # (phase, done, total or None): called a page at a time, for progress bars.
        self.progress = progress
        # Fields that hold a person's decision: a value set without us is theirs, not ours to replace.
        self._protected = frozenset({config.vitally.written_traits.get("new_owner", "new_owner"), "OwnerId"})
        segment_keys = tuple(config.vitally.segment_traits.values())
        self.written_keys = tuple(config.vitally.written_traits.values()) + segment_keys
        self._planned: PlanLog  # the running cycle's plan, set by run_cycle
        self._to_send = 0  # pending outbox rows when the apply phase began

    # -- the cycle ------------------------------------------------------------------------------

    def run_cycle(self) -> CycleReport:
        started = self.clock()
        now = self.fixed_now or started
        mode = "dry-run" if self.dry_run else "run"
        with self.state.atomic():
            run_id = self.state.begin_run(_iso(started), mode, _iso(now))
        report = CycleReport(run_id=run_id, dry_run=self.dry_run, now=now)
        self.log("cycle_started", {"run_id": run_id, "mode": mode, "now": _iso(now)})
        status, error = "failed", None
        try:
            # What was read goes into the mirror page by page, and the plan into the outbox batch by
            # batch, all in one transaction: the planned writes and the state that caused them
            # commit together, and memory does not grow with the number of accounts.
            with self.state.atomic():
                self._planned = PlanLog(self.state, run_id, _iso(started), queue=not self.dry_run)
                report.plan = self._planned
                self._read_vitally(report)
                self._read_salesforce(report)
                if self.should_stop():
                    # Asked to stop while reading: the transaction is rolled back, the cursors did
                    # not move, so the next start reads the same changes again. Nothing is lost.
                    raise _Stopped
                self._plan(report, now)
                self._planned.flush()
                report.counts["queued"] = self._planned.queued
                self._remember(report)
            if not self.dry_run:
                self._apply(report)
            status = "ok" if report.exit_code == 0 else "partial"
        except _Stopped:
            status = "stopped"
            report.plan = []
            report.record_errors.clear()
            report.conflicts.clear()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            with self.state.atomic():
                self.state.finish_run(run_id, _iso(self.clock()), status, dict(report.counts), error)
            self.log("cycle_finished", {"run_id": run_id, "status": status, **report.counts})
        return report

    # -- reading --------------------------------------------------------------------------------

    def _read_vitally(self, report: CycleReport) -> None:
        """Changed accounts since the cursor into the mirror, a page at a time; boundary duplicates
        and our own writes' echo (same id and updatedAt) are dropped. The records are parsed (and
        a malformed one reported) when the rules read them, once."""
        watermark = self.state.cursor("vitally.accounts")
        newest: str | None = None
        newest_at: datetime | None = None
        page: list[dict[str, Any]] = []
        for raw in self.vitally.iter_accounts_since(watermark):
            if self.should_stop():
                return  # run_cycle rolls back before planning anything
            report.counts["accounts_read"] += 1
            updated = raw.get("updatedAt")
            if isinstance(updated, str):
                try:
                    moment = parse_timestamp(updated)
                except ValueError:
                    pass  # reported with the record
                else:
                    if newest_at is None or moment > newest_at:
                        # Unchanged records (our own writes' echo) move the watermark too, so they
                        # are not read again next cycle.
                        newest, newest_at = updated, moment
            page.append(raw)
            if len(page) >= _PAGE:
                self._store_accounts(page, report)
                page = []
                self.progress("Vitally accounts read", report.counts["accounts_read"], None)
        self._store_accounts(page, report)
        self.progress("Vitally accounts read", report.counts["accounts_read"], None)
        if newest:
            self.state.set_cursor("vitally.accounts", newest)

    def _store_accounts(self, page: list[dict[str, Any]], report: CycleReport) -> None:
        held = self.state.account_versions(raw["id"] for raw in page if isinstance(raw.get("id"), str))
        rows: dict[str, dict[str, Any]] = {}
        for raw in page:
            record_id = raw.get("id")
            updated = raw.get("updatedAt")
            if not isinstance(record_id, str):
                report.record_errors.append(RecordError("vitally", str(record_id), "id", "missing account id"))
                continue
            error = None
            version = updated if isinstance(updated, str) else json.dumps(updated)
            if held.get(record_id) == version:
                report.counts["accounts_unchanged"] += 1
                continue
            if not isinstance(updated, str):
                # Remembered under its odd value, so it is reported once, not every cycle.
                report.record_errors.append(
                    RecordError("vitally", record_id, "updatedAt", f"expected a timestamp, got {version[:60]}")
                )
                error = json.dumps({"field": "updatedAt", "message": "missing or not text"})
            rows[record_id] = {"id": record_id, "updated_at": version, "raw": json.dumps(raw), "error": error}
            held[record_id] = version
        self.state.upsert_accounts(rows.values(), read_run=report.run_id)

    def _read_salesforce(self, report: CycleReport) -> None:
        """Changed Salesforce records since each object's cursor into the mirror, a page at a time."""
        if self.salesforce is None:
            return
        for sobject, fields in SF_OBJECTS.items():
            if self.should_stop():
                return  # run_cycle rolls back before planning anything
            name = f"salesforce.{sobject}"
            newest: str | None = None
            page: list[dict[str, Any]] = []
            for raw in self.salesforce.iter_changed(
                sobject,
                fields,
                _later(self.state.cursor(name), self.state.cursor(f"{name}.queried_at")),
                lookback_seconds=self.config.salesforce.lookback_seconds,
            ):
                if self.should_stop():
                    return
                report.counts[f"sf_{sobject.lower()}_read"] += 1
                page.append(raw)
                if len(page) >= _PAGE:
                    newest = self._store_sf(sobject, page, newest, report)
                    page = []
                    self.progress(f"Salesforce {sobject} read", report.counts[f"sf_{sobject.lower()}_read"], None)
            newest = self._store_sf(sobject, page, newest, report)
            self.progress(f"Salesforce {sobject} read", report.counts[f"sf_{sobject.lower()}_read"], None)
            if newest:
                self.state.set_cursor(name, newest)
            queried = self.salesforce.last_query_time
            if queried is not None:
                # This read saw every record that was visible when it started: the next one need
                # not look further back than `lookback_seconds` before that moment, even when the
                # newest change is older (otherwise an idle cycle re-reads the last burst forever).
                self.state.set_cursor(f"{name}.queried_at", _iso(queried))

    def _store_sf(
        self, sobject: str, page: list[dict[str, Any]], newest: str | None, report: CycleReport
    ) -> str | None:
        """Mirror one page of `sobject`; returns the newest readable SystemModstamp so far."""
        held = self.state.sf_versions(sobject, (str(raw.get("Id")) for raw in page))
        rows: dict[str, dict[str, Any]] = {}
        for raw in page:
            record_id = str(raw.get("Id"))
            stamp = raw.get("SystemModstamp")
            if not isinstance(stamp, str):
                report.record_errors.append(
                    RecordError(f"salesforce {sobject}", record_id, "SystemModstamp", "missing SystemModstamp")
                )
                continue
            if held.get(record_id) == stamp:
                continue
            error = None
            bad_field = None
            try:
                _SF_PARSERS[sobject](raw)
            except RecordError as bad:
                report.record_errors.append(_detached(bad))
                error = json.dumps({"field": bad.field, "message": bad.message})
                bad_field = bad.field
            rows[record_id] = {
                "object": sobject,
                "id": record_id,
                "modstamp": stamp,
                "raw": json.dumps(raw),
                "error": error,
            }
            held[record_id] = stamp
            if bad_field == "SystemModstamp":
                continue  # an unreadable stamp never becomes the cursor
            try:
                if newest is None or parse_timestamp(stamp) >= parse_timestamp(newest):
                    newest = stamp
            except ValueError:
                continue
        self.state.upsert_sf(rows.values())
        return newest

    # -- deciding -------------------------------------------------------------------------------

    def iter_accounts(self, report: CycleReport | None = None) -> Iterator[Account]:
        """Every well-formed account of the mirror, parsed, streamed. With a `report`, an account
        this cycle read that turns out malformed is reported (id and field) and remembered as
        such; one read earlier was reported then and is skipped quietly."""
        bad: list[tuple[str, str]] = []
        for record_id, raw, error, read_run in self.state.iter_accounts():
            if error:
                continue
            try:
                yield parse_account(json.loads(raw), self.config.vitally.trait_keys, self.written_keys)
            except RecordError as problem:
                if report is not None and read_run == report.run_id:
                    report.record_errors.append(_detached(problem))
                    bad.append((record_id, json.dumps({"field": problem.field, "message": problem.message})))
        for record_id, problem_json in bad:
            self.state.mark_account_error(record_id, problem_json)

    def decide(
        self, account: Account, now: datetime, context: AccountContext = EMPTY, *, full: bool = True
    ) -> list[Decision]:
        """Every rule's verdict on one account (rules.evaluate_account); `full=False` skips
        explaining the rules that cannot fire, as a cycle does."""
        return evaluate_account(account, context, self.config.policy, now, self.config.custom_triggers, full=full)

    def decide_lead(self, lead: Lead, now: datetime, facts: SalesforceFacts) -> list[Decision]:
        """Every lead rule's verdict on one Salesforce lead (rules.evaluate_lead)."""
        context = LeadContext(facts.company_disqualified_at(lead.company))
        return evaluate_lead(lead, context, self.config.policy, now)

    def _plan(self, report: CycleReport, now: datetime) -> None:
        facts = SalesforceFacts.load(self.state)
        last_vitally = self.state.last_written("vitally")
        last_salesforce = self.state.last_written("salesforce")
        policy = self.config.policy
        for lead in facts.linked_leads():
            # The lead rules first: what they will change on a linked lead is part of the account's
            # context now, not one cycle later.
            wanted = {
                name: value
                for d in self.decide_lead(lead, now, facts)
                if d.fired
                for name, value in lead_fields(d.lead).items()
                if name not in COMPUTED_LEAD_FIELDS
            }
            current = (self.state.sf_raw("Lead", lead.id) or {}) if wanted else {}
            changed = {name: value for name, value in wanted.items() if current.get(name) != value}
            if changed:
                facts.plan_lead_fields(lead, changed)
        # Routed and onboarding accounts are remembered by id (re-read for their second pass), so
        # memory does not grow with the number of accounts a cold cycle routes.
        routed: list[tuple[str, Decision]] = []
        onboarding: list[tuple[str, Decision]] = []
        managed_by_email: Counter[str] = Counter()
        mirrored = self.state.account_count()
        for account in self.iter_accounts(report):
            report.counts["accounts_evaluated"] += 1
            if report.counts["accounts_evaluated"] % _PAGE == 0:
                self.progress("accounts evaluated", report.counts["accounts_evaluated"], mirrored)
            context = facts.context_for(account.id)
            decisions = self.decide(account, now, context, full=False)
            self._keep_decisions(report, (d for d in decisions if d.fired or d.guarded_by))
            self._plan_account(account, decisions, last_vitally, report, partial(self.decide, account, now, context))
            if any(s in account.segments for s in policy.guards.owned_segments) and "TAM" in account.key_role_emails:
                managed_by_email[account.key_role_emails["TAM"]] += 1
            winner = next(
                (d for d in decisions if d.fired and d.team in _ROUTED_TEAMS and "routing_reason" in d.traits), None
            )
            if winner is not None:
                routed.append((account.id, winner))
            specialist = next((d for d in decisions if d.fired and d.rule == "onboarding.lead"), None)
            if specialist is not None:
                onboarding.append((account.id, specialist))
        inactive = frozenset(user.id for user in facts.users.values() if not user.is_active)
        owners = Owners(self.config, self.state, inactive, managed_by_email, report.run_id, _iso(self.clock()))
        for account, winner in self._reread(routed):
            self._plan_new_lead(account, facts.context_for(account.id), winner, owners, last_salesforce, report, now)
        for account, decision in self._reread(onboarding):
            self._plan_specialist(account, decision, owners, last_vitally, report, now)
        for lead, fields in facts.iter_leads():
            report.counts["leads_evaluated"] += 1
            decisions = self.decide_lead(lead, now, facts)
            self._keep_decisions(report, (d for d in decisions if d.fired))
            self._plan_lead(lead, fields, decisions, last_salesforce, report, owners)
        report.fallbacks.extend(owners.fallbacks)

    def _reread(self, chosen: list[tuple[str, Decision]]) -> Iterator[tuple[Account, Decision]]:
        """The chosen accounts again, in id order (round-robin draws follow it), with their decision."""
        for account_id, decision in sorted(chosen, key=lambda item: item[0]):
            raw = self.state.account_raw(account_id)
            if raw is not None:
                yield parse_account(raw, self.config.vitally.trait_keys, self.written_keys), decision

    def _region(self, account: Account) -> str:
        region, _ = owner_region(account, self.config.policy)
        return region or self.config.policy.territories.default_region

    def _plan_new_lead(
        self,
        account: Account,
        context: AccountContext,
        winner: Decision,
        owners: Owners,
        last: Mapping[tuple[str, str], Any],
        report: CycleReport,
        now: datetime,
    ) -> None:
        """A routed account becomes a Salesforce lead, upserted on a key per account and routing
        episode (a retry can never create a second lead), owned by the round robin."""
        prefix = f"crm-sync-{account.id}-"
        ours = [lead for lead in context.leads if (lead.sync_key or "").startswith(prefix)]
        if any(lead in context.open_leads for lead in ours):
            return  # this episode's lead exists and is being worked
        key = f"{prefix}{len(ours) + 1}"
        if (key, "Sync_Key__c") in last:
            return  # created already; Salesforce has not shown it to us yet
        team = winner.team or "TAE"
        region = self._region(account)
        owner = owners.owner_for(key, team, region)
        score = lead_score(
            Lead(
                id=key,
                system_modstamp=now,
                employees=account.employee_count,
                annual_revenue=account.estimated_revenue,
                country=account.country,
            ),
            LeadContext(),
            self.config.policy,
            now,
        ).inputs.get("score")
        fields: dict[str, Any] = {
            "LastName": account.name,
            "Company": account.name,
            "LeadSource": lead_source_for(winner.rule),
            "Routing_Rule__c": winner.rule,
            "Routing_Reason__c": f"{winner.rule}: {winner.reason}"[:_REASON_MAX],
            "Lead_Score__c": score,
            "Vitally_Account_Id__c": account.id,
            "Sync_Key__c": key,
        }
        # The company facts the score rests on go on the lead too, so Salesforce scores it the same.
        for name, value in (
            ("NumberOfEmployees", account.employee_count),
            ("AnnualRevenue", account.estimated_revenue),
            ("Country", account.country),
            ("Industry", account.industry),
        ):
            if value is not None:
                fields[name] = value
        shown_owner = None
        reason = winner.reason
        if owner is not None:
            if owner["user_id"] is not None:
                fields["OwnerId"] = owner["user_id"]
            shown_owner = {"pool": owner["pool"], "user_id": owner["user_id"], "name": owner["name"]}
            reason = f"{winner.reason}; owner: {owner['reason']}"
        else:
            reason = f"{winner.reason}; no pool for {team}/{region}: Salesforce's default owner applies"
        self._planned.append(
            PlannedWrite(
                system="salesforce",
                op="upsert_lead",
                record=key,
                account=account.id,
                fields=fields,
                rule=winner.rule,
                reason=reason,
                payload=fields,
                owner=shown_owner,
            )
        )

    def _plan_specialist(
        self,
        account: Account,
        decision: Decision,
        owners: Owners,
        last: Mapping[tuple[str, str], Any],
        report: CycleReport,
        now: datetime,
    ) -> None:
        """An onboarding lead gets an onboarding specialist on the Vitally side: a trait naming
        them, and a task (created once: its externalId names the account)."""
        trait = self.config.vitally.written_traits.get("onboarding_specialist", "onboarding_specialist")
        if "Onboarding Specialist" in account.key_roles or account.written.get(trait):
            return
        owner = owners.owner_for(f"onboarding-{account.id}", "Onboarding", self._region(account))
        if owner is None or owner["user_id"] is None:
            return
        if not self._may_write("vitally", account.id, trait, owner["name"], None, last, decision, report):
            return
        self._planned.append(
            PlannedWrite(
                system="vitally",
                op="set_traits",
                record=account.id,
                account=account.id,
                fields={trait: owner["name"]},
                previous={trait: None},
                rule=decision.rule,
                reason=f"{decision.reason}; specialist: {owner['reason']}",
                payload={trait: owner["name"]},
                owner={"pool": owner["pool"], "user_id": owner["user_id"], "name": owner["name"]},
            )
        )
        task = {
            "externalId": f"crm-sync:onboarding.lead:{account.id}",
            "accountId": account.id,
            "name": f"Onboard {account.name} ({owner['name']})",
            "description": decision.reason,
            "dueDate": (now + timedelta(days=7)).date().isoformat(),
            "tags": ["crm-sync", "onboarding"],
        }
        self._plan_task(account, decision, task, last, report)

    def _plan_lead(
        self,
        lead: Lead,
        current: Mapping[str, Any],
        decisions: list[Decision],
        last: Mapping[tuple[str, str], Any],
        report: CycleReport,
        owners: Owners,
    ) -> None:
        claimed: set[str] = set()
        for decision in decisions:
            if not decision.fired or decision.lead is None:
                continue
            shown_owner = None
            wants = lead_fields(decision.lead)
            if decision.lead.routing_rule is not None and decision.team and _unowned(lead):
                territories = self.config.policy.territories
                region = territories.region_of(lead.country) if lead.country else territories.default_region
                owner = owners.owner_for(lead.id, decision.team, region)
                if owner is not None and owner["user_id"] is not None:
                    wants["OwnerId"] = owner["user_id"]
                    shown_owner = {"pool": owner["pool"], "user_id": owner["user_id"], "name": owner["name"]}
            fields, previous = self._changes(
                "salesforce", lead.id, wants, current, claimed, last, decision, report, COMPUTED_LEAD_FIELDS
            )
            if fields:
                self._planned.append(
                    PlannedWrite(
                        system="salesforce",
                        op="update_lead",
                        record=lead.id,
                        account=lead.vitally_account_id,
                        fields=fields,
                        previous=previous,
                        rule=decision.rule,
                        reason=decision.reason,
                        payload=fields,
                        owner=shown_owner if "OwnerId" in fields else None,
                    )
                )

    def _plan_account(
        self,
        account: Account,
        decisions: list[Decision],
        last: Mapping[tuple[str, str], Any],
        report: CycleReport,
        explained: Callable[[], list[Decision]],
    ) -> None:
        """Plan the account's trait, segment and task writes; `explained` gives every rule's full
        verdict, needed only to say why a segment is removed."""
        vitally = self.config.vitally
        claimed: set[str] = set()
        for decision in decisions:
            if not decision.fired:
                continue
            if decision.task is not None:
                self._plan_task(account, decision, vitally_task(decision.task), last, report)
            wants = {vitally.written_traits.get(name, name): value for name, value in decision.traits.items()}
            fields, previous = self._changes(
                "vitally", account.id, wants, account.written, claimed, last, decision, report
            )
            if fields:
                self._planned.append(
                    PlannedWrite(
                        system="vitally",
                        op="set_traits",
                        record=account.id,
                        account=account.id,
                        fields=fields,
                        previous=previous,
                        rule=decision.rule,
                        reason=decision.reason,
                        payload=fields,
                    )
                )
        wanted: dict[str, Decision] = {}
        for decision in decisions:
            if decision.fired:
                for segment in decision.segments:
                    wanted.setdefault(segment, decision)
        for segment in sorted(managed_segments(self.config.policy)):
            trait = vitally.segment_traits.get(segment)
            if trait is None:
                continue
            held = account.written.get(trait)
            want = segment in wanted
            member: bool | None = True if want else None
            if (held is True) == want:
                continue
            decision = wanted[segment] if want else self._manager(segment, explained())
            if not self._may_write("vitally", account.id, trait, member, held, last, decision, report):
                continue
            self._planned.append(
                PlannedWrite(
                    system="vitally",
                    op="add_segment" if want else "remove_segment",
                    record=account.id,
                    account=account.id,
                    fields={"segment": segment},
                    previous={"segment": segment if segment in account.segments else None},
                    rule=decision.rule,
                    reason=decision.reason if want else f"no longer holds: {decision.reason}",
                    payload={trait: member},
                )
            )

    @staticmethod
    def _manager(segment: str, decisions: list[Decision]) -> Decision:
        """The rule responsible for a segment, with its full reason (why it no longer holds)."""
        return next(d for d in decisions if segment in d.manages)

    def _plan_task(
        self,
        account: Account,
        decision: Decision,
        task: Mapping[str, Any],
        last: Mapping[tuple[str, str], Any],
        report: CycleReport,
    ) -> None:
        """A task is created once: its externalId names the account and period, and once it was
        sent we remember it and never plan it again."""
        key = str(task.get("externalId") or "")
        if not key or (key, "task") in last:
            return
        self._planned.append(
            PlannedWrite(
                system="vitally",
                op="create_task",
                record=key,
                account=account.id,
                fields=dict(task),
                rule=decision.rule,
                reason=decision.reason,
                payload=dict(task),
            )
        )

    def _changes(
        self,
        system: str,
        record: str,
        wants: Mapping[str, Any],
        current: Mapping[str, Any],
        claimed: set[str],
        last: Mapping[tuple[str, str], Any],
        decision: Decision,
        report: CycleReport,
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
            if name not in computed and not self._may_write(
                system, record, name, value, now_value, last, decision, report
            ):
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
        decision: Decision,
        report: CycleReport,
    ) -> bool:
        """A value a person changed since our last write is a conflict: reported, and overwritten
        only when the config says so. So is a person's decision we never made ourselves: a New
        Owner or an OwnerId already set by someone else."""
        ours = last.get((record, key), _MISSING)
        changed_by_someone = (current is not None and key in self._protected) if ours is _MISSING else current != ours
        if not changed_by_someone:
            return True
        overwrite = self.config.on_conflict == "overwrite"
        report.conflicts.append(Conflict(system, record, key, value, current, decision.rule, overwritten=overwrite))
        return overwrite

    def _keep_decisions(self, report: CycleReport, decisions: Iterable[Decision]) -> None:
        """Decisions worth remembering (fired, or stopped by a guard) go to the state in batches."""
        report.decisions.extend(decisions)
        if len(report.decisions) >= _PAGE:
            self._flush_decisions(report)

    def _flush_decisions(self, report: CycleReport) -> None:
        report.counts["decisions"] += len(report.decisions)
        if self.dry_run:
            report.decisions.clear()  # a dry run's copy of the state is thrown away
            return
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

    def _remember(self, report: CycleReport) -> None:
        report.counts["planned"] = len(report.plan)
        report.counts["conflicts"] = len(report.conflicts)
        report.counts["record_errors"] = len(report.record_errors)
        self._flush_decisions(report)
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

    # -- writing --------------------------------------------------------------------------------

    def _apply(self, report: CycleReport) -> None:
        """Send every pending write (this cycle's and earlier failures'): one Vitally PUT per
        account with all its trait changes, tasks upserted on their externalId, Salesforce lead
        updates in collections of 200. Each success is marked done together with the values it
        wrote, in one transaction."""
        self._to_send = self.state.pending_count()
        try:
            self._apply_vitally(report)
            self._apply_salesforce(report)
        except QuotaExhaustedError as exc:
            report.quota_exhausted = True
            report.failures.append(str(exc))
            self.log("quota_exhausted", {"run_id": report.run_id, "error": str(exc)})

    def _apply_vitally(self, report: CycleReport) -> None:
        """Send the pending Vitally writes a page of the outbox at a time: one PUT per account with
        all its trait changes, several in flight within the rate limit, each success marked done
        with the values it wrote; then the page's tasks, upserted on their externalId."""
        after = ""
        while True:
            page = self.state.pending_records("vitally", after, _PAGE)
            if not page:
                return
            after = page[-1][0].write.record
            groups = {rows[0].write.record: rows for rows in page if rows[0].write.op != "create_task"}
            self._put_traits(report, groups)
            for rows in page:
                if rows[0].write.op != "create_task":
                    continue
                for row in rows:
                    if self.should_stop():
                        report.counts["deferred"] += 1  # what is not sent stays pending for the next start
                        continue
                    payload = dict(row.write.payload)
                    if self._send(report, [row.id], partial(self.vitally.upsert_task, payload)) is None:
                        continue
                    at = _iso(self.clock())
                    with self.state.atomic():
                        self.state.mark_done([row.id], at)
                        self.state.set_last_written("vitally", row.write.record, {"task": True}, report.run_id, at)
                    report.counts["applied"] += 1

    def _put_traits(self, report: CycleReport, groups: Mapping[str, list[OutboxRow]]) -> None:
        """One PUT per account, through the connector's bounded pool. Each success is committed
        within 20 ms, in batches of up to 100 when they come back faster than that (an unthrottled
        sandbox); at Vitally's real pace every PUT commits alone. A crash between a PUT and its
        commit only means the same idempotent PUT is sent again on restart."""
        merged = {
            record: {key: value for row in rows for key, value in row.write.payload.items()}
            for record, rows in groups.items()
        }
        sent: set[str] = set()

        def wanted() -> Iterator[tuple[str, dict[str, Any]]]:
            for record, traits in merged.items():
                if self.should_stop():
                    return  # what is not sent stays pending for the next start
                sent.add(record)
                yield record, traits

        done: list[tuple[str, Any]] = []
        oldest = 0.0  # when the oldest success not yet committed came back
        fatal: SyncError | None = None
        try:
            for record, outcome in self.vitally.put_traits_many(wanted(), workers=self.config.vitally.write_workers):
                ids = [row.id for row in groups[record]]
                if isinstance(outcome, SyncError):
                    if self._failed_by(report, ids, outcome):
                        fatal = outcome
                    continue
                if not done:
                    oldest = time.monotonic()
                done.append((record, outcome))
                if len(done) >= _COMMIT_EVERY or time.monotonic() - oldest >= _COMMIT_WITHIN:
                    self._traits_done(report, done, groups, merged)
        finally:
            self._traits_done(report, done, groups, merged)
        report.counts["deferred"] += len(merged) - len(sent)
        if fatal is not None:
            raise fatal

    def _traits_done(
        self,
        report: CycleReport,
        done: list[tuple[str, Any]],
        groups: Mapping[str, list[OutboxRow]],
        merged: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Mark these PUTs done, with the values they wrote and the account Vitally answered."""
        if not done:
            return
        sent_rows = report.counts["applied"] + sum(len(groups[record]) for record, _ in done)
        self.progress("writes sent", sent_rows, self._to_send)
        at = _iso(self.clock())
        with self.state.atomic():
            echoes = []
            for record, updated in done:
                ids = [row.id for row in groups[record]]
                self.state.mark_done(ids, at)
                self.state.set_last_written("vitally", record, merged[record], report.run_id, at)
                report.counts["applied"] += len(ids)
                report.counts["vitally_puts"] += 1
                if (
                    isinstance(updated, dict)
                    and updated.get("id") == record
                    and isinstance(updated.get("updatedAt"), str)
                ):
                    echoes.append(
                        {"id": record, "updated_at": updated["updatedAt"], "raw": json.dumps(updated), "error": None}
                    )
            self.state.upsert_accounts(echoes, read_run=report.run_id)
        done.clear()

    def _send(self, report: CycleReport, ids: list[int], call: Callable[[], Any]) -> Any:
        """One write request; on failure the rows stay pending (transient) or are parked
        (refused for good). Returns None when it failed."""
        try:
            return call()
        except SyncError as exc:
            if self._failed_by(report, ids, exc):
                raise
        return None

    def _failed_by(self, report: CycleReport, ids: list[int], error: SyncError) -> bool:
        """Record a failed write: parked when refused for good, pending otherwise. True when the
        error stops the whole service (auth, unreachable, quota) and the cycle must end."""
        if isinstance(error, WriteRejectedError | ContractError | RecordError):
            self._failed(report, ids, str(error), park=True)
            return False
        self._failed(report, ids, str(error), park=False)
        return not isinstance(error, RetriableError)

    def _apply_salesforce(self, report: CycleReport) -> None:
        """Send the pending lead writes a page of the outbox at a time, in collections of 200: new
        leads as an upsert on Sync_Key__c (never a create, so a retry cannot duplicate them), then
        lead updates, all their fields in one record. Every Lead write carries
        `Sforce-Auto-Assign: FALSE`: the org's assignment rule never moves an owner behind us."""
        salesforce = self.salesforce
        if salesforce is None:
            return
        for op in ("upsert_lead", "update_lead"):
            after = ""
            while not self.should_stop():
                page = self.state.pending_records("salesforce", after, _PAGE, op=op)
                if not page:
                    break
                after = page[-1][0].write.record
                groups = {rows[0].write.record: rows for rows in page}
                merged = {
                    record: {key: value for row in rows for key, value in row.write.payload.items()}
                    for record, rows in groups.items()
                }
                ids = [row.id for rows in page for row in rows]
                if op == "upsert_lead":
                    call = partial(salesforce.upsert, "Lead", "Sync_Key__c", list(merged.values()), set_owner=True)
                else:
                    records = [{"Id": record, **fields} for record, fields in merged.items()]
                    call = partial(salesforce.update, "Lead", records, set_owner=True)
                results = self._send(report, ids, call)
                if results is not None:
                    report.counts["salesforce_writes"] += 1
                    self._record_results(report, results, groups, merged)
                self.progress("writes sent", report.counts["applied"], self._to_send)

    def _record_results(
        self,
        report: CycleReport,
        results: list[WriteResult],
        groups: Mapping[str, list[OutboxRow]],
        merged: Mapping[str, Mapping[str, Any]],
    ) -> None:
        at = _iso(self.clock())
        with self.state.atomic():
            for result in results:
                ids = [row.id for row in groups.get(result.key, [])]
                if not ids:
                    continue
                if result.ok:
                    self.state.mark_done(ids, at)
                    self.state.set_last_written("salesforce", result.key, merged[result.key], report.run_id, at)
                    report.counts["applied"] += len(ids)
                    continue
                error = f"{result.key}: {result.code}: {result.message}"
                self.state.mark_failed(ids, error, at, park=not result.transient)
                report.counts["failed" if result.transient else "parked"] += len(ids)
                report.failures.append(error)

    def _failed(self, report: CycleReport, ids: list[int], error: str, *, park: bool) -> None:
        with self.state.atomic():
            self.state.mark_failed(ids, error, _iso(self.clock()), park=park)
        report.counts["parked" if park else "failed"] += len(ids)
        report.failures.append(error)
        self.log("write_failed", {"run_id": report.run_id, "rows": ids, "error": error, "parked": park})
