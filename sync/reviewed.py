"""`apply PLAN`: the writes a person reviewed, applied exactly, and none that went stale.

A plan file (`sync.planfile`) holds the writes a dry run planned, what each expects to replace,
and the round-robin draws that chose their owners. Applying it:

1. **Checks the plan as a whole**: its format, the crm-sync that made it, and the config hash (a
   change of the rules, pools or services makes every write suspect): a mismatch refuses the
   whole plan, exit 2, before anything is read.
2. **Reads** what changed in both services since the state's cursors, as a cycle does, and commits
   it (a cycle re-plans over the whole mirror, so nothing read here is lost if the rest fails).
3. **Judges each selected write again** (`--account`, `--rule` select): refused when the services
   no longer hold what it expects to replace (`previous`: a person changed the field since the
   plan), or when the rules, judged again on what the services hold now at the plan's own clock
   with the plan's owners pinned, no longer plan exactly that write (its inputs changed: the
   account's MRR moved, a lead was converted, …). A write whose values are already there (an
   earlier `apply` of the same plan, interrupted) is counted, not sent again.
4. **Records the plan's owners**: each draw of an accepted write is recorded and charged to its
   pool once (`rules.round_robin.charge`), in the transaction that queues the write; an owner the
   state already holds for that key is never drawn or charged again.
5. **Sends** those writes and no other (`sync.apply` with `only_run`), with the last look before
   each write: one a person overtook in between is refused too. `--max-writes` stops after N.

Refusals name the record, the rule and why; any refusal makes the exit status 2.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from connectors.base import SalesforcePort, VitallyPort
from core.errors import RecordError
from rules.context import closed_statuses
from rules.round_robin import charge
from state import OwnerChoice, PlanLog, PlannedWrite, StateDB, write_key
from state.writes import target_of
from sync.accounts import malformed_mark, parser_fingerprint
from sync.app import make_outlets, package_version
from sync.apply import Applier
from sync.config import Config
from sync.facts import mirrored_users
from sync.followups import FollowUps, Outlets
from sync.ingest import ingest, sf_objects
from sync.owners import DRAWN_AGAIN, Owners, unavailable_users
from sync.ownership import COMPUTED_LEAD_FIELDS, changed_fields
from sync.plan import Planner
from sync.planfile import Plan, PlannedDraw, config_hash
from sync.relearn import relearn
from sync.scope import Scope, UsageError
from sync.vocabulary import CycleReport, Hooks, iso

__all__ = ["Applied", "Refusal", "apply_plan", "check_plan"]

Verdict = Literal["send", "already", "refuse"]
_SERVICE = {"vitally": "Vitally", "salesforce": "Salesforce"}


@dataclass(frozen=True)
class Refusal:
    """A write of the plan that was not applied, and why."""

    number: int
    write: PlannedWrite
    why: str


@dataclass
class Applied:
    """What `apply` did: the cycle's report (counts, failures, conflicts), the writes it queued
    and sent, those refused and those already there."""

    cycle: CycleReport
    selected: int = 0
    sent: list[PlannedWrite] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    already: int = 0
    owners: int = 0

    @property
    def exit_code(self) -> int:
        """2 when a write was refused (it went stale), else the cycle's (1: writes failed)."""
        return 2 if self.refused else self.cycle.exit_code


def check_plan(plan: Plan, config: Config) -> None:
    """Refuse a plan that cannot be trusted as a whole (`UsageError`, every reason listed): made by
    another crm-sync version, or under another config."""
    header = plan.header
    problems = []
    if header.get("crm_sync_version") != package_version():
        problems.append(f"made by crm-sync {header.get('crm_sync_version')}, this is {package_version()}")
    made_with = (header.get("config") or {}).get("sha256")
    if made_with != config_hash(config):
        problems.append(
            f"made with another config (hash {str(made_with)[:12]}…, now {config_hash(config)[:12]}…): "
            "the rules, pools or services changed"
        )
    if problems:
        raise UsageError(f"{plan.path}: not applied: " + "; ".join(problems) + "; make the plan again")


# -- judging a write again ---------------------------------------------------------------------------


def _canonical(value: Mapping[str, Any] | None) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True)
class _Fresh:
    """What the rules plan now: write key → its `expects`, per target what it would write, and
    the accounts this run read that turned out malformed (found while planning)."""

    expects: Mapping[str, str]
    targets: Mapping[str, str]
    malformed: list[RecordError]


def _pinned(copy: StateDB, plan: Plan, run_id: int) -> None:
    """The plan's draws recorded in a private copy of the state, so the planner finds them as
    owners chosen before and draws none of them again."""
    for planned in plan.writes:
        draw = planned.draw
        if draw is not None and copy.assignment(draw.key) is None:
            copy.record_assignment(replace(draw, run_id=run_id, at=iso(plan.now)))


def rejudge(config: Config, plan: Plan, clock: Callable[[], datetime], run_id: int) -> _Fresh:
    """Plan again, on a private copy of the state as it is now (what run `run_id` read included), at
    the plan's clock, with the plan's owners pinned: what the rules want now. The copy is thrown
    away."""
    copy = StateDB.snapshot(config.state_path)
    try:
        with copy.atomic():
            _pinned(copy, plan, run_id)
            report = CycleReport(run_id=run_id, dry_run=True, now=plan.now)
            log = PlanLog(copy, run_id, iso(clock()), queue=False)
            report.plan = log
            Planner(config, copy, report, log, now=plan.now, clock=clock, progress=_quiet, scope=plan.scope).run()
            expects = {write_key(w): _canonical(w.expects) for w in log}
            targets = {target_of(w.system, w.record, w.payload): _canonical(w.payload)[:200] for w in log}
            return _Fresh(expects, targets, list(report.record_errors))
    finally:
        copy.close()


def _quiet(phase: str, done: int, total: int | None) -> None:
    """No progress shown for the second look."""


def _target_now(state: StateDB, write: PlannedWrite) -> Mapping[str, Any] | None:
    """What the write's target holds now, as the mirror has it (None: not there)."""
    if write.system == "vitally":
        raw = state.account_raw(write.account or write.record)
        traits = None if raw is None else raw.get("traits")
        return traits if isinstance(traits, dict) else None
    if write.op == "upsert_lead":
        return state.lead_by_sync_key(write.record)
    return state.sf_raw("Lead", write.record)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:59] + "…"


def _stale(state: StateDB, write: PlannedWrite) -> tuple[Verdict, str]:
    """Whether the services still hold what the write expects to replace."""
    if write.op == "create_task":
        done = "task" in state.written_values("vitally", write.record)
        return ("already", "") if done else ("send", "")
    current = _target_now(state, write)
    if write.op == "upsert_lead":
        if current is None:
            return "send", ""
        ours = "Sync_Key__c" in state.written_values("salesforce", write.record)
        return ("already", "") if ours else ("refuse", "a lead with this Sync_Key__c exists now, made by someone else")
    if current is None:
        return "refuse", f"the record is no longer in {_SERVICE[write.system]}"
    exempt = COMPUTED_LEAD_FIELDS if write.system == "salesforce" else frozenset()
    applied, changed = changed_fields(write.payload, write.expects, current, exempt)
    # A field the mirror's row lacks (a lead mirrored before a field was read) cannot show it was applied.
    read = [name for name in write.payload if name in current]
    if applied or (read and all(current[name] == write.payload[name] for name in read)):
        return "already", ""
    if changed:
        seen = write.expects or {}
        what = "; ".join(
            f"{name}: the plan saw {_shown(seen.get(name))}, {_SERVICE[write.system]} holds {_shown(now)} now"
            for name, now in sorted(changed.items())
        )
        return "refuse", f"changed since the plan ({what})"
    return "send", ""


def _judged(state: StateDB, write: PlannedWrite, fresh: _Fresh) -> tuple[Verdict, str]:
    verdict, why = _stale(state, write)
    if verdict != "send":
        return verdict, why
    wanted = fresh.expects.get(write_key(write))
    if wanted == _canonical(write.expects):
        return "send", ""
    instead = fresh.targets.get(target_of(write.system, write.record, write.payload))
    now = f"it would write {instead} instead" if instead else "it plans nothing there now"
    return "refuse", f"its inputs changed since the plan: judged again, {write.rule} no longer plans this write ({now})"


# -- applying ----------------------------------------------------------------------------------------


def _record_owner(config: Config, state: StateDB, draw: OwnerChoice, owners: Owners) -> bool:
    """Record a plan's draw and charge its pool, once; False when the state holds another owner
    for the key (drawn since the plan), which the write must not overrule. An owner the state
    holds that Salesforce would refuse (deactivated since it was drawn: the plan drew again) is
    taken back first (`Owners.take_back`), as the plan's own cycle would have."""
    existing = state.assignment(draw.key)
    if existing is not None and existing.user_id != draw.user_id and DRAWN_AGAIN in draw.reason:
        owners.take_back(existing)  # the plan's draw replaced it: only if Salesforce would refuse it now
        existing = state.assignment(draw.key)
    if existing is not None:
        return existing.user_id == draw.user_id
    run_id, at = owners.run_id, owners.at
    state.record_assignment(replace(draw, run_id=run_id, at=at))
    pool = next((p for p in config.pools.values() if p.key == draw.pool), None)
    if pool is not None and not draw.fallback and draw.user_id is not None:
        state.save_credits(pool.key, charge(pool, state.credits(pool.key), draw.user_id, draw.candidates), draw.user_id)
    return True


def _malformed(config: Config, state: StateDB, report: CycleReport, found: list[RecordError], at: str) -> None:
    """The accounts this run read that the second look found malformed: reported, marked in the
    mirror and kept (`errors`), as a cycle would, so later cycles skip them quietly."""
    report.record_errors.extend(found)
    parser = parser_fingerprint(config)
    for error in found:
        state.mark_account_error(error.record_id, malformed_mark(error, parser))
    rows = [
        {"system": e.system, "record": e.record_id, "field": e.field, "message": e.message}
        for e in report.record_errors
    ]
    report.counts["record_errors"] = len(rows)
    state.record_errors(report.run_id, rows)
    state.remember_malformed(report.run_id, at, rows)
    state.forget_fixed()


def _queue(
    config: Config, state: StateDB, accepted: list[PlannedDraw], applied: Applied, fresh: _Fresh, at: str
) -> None:
    """Record the owners of the accepted writes and queue them, with what the read found
    malformed, in one transaction."""
    run_id = applied.cycle.run_id
    inactive, unknown = unavailable_users(mirrored_users(state), config)
    owners = Owners(config, state, inactive, Counter(), run_id, at, unknown)
    with state.atomic():
        _malformed(config, state, applied.cycle, fresh.malformed, at)
        for planned in accepted:
            if planned.draw is not None and not _record_owner(config, state, planned.draw, owners):
                holder = state.assignment(planned.draw.key)
                who = "another owner" if holder is None else f"{holder.name} (run {holder.run_id})"
                applied.refused.append(Refusal(planned.number, planned.write, f"{who} was drawn for it since the plan"))
                continue
            applied.owners += planned.draw is not None
            applied.sent.append(planned.write)
        applied.cycle.counts["queued"] = state.enqueue(applied.sent, run_id, at)


def _overtaken(state: StateDB, applied: Applied, numbers: Mapping[str, int]) -> None:
    """Writes the last look before sending dropped (a person changed the field in between)."""
    for row in state.outbox("superseded", confirmed_run=applied.cycle.run_id):
        if (row.last_error or "").startswith("a person changed"):
            number = numbers.get(write_key(row.write), 0)
            applied.refused.append(Refusal(number, row.write, f"{row.last_error} (the last look before writing)"))


def _sort(
    config: Config, state: StateDB, plan: Plan, scope: Scope, applied: Applied, fresh: _Fresh
) -> list[PlannedDraw]:
    """The selected writes the services and the rules still agree with; the others refused or
    counted as already there."""
    accepted = []
    for planned in plan.writes:
        if not scope.wants(planned.write):
            continue
        applied.selected += 1
        verdict, why = _judged(state, planned.write, fresh)
        if verdict == "send":
            accepted.append(planned)
        elif verdict == "already":
            applied.already += 1
        else:
            applied.refused.append(Refusal(planned.number, planned.write, why))
    return accepted


def apply_plan(
    config: Config,
    state: StateDB,
    plan: Plan,
    scope: Scope,
    *,
    vitally: VitallyPort,
    salesforce: SalesforcePort | None,
    clock: Callable[[], datetime],
    max_writes: int | None = None,
    hooks: Hooks | None = None,
    outlets: Outlets | None = None,
) -> Applied:
    """Apply the writes of `plan` that `scope` selects (see the module's docstring), on `state`
    (opened under the instance lock by the caller). `outlets`: Slack and Zendesk, by default as
    the config sets them up: the leads written are announced and support requests ticketed, as
    after a cycle's writes."""
    hooks = hooks or Hooks()
    with state.atomic():
        run_id = state.begin_run(iso(clock()), "apply", iso(plan.now))
    applied = Applied(CycleReport(run_id=run_id, dry_run=False, now=plan.now))
    report = applied.cycle
    report.plan = applied.sent
    status, error = "failed", None
    try:
        with state.atomic():
            ingest(
                state,
                vitally,
                salesforce,
                lookback_seconds=config.salesforce.lookback_seconds,
                reconcile_hours=config.salesforce.reconcile_hours,
                reconcile_max_share=config.salesforce.reconcile_max_share,
                report=report,
                hooks=hooks,
                objects=sf_objects(config.salesforce),
                vitally_reconcile=(config.vitally.reconcile_hours, config.vitally.reconcile_max_share),
                now=clock(),
            )
            relearn(config, state, report, hooks, clock())
        fresh = rejudge(config, plan, clock, run_id)
        accepted = _sort(config, state, plan, scope, applied, fresh)
        _queue(config, state, accepted, applied, fresh, iso(clock()))
        Applier(
            state, vitally, salesforce, report, write_workers=config.vitally.write_workers, clock=clock, hooks=hooks,
            max_writes=max_writes, only_run=run_id, closed=closed_statuses(config.policy), max_wait=config.max_waits,
            # A lead written is announced and a support request ticketed, as by a cycle.
            followups=FollowUps(state, config.announcements, config.zendesk, config.salesforce.instance_url),
            outlets=make_outlets(config) if outlets is None else outlets, outlet_settings=config.announcements,
        ).run()  # fmt: skip
        _overtaken(state, applied, {write_key(p.write): p.number for p in accepted})
        status = "ok" if applied.exit_code == 0 else "partial"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        counts = {**report.counts, "refused": len(applied.refused)}
        counts["already_there"] = counts.get("already_there", 0) + applied.already
        with state.atomic():
            state.finish_run(run_id, iso(clock()), status, counts, error)
    return applied
