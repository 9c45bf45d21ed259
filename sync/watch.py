"""A running cycle, watched: the daemon's `cycle_progress` log lines and live metrics.

`CycleWatch` plugs into a cycle's hooks (`progress`, `on_report`) and the connectors' waits
(`sync.app.OnWait`). Every progress call tells `Health` that the cycle acknowledged work (so
`/healthz` says `progressing`, not `stalled`), at most every second it moves the metrics (the
phase's gauges, the writes counted so far, the outbox depth and API usage that `refresh` reads),
and every `every_seconds`, and once when a phase ends, it logs one line:

    {"event": "cycle_progress", "run_id": 7, "phase": "writes sent", "done": 4012, "total": 19626,
     "percent": 20.4, "elapsed_seconds": 242.7, "rate_per_second": 16.53, "eta_seconds": 944,
     "finished": false, "waits": {"vitally.rate_limit": {"count": 4, "seconds": 201.3, "longest_seconds": 54.9}}}

The rate is the phase's average since it began (a rate-limited phase moves in bursts, so a
shorter window would swing with them), the ETA the rest at that rate: only where the total is
known (Vitally does not say how many accounts it holds), and only once the phase has run a minute
(Vitally's rate-limit window: its first ~1,000 requests go at once, which would make an earlier
rate too fast) or done a tenth of its work; null before. `waits` are the connectors' waits since
the previous line, by service and reason; `seconds` adds up every waiting thread's wait.

A phase ends when its count reaches its total, when the next phase begins, or with the cycle;
calls for a phase that has ended are ignored. Counts reach the metrics as increments, and
`unreported` tells the daemon what is left to add when the cycle is over, so nothing is counted
twice. The main thread makes every call but `waited`, which any connector thread may make.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync.health import WRITE_KINDS, Health
from sync.vocabulary import CycleReport, Log

__all__ = ["CycleWatch", "metric_phase"]

_METRICS_EVERY_SECONDS = 1.0  # the live metrics move at most this often (a PUT answers every 60 ms)
# An ETA needs a rate that has seen a whole rate-limit window (Vitally's is a minute: ~1,000
# requests go at once, then it waits) or a tenth of the work; before that it would be a guess.
_SETTLE_SECONDS = 60.0
_SETTLE_SHARE = 0.1
_COUNTED = (*WRITE_KINDS, "record_errors", "conflicts")


def metric_phase(label: str) -> str:
    """A phase's metric label: "Salesforce Lead read" → "salesforce_lead_read"."""
    return "_".join(label.lower().split())


@dataclass
class _Phase:
    label: str
    started: float
    last_at: float
    done: int = 0
    total: int | None = None
    finished: bool = False

    def rate(self) -> float | None:
        elapsed = self.last_at - self.started
        return self.done / elapsed if elapsed > 0 and self.done > 0 else None

    def eta(self) -> float | None:
        if self.total is None:
            return None
        if self.finished or self.done >= self.total:
            return 0.0
        settled = self.last_at - self.started >= _SETTLE_SECONDS or self.done >= _SETTLE_SHARE * self.total
        rate = self.rate()
        return None if rate is None or not settled else (self.total - self.done) / rate


@dataclass
class _Waits:
    count: int = 0
    seconds: float = 0.0
    longest: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        self.longest = max(self.longest, seconds)


@dataclass
class _Cycle:
    started: float
    counts: Mapping[str, int] = field(default_factory=dict)
    phases: dict[str, _Phase] = field(default_factory=dict)
    current: _Phase | None = None
    last_call: float = 0.0
    last_line: float = 0.0
    last_metrics: float = float("-inf")


class CycleWatch:
    """Turns a cycle's progress into log lines, metrics and health (see the module docstring).

    `refresh()` reads what only the main thread may read (the outbox depth from the state, the
    API usage from the connectors) and hands it to `health`. `clock` is monotonic seconds."""

    def __init__(
        self,
        health: Health,
        log: Log,
        *,
        every_seconds: float,
        refresh: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.health = health
        self.log = log
        self.every_seconds = every_seconds
        self.refresh = refresh
        self.clock = clock
        self._cycle = _Cycle(started=clock())
        self._counted: dict[str, int] = {}
        self._waits: dict[str, _Waits] = {}
        self._waits_lock = threading.Lock()

    # -- the cycle's hooks -------------------------------------------------------------------------

    def begin(self, report: CycleReport) -> None:
        """`on_report`: a cycle begins; its counts are read from `report` as they fill in."""
        now = self.clock()
        self._cycle = _Cycle(started=now, counts=report.counts, last_call=now, last_line=now)
        self._counted = {}
        self.health.cycle_started()

    def progress(self, label: str, done: int, total: int | None) -> None:
        """`progress`: `done` of `total` (None: unknown) in the phase `label`."""
        now = self.clock()
        cycle = self._cycle
        phase = cycle.phases.get(label)
        if phase is None:
            self._end_phase(cycle.current)
            phase = cycle.phases[label] = _Phase(label, started=cycle.last_call, last_at=now)
            cycle.current = phase
        cycle.last_call = now
        self.health.progressed(label)
        if phase.finished:
            return
        phase.done, phase.total, phase.last_at = done, total, now
        if total is not None and done >= total:
            self._end_phase(phase)
        elif now - cycle.last_line >= self.every_seconds:
            self._line(phase)
        if now - cycle.last_metrics >= _METRICS_EVERY_SECONDS:
            self._metrics(phase)

    def waited(self, service: str, reason: str, seconds: float) -> None:
        """`sync.app.OnWait`: a connector begins a wait (any thread)."""
        self.health.record_wait(service, reason, seconds)
        with self._waits_lock:
            self._waits.setdefault(f"{service}.{reason}", _Waits()).add(seconds)

    # -- the end of a cycle ------------------------------------------------------------------------

    def end(self) -> None:
        """The cycle's work is over (whatever happened): the phase under way ends, and its last
        line is logged. /healthz still says the cycle runs until `Health.record_cycle` (or
        `Health.cycle_ended`) says how it ended, in one step with its success."""
        self._end_phase(self._cycle.current)
        self._add_counts()

    def unreported(self, counts: Mapping[str, int]) -> dict[str, int]:
        """The part of the cycle's final `counts` not yet added to the metrics."""
        return {kind: int(value) - self._counted.get(kind, 0) for kind, value in counts.items()}

    # -- inside ----------------------------------------------------------------------------------

    def _end_phase(self, phase: _Phase | None) -> None:
        if phase is None or phase.finished:
            return
        phase.finished = True
        self._line(phase)
        self._metrics(phase)

    def _line(self, phase: _Phase) -> None:
        self._cycle.last_line = self.clock()
        rate, eta = phase.rate(), phase.eta()
        line: dict[str, Any] = {
            "phase": phase.label,
            "done": phase.done,
            "total": phase.total,
            "percent": None if not phase.total else round(100 * phase.done / phase.total, 1),
            "elapsed_seconds": round(phase.last_at - phase.started, 1),
            "rate_per_second": None if rate is None else round(rate, 2),
            "eta_seconds": None if eta is None else round(eta),
            "finished": phase.finished,
            "waits": self._drain_waits(),
        }
        self.log("cycle_progress", line)

    def _drain_waits(self) -> dict[str, dict[str, float]]:
        with self._waits_lock:
            waits, self._waits = self._waits, {}
        return {
            key: {"count": w.count, "seconds": round(w.seconds, 1), "longest_seconds": round(w.longest, 1)}
            for key, w in sorted(waits.items())
        }

    def _metrics(self, phase: _Phase) -> None:
        self._cycle.last_metrics = self.clock()
        eta = phase.eta()
        self.health.record_phase(metric_phase(phase.label), phase.done, phase.total, eta)
        self._add_counts()
        self.refresh()

    def _add_counts(self) -> None:
        """What the cycle counted since the last call, added to the metrics."""
        counts = self._cycle.counts
        new = {kind: counts.get(kind, 0) - self._counted.get(kind, 0) for kind in _COUNTED}
        new = {kind: n for kind, n in new.items() if n > 0}
        if new:
            self.health.add_writes(new)
            for kind, n in new.items():
                self._counted[kind] = self._counted.get(kind, 0) + n
