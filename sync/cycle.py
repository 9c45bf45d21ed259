"""One sync cycle: ingest (read changes → mirror, cursors) → re-learn (only when the state does not
know crm-sync's own marks in the services: `sync.relearn`) → plan (decide every record of the
mirror → diff against what is there and what we last wrote → owners → outbox) → apply (outbox →
services → results).

Transactions, the cycle's guarantee of "exactly once":

- the run's row is written when it begins and updated when it finishes, each in a transaction
  of its own, whatever happened in between;
- ingest and plan share one transaction: the mirror, the cursors, the owners drawn, the outbox,
  the decisions, record errors and conflicts commit together or not at all. Asked to stop while
  reading, the cycle rolls it back before planning: the cursors did not move, so the next start
  reads the same changes again;
- apply commits each success (or batch of them) as it comes back, after the plan committed.

A dry run plans on a private copy of the state (`StateDB.snapshot`: a temporary file readable
only by its owner, deleted afterwards), queues nothing and applies nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from connectors.base import SalesforcePort, VitallyPort
from core.errors import StopRequested
from rules.context import closed_statuses
from state import PlanLog, StateDB
from sync.app import make_outlets
from sync.apply import Applier
from sync.config import Config
from sync.followups import FollowUps, Outlets
from sync.ingest import ingest, sf_objects
from sync.plan import Planner
from sync.relearn import relearn
from sync.scope import EVERYTHING, Scope
from sync.triage import ask_llm
from sync.vocabulary import CycleReport, Hooks, Log, Progress, iso

__all__ = ["run_cycle"]

_DEFAULTS = Hooks()


class _Stopped(Exception):
    """Asked to stop while reading: the cycle's transaction is rolled back."""


def run_cycle(
    config: Config,
    state: StateDB,
    vitally: VitallyPort,
    salesforce: SalesforcePort | None,
    *,
    clock: Callable[[], datetime],
    now: datetime | None = None,
    dry_run: bool = False,
    full: bool = False,
    log: Log = _DEFAULTS.log,
    should_stop: Callable[[], bool] = _DEFAULTS.should_stop,
    progress: Progress = _DEFAULTS.progress,
    on_report: Callable[[CycleReport], None] = _DEFAULTS.on_report,
    outlets: Outlets | None = None,
    scope: Scope = EVERYTHING,
    max_writes: int | None = None,
) -> CycleReport:
    """Run one cycle against these services and this state. Time is an input: `clock` gives the
    wall time (run history, cursors, when writes were done), `now` fixes the rules' "today"
    (defaults to the clock at the start). Without Salesforce, only Vitally is read and written.
    The plan judges only the accounts whose inputs, facts or clock window changed since they last
    planned nothing (`sync.incremental`); `full` judges every account.

    `log(event, data)` receives `cycle_started`, `write_failed`, `write_unanswered`, `quota_exhausted` and
    `cycle_finished`; `should_stop()` is asked between records and writes (what is not done stays
    for the next start); `progress(phase, done, total)` is called a page at a time; `on_report`
    receives the report as soon as it exists (its counts fill in as the cycle runs). `outlets` are
    Slack, Zendesk and the LLM (`sync.followups.Outlets`; by default as the config sets them up):
    their writes go after every CRM write, and the LLM is asked after them. `scope` limits
    what a dry run plans (`--account`, `--rule`); `max_writes` stops the apply step after that
    many writes, the rest staying pending (`--max-writes`)."""
    hooks = Hooks(log=log, should_stop=should_stop, progress=progress, on_report=on_report)
    if outlets is None:
        outlets = make_outlets(config)
    started = clock()
    cpu_started = time.process_time()  # the cycle's CPU, every thread of the process (`cycle_finished`)
    rules_now = now or started
    mode = "dry-run" if dry_run else "run"
    with state.atomic():
        run_id = state.begin_run(iso(started), mode, iso(rules_now))
    report = CycleReport(run_id=run_id, dry_run=dry_run, now=rules_now)
    hooks.on_report(report)
    hooks.log("cycle_started", {"run_id": run_id, "mode": mode, "now": iso(rules_now)})
    status, error = "failed", None
    try:
        _read_and_plan(
            config,
            state,
            vitally,
            salesforce,
            report,
            started=started,
            clock=clock,
            hooks=hooks,
            scope=scope,
            full=full,
        )
        if not dry_run:
            applier = Applier(
                state,
                vitally,
                salesforce,
                report,
                write_workers=config.vitally.write_workers,
                clock=clock,
                hooks=hooks,
                followups=_followups(config, state),
                outlets=outlets,
                outlet_settings=config.announcements,
                max_writes=max_writes,
                closed=closed_statuses(config.policy),
                max_wait=config.max_waits,
            )
            applier.run()
            if outlets.llm is not None and not hooks.should_stop():
                report.triaged = ask_llm(config, state, outlets.llm, report, clock=clock, hooks=hooks)
        status = "ok" if report.exit_code == 0 else "partial"
    except (_Stopped, StopRequested):  # asked to stop while reading: rolled back, nothing planned
        status = "stopped"
        report.plan = []
        report.record_errors.clear()
        report.conflicts.clear()
        report.rule_errors.clear()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        with state.atomic():
            state.finish_run(run_id, iso(clock()), status, dict(report.counts), error)
        hooks.log("cycle_finished", _finished(run_id, status, report.counts, time.process_time() - cpu_started))
    return report


def _read_and_plan(
    config: Config,
    state: StateDB,
    vitally: VitallyPort,
    salesforce: SalesforcePort | None,
    report: CycleReport,
    *,
    started: datetime,
    clock: Callable[[], datetime],
    hooks: Hooks,
    scope: Scope,
    full: bool = False,
) -> None:
    """Ingest and plan in one transaction. What was read goes into the mirror page by page and the
    plan into the outbox batch by batch: the planned writes and the state that caused them commit
    together, and memory does not grow with the number of accounts."""
    with state.atomic():
        plan = PlanLog(state, report.run_id, iso(started), queue=not report.dry_run)
        report.plan = plan
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
        if hooks.should_stop():
            raise _Stopped  # rolls the transaction back; nothing is lost
        relearn(config, state, report, hooks, clock())
        planner = Planner(
            config, state, report, plan, now=report.now, clock=clock, progress=hooks.progress, scope=scope, full=full
        )
        planner.followups = _followups(config, state)
        planner.run()


def _followups(config: Config, state: StateDB) -> FollowUps:
    return FollowUps(state, config.announcements, config.zendesk, config.salesforce.instance_url)


def _finished(run_id: int, status: str, counts: Mapping[str, int], cpu_seconds: float) -> dict[str, Any]:
    return {"run_id": run_id, "status": status, **counts, "cpu_seconds": round(cpu_seconds, 3)}
