"""What the steps of a cycle share: the cycle's report, the hooks its caller plugs in, the page.

A cycle (`sync.cycle`) reads (`sync.ingest`), plans (`sync.plan`) and applies (`sync.apply`);
each step adds what it counted, the record errors and conflicts it found and the writes that
failed to one `CycleReport`, and calls the caller's `Hooks`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import RecordError
from rules import Decision
from state import PlannedWrite
from sync.wire import Truncation

__all__ = ["PAGE", "RULE_ERRORS_SHOWN", "Conflict", "CycleReport", "Hooks", "Log", "Progress", "detached", "iso"]

RULE_ERRORS_SHOWN = 20  # per custom trigger and cycle; the rest are counted
PAGE = 1000  # records stored, decisions remembered, writes queued and sent per batch

Log = Callable[[str, Mapping[str, Any]], None]
"""`(event, data)`: one structured event of the cycle (`cycle_started`, `write_failed`, …)."""

Progress = Callable[[str, int, int | None], None]
"""`(phase, done, total or None)`: called a page at a time, for progress bars."""


def _quiet(event: str, data: Mapping[str, Any]) -> None:
    """No log."""


def _never() -> bool:
    return False


def _unseen(phase: str, done: int, total: int | None) -> None:
    """No progress shown."""


def _unwatched(report: CycleReport) -> None:
    """Nobody follows the cycle's counts."""


@dataclass(frozen=True)
class Hooks:
    """What a caller plugs into a cycle: where its events go, whether to stop (asked between
    records and writes: what is not done yet stays for the next start), progress, and
    `on_report(report)`: called once with the cycle's report as soon as it exists, so a watcher
    (the daemon's metrics) can read its counts as the cycle fills them in. Read it, never change it."""

    log: Log = _quiet
    should_stop: Callable[[], bool] = _never
    progress: Progress = _unseen
    on_report: Callable[[CycleReport], None] = _unwatched


@dataclass(frozen=True)
class Conflict:
    """A value a person changed since our last write (or set without us): reported, not
    overwritten (unless `overwritten`: the config said to replace it). `ours` is what the rule
    wants, `theirs` what the person's value is."""

    system: str
    record: str
    field: str
    ours: Any
    theirs: Any
    rule: str
    overwritten: bool = False


@dataclass
class CycleReport:
    """What one cycle did, filled in by its steps as it runs: the plan, what it counted (records
    read and evaluated, writes planned, queued, applied, failed, parked, deferred), the record
    errors and conflicts it found, the writes that failed, and the pools that fell back to their
    queue. `exit_code` is the command line's status for it."""

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
    # Custom triggers that could not be evaluated for an account (skipped for it), with the reason:
    # the first RULE_ERRORS_SHOWN of each trigger; `counts["rule_errors"]` counts them all.
    rule_errors: list[Decision] = field(default_factory=list)
    # Values cut to their Salesforce field's length, and what the cycle found about the state
    # itself (a lost state file re-learned from crm-sync's marks in the services).
    truncations: list[Truncation] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    # The state did not know crm-sync's own marks in the services: a task is looked up before it
    # is sent, so one that exists is never sent again.
    relearning: bool = False
    # Decisions worth remembering (fired, or stopped by a guard) not yet stored in the state.
    decisions: list[Decision] = field(default_factory=list)
    # Leads whose LLM verdict arrived after this cycle planned (`sync.triage.ask_llm`): the
    # daemon routes them at once through its event inbox, else the next cycle does.
    triaged: list[str] = field(default_factory=list)

    def rule_error(self, decision: Decision) -> None:
        """A custom trigger could not be evaluated for one account: counted, and kept to be shown
        unless RULE_ERRORS_SHOWN of the same trigger are already kept."""
        self.counts["rule_errors"] += 1
        if sum(1 for kept in self.rule_errors if kept.rule == decision.rule) < RULE_ERRORS_SHOWN:
            self.rule_errors.append(decision)

    @property
    def exit_code(self) -> int:
        """cli.md: 0 all applied (or a dry run); 1 some writes failed and wait to be retried."""
        if self.dry_run:
            return 0
        return 1 if self.counts.get("failed", 0) or self.counts.get("parked", 0) or self.quota_exhausted else 0


def iso(moment: datetime) -> str:
    """A moment as the state stores it: UTC, milliseconds, `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def detached(error: RecordError) -> RecordError:
    """A caught record error, kept for the report without its traceback and context: their frames
    hold the page of records being read, and would keep every such page alive until the end."""
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error
