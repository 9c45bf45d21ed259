"""`daemon`: a cycle on the configured schedule until stopped.

A failing cycle is logged and counted and never kills the loop (the one catch-all of the
program). SIGTERM or SIGINT lets the current unit of work finish, commits, and exits 0.
Logs are one JSON object per line on stderr, never a secret; every event of a cycle carries its
run id.

Stopping is bounded. The adapters sleep through `connectors.http.interruptible_sleep`: a retry
wait (a 429's `RateLimit-Reset: 120`, a backoff) or a rate-limiter wait ends within 0.1 s of the
signal and no new attempt starts; the write waited on stays pending. A request already on the wire
(up to `timeout_seconds`, 30 s for Salesforce) is given until `STOP_GRACE_SECONDS` after the
signal to come back; past that the process ends anyway (`os._exit(0)`, after a `daemon_stopped`
event with `"abandoned": true`). That is as safe as a kill -9, which the chaos tests prove: every
commit is durable (WAL, synchronous=FULL), the write whose answer never came stays pending, and
the next start sends it again idempotently (PUT of traits, upsert on `Sync_Key__c` or
`externalId`, update by Id), so it lands once.

The signal handler only records the signal: it takes no lock and writes nothing. A handler
runs in the main thread between two bytecodes, or inside a system call the signal interrupted,
so one that logged (or set a `threading.Event`, which takes a lock) would deadlock when the
signal lands while the main thread holds that lock, e.g. blocked writing a log line to a full
stderr pipe. The main thread logs `stopping` when it notices.

`/healthz`, `/livez` and `/metrics` (`sync.health`) are served on `[daemon]
health_host:health_port` once the instance lock is held, so a second instance exits 4 without
binding. A port that cannot be bound is logged (`health_unavailable`) and the cycles go on. While
a cycle runs, `sync.watch.CycleWatch` logs its progress (`cycle_progress`) and moves the metrics;
the main thread reads the state and the connectors (during the cycle, at most every second, and
after it) and hands the numbers to `Health`; the HTTP thread never touches the SQLite connection.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, TextIO
from wsgiref.types import WSGIApplication

import schedule

from connectors.http import interruptible_sleep
from connectors.salesforce import SalesforceClient
from connectors.vitally import VitallyClient
from core.errors import (
    AuthError,
    ContractError,
    QuotaExhaustedError,
    RetriableError,
    SyncError,
    UnreachableError,
)
from state import StateDB, StateLock
from state.events import Event, EventInbox, EventNotQueuedError, QueuedEvents
from sync.app import Sleep
from sync.config import Config
from sync.cycle import run_cycle
from sync.health import OUTCOMES, Health, HealthServer, Outcome, request_deadline, serve
from sync.minicycle import run_mini_cycle
from sync.notify import Notifier
from sync.receiver import EventMetrics, Receiver
from sync.vocabulary import CycleReport, iso
from sync.watch import CycleWatch

__all__ = ["run_daemon"]

_NAP_SECONDS = 0.2
STOP_GRACE_SECONDS = 3.0  # after SIGTERM, the most a request in flight may delay the exit
# What the caller should make of a failed cycle, for `cycle_failed` and /healthz (most specific first).
_ERROR_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (AuthError, "auth"),
    (UnreachableError, "unreachable"),
    (ContractError, "contract"),
    (RetriableError, "retriable"),
    (QuotaExhaustedError, "quota"),
    (SyncError, "sync"),
)


class _JsonLog:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def __call__(self, event: str, data: Any, *, wait: float = -1) -> None:
        """Write one event; with `wait` ≥ 0, give up after that many seconds if another thread
        holds the log (blocked on a full pipe): the stop watchdog must never hang on it."""
        line = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **dict(data)}
        if not self.lock.acquire(timeout=wait):
            return
        try:
            self.out.write(json.dumps(line, default=str) + "\n")
            self.out.flush()
        finally:
            self.lock.release()


class _RunLog:
    """The log of one cycle: every event carries the cycle's run id, learnt from the cycle's
    `cycle_started`, the daemon's own (`cycle_failed`, `metrics_stale`) included. Before that,
    e.g. when the run could not even be recorded, the id is null. `observe(event, data)` sees each
    event just before it is logged (the watch, the notifier and the quota counter follow the cycle)."""

    def __init__(self, log: _JsonLog, observe: Callable[[str, Mapping[str, Any]], None]) -> None:
        self._log = log
        self._observe = observe
        self.run_id: int | None = None

    def __call__(self, event: str, data: Mapping[str, Any]) -> None:
        if event == "cycle_started":
            self.run_id = int(data["run_id"])
        self._observe(event, data)  # before it is logged: `cycle_finished` ends the watched phase first
        self._log(event, {"run_id": self.run_id, **data})


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _error_kind(error: Exception) -> str:
    return next((kind for cls, kind in _ERROR_KINDS if isinstance(error, cls)), "internal")


def _api_usage(vitally: VitallyClient, salesforce: SalesforceClient) -> dict[str, float]:
    """The share of each service's allowance used, as of the last response seen (unknown: absent)."""
    usage: dict[str, float] = {}
    limit, remaining = vitally.rate_limit_limit, vitally.rate_limit_remaining
    if limit and remaining is not None:
        usage["vitally"] = 1 - remaining / limit
    daily = salesforce.api_usage()
    if daily is not None and daily[1] > 0:
        usage["salesforce"] = daily[0] / daily[1]
    return usage


def _finished_run(state: StateDB, run_id: int | None) -> tuple[Outcome, dict[str, int]]:
    """The outcome and counts the cycle recorded for `run_id` (even when the cycle raised, the
    writes it made are counted); `failed` with no counts when the run was never recorded."""
    latest = state.runs(1) if run_id is not None else []
    if not latest or latest[0]["id"] != run_id:
        return "failed", {}
    status = latest[0]["status"]
    outcome: Outcome = next((o for o in OUTCOMES if o == status), "failed")
    return outcome, {str(k): int(v) for k, v in latest[0]["counts"].items()}


def _serve_health(
    health: Health, config: Config, log: _JsonLog, events: WSGIApplication | None = None
) -> HealthServer | None:
    """Serve /healthz and /metrics (and the event receiver, when configured) unless `health_port`
    is 0; a bind error is logged, not fatal."""
    if not config.health_port:
        return None
    where = {"host": config.health_host, "port": config.health_port}
    try:
        deadline = request_deadline(config.events.queue_wait_seconds)
        server = serve(health, config.health_host, config.health_port, events, log=log, request_deadline=deadline)
    except OSError as exc:
        log("health_unavailable", {**where, "error": str(exc)})
        return None
    log("health_serving", where)
    return server


class _Cycles:
    """The daemon's job: one cycle, watched while it runs (`CycleWatch`), then counted in the
    metrics and /healthz. A failed cycle is logged and counted, never raised."""

    def __init__(
        self, config: Config, state: StateDB, log: _JsonLog, should_stop: Callable[[], bool], sleep: Sleep
    ) -> None:
        from sync.app import make_outlets, make_salesforce, make_vitally, package_version

        self.config = config
        self.state = state
        self.log = log
        self.should_stop = should_stop
        self.stats = {"cycles": 0, "failures": 0}
        self.health = Health(
            config.healthy_within_seconds, version=package_version(), stalled_after_seconds=config.stalled_after_seconds
        )
        every = config.daemon.progress_log_seconds
        self.watch = CycleWatch(self.health, log, every_seconds=every, refresh=self.refresh)
        self.vitally = make_vitally(config, sleep=sleep, on_wait=self.watch.waited)
        self.salesforce = make_salesforce(config, sleep=sleep, on_wait=self.watch.waited)
        # Slack, Zendesk and the LLM, made once with the same interruptible sleep: a stop asked
        # during a Zendesk retry's wait ends it, as it ends the CRM clients' waits.
        self.outlets = make_outlets(config, sleep=sleep)
        self.notifier = Notifier(config.alerts, log, counted=self.health.count_alert)
        self.report: CycleReport | None = None  # the last cycle's, once it began

    def _began(self, report: CycleReport) -> None:
        self.report = report
        self.watch.begin(report)

    def triaged(self) -> list[str]:
        """The leads the last cycle's LLM verdicts arrived for after it planned (`sync.triage`)."""
        return [] if self.report is None else list(self.report.triaged)

    def _observe(self, event: str, data: Mapping[str, Any]) -> None:
        """Every event of the running cycle, as it is logged."""
        self.notifier.observe(event, data)
        if event == "quota_exhausted":
            self.health.quota_stopped()
        elif event == "cycle_finished":
            self.watch.end()  # the phase under way ends with the cycle, and says so before it

    def refresh(self) -> None:
        """The outbox depth and the API usage, to the metrics (main thread only: it reads the state)."""
        self.health.record_state(outbox=self.state.outbox_counts(), api_usage=_api_usage(self.vitally, self.salesforce))

    def __call__(self) -> None:
        self.report = None  # a cycle that fails before it begins leaves no verdicts to route
        run_log = _RunLog(self.log, self._observe)
        self.watch.log = run_log
        self.notifier.log = run_log
        started = time.monotonic()
        error_kind: str | None = None
        try:
            run_cycle(
                self.config,
                self.state,
                self.vitally,
                self.salesforce,
                clock=_wall_clock,
                log=run_log,
                should_stop=self.should_stop,
                progress=self.watch.progress,
                on_report=self._began,
                outlets=self.outlets,
            )
        except Exception as exc:  # the job wrapper: a failed cycle never kills the loop
            error_kind = _error_kind(exc)
            self.stats["failures"] += 1
            error = str(exc) if isinstance(exc, AuthError) else f"{type(exc).__name__}: {exc}"
            run_log("cycle_failed", {"error": error, "kind": error_kind})
        finally:
            self.watch.end()
        self.stats["cycles"] += 1
        self._record(run_log, time.monotonic() - started, error_kind)

    def _record(self, run_log: _RunLog, duration: float, error_kind: str | None) -> None:
        """The finished cycle, as the state recorded it, to the metrics and /healthz."""
        try:
            outcome, counts = _finished_run(self.state, run_log.run_id)
            outbox = self.state.outbox_counts()
        except sqlite3.Error as exc:  # this cycle is missing from the metrics; /healthz sees no success
            self.health.cycle_ended()
            run_log("metrics_stale", {"error": f"{type(exc).__name__}: {exc}"})
            return
        if outcome == "partial" and error_kind is None:
            error_kind = "writes"  # some writes failed, were parked or were held back by the quota
        unreported = self.watch.unreported(counts)
        self.health.record_cycle(outcome, duration_seconds=duration, counts=unreported, error_kind=error_kind)
        self.health.record_state(outbox=outbox, api_usage=_api_usage(self.vitally, self.salesforce))
        self.notifier.cycle_done(run_log.run_id, outcome, counts, error_kind=error_kind, outbox=outbox)


class _Events:
    """The event receiver (`sync.receiver`, on the health listener) and the mini-cycles that
    process what it stored (`sync.minicycle`), run by the daemon's main thread between cycles:
    one writer to the state at a time. Events wait until a cycle has read the services once (the
    mirror and the pools' capacity counts the mini-cycles plan against); once one has, events
    still pending when the daemon starts (stored, or being processed, when it was killed) are
    processed before its first cycle. A batch that fails is
    retried after a pause that doubles (1 s to a minute); events are kept a week after they were
    processed (Salesforce may repeat a delivery for 24 hours)."""

    def __init__(
        self, config: Config, state: StateDB, cycles: _Cycles, log: _JsonLog, should_stop: Callable[[], bool]
    ) -> None:
        self.config = config
        self.state = state
        self.cycles = cycles
        self.log = log
        self.should_stop = should_stop
        self.wake = threading.Event()
        self.metrics = EventMetrics(cycles.health.registry)
        self._pause = 0.0
        self._retry_at = 0.0
        self.inbox: EventInbox | None = None
        self.app: Receiver | None = None
        if config.events.enabled:
            self.inbox = EventInbox(config.state_path, wait_seconds=config.events.queue_wait_seconds)
            self.app = Receiver(config.events, self.inbox, log, wake=self.wake.set, metrics=self.metrics)

    def wait(self, seconds: float) -> None:
        """Nap until `seconds` pass or the receiver stores an event."""
        self.wake.wait(seconds)

    def process(self) -> None:
        """Mini-cycles for the stored events, a batch at a time, until none is left (or a stop
        is asked, or a batch failed: it is tried again after the pause).

        The receiver's wake-up is taken first, whatever follows: the main loop calls this after
        every nap, so events that must wait (a retry pause, no cycle yet) are looked at again
        then; left set, it would cut every nap short and spin the loop until they can go."""
        if self.app is None:
            return
        self.wake.clear()
        if time.monotonic() < self._retry_at:
            return
        if self.state.cursor("vitally.accounts") is None:
            return  # no cycle has read the services yet: the events wait for one
        while not self.should_stop():
            queued = self.state.pending_events(self.config.events.batch)
            if not queued or not self._batch(queued):
                return

    def _batch(self, queued: list[QueuedEvents]) -> bool:
        cycles = self.cycles
        try:
            report = run_mini_cycle(
                self.config,
                self.state,
                cycles.vitally,
                cycles.salesforce,
                queued,
                clock=_wall_clock,
                log=self.log,
                should_stop=self.should_stop,
                outlets=cycles.outlets,
            )
        except Exception as exc:  # like a failed cycle: logged, retried, never the end of the loop
            self._pause = min(60.0, max(1.0, 2 * self._pause))
            self._retry_at = time.monotonic() + self._pause
            error = str(exc) if isinstance(exc, AuthError) else f"{type(exc).__name__}: {exc}"
            self.log("event_cycle_failed", {"error": error, "kind": _error_kind(exc), "retry_seconds": self._pause})
            self._counted(queued, "failed")
            return False
        self._pause = 0.0
        cycles.health.add_writes(report.counts)
        usage = _api_usage(cycles.vitally, cycles.salesforce)
        cycles.health.record_state(outbox=self.state.outbox_counts(), api_usage=usage)
        self._counted(queued, "done")
        return True

    def _counted(self, queued: list[QueuedEvents], outcome: str) -> None:
        """Count the records whose events just ended (`failed` only once given up)."""
        statuses = dict(self.state.event_statuses([q.last_id for q in queued]))
        for q in queued:
            status = statuses.get(q.last_id)
            if status in ("done", "failed") and (outcome == "done" or status == "failed"):
                self.metrics.processed.labels(q.source, status).inc()

    def after_cycle(self, triaged: Sequence[str] = ()) -> None:
        """Queue the leads whose LLM verdict the cycle just received (`triaged`) as events of their
        own: their mini-cycle routes them now, not a cycle later (a demo request is worth most in
        its first minutes). Forget events processed more than a week ago."""
        if self.inbox is not None and triaged:
            at = iso(datetime.now(UTC))
            try:
                self.inbox.put([Event(f"llm-verdict:{lead}:{at}", "salesforce", lead) for lead in triaged], at)
                self.wake.set()
            except EventNotQueuedError as exc:  # the next cycle routes them
                self.log("event_not_queued", {"records": len(triaged), "error": str(exc)})
        if self.app is not None:
            week_ago = datetime.now(UTC) - timedelta(days=7)
            with self.state.atomic():
                self.state.purge_events(iso(week_ago))

    def close(self) -> None:
        if self.inbox is not None:
            self.inbox.close()


def _stop_watchdog(
    signalled: list[float], finished: threading.Event, log: _JsonLog, exit_now: Callable[[int], None]
) -> None:
    """Ends the process `STOP_GRACE_SECONDS` after the first signal if `run_daemon` has not
    returned by then (a request in flight that does not come back)."""
    while not signalled:
        if finished.wait(_NAP_SECONDS):
            return
    if finished.wait(max(0.0, signalled[0] + STOP_GRACE_SECONDS - time.monotonic())):
        return
    log("daemon_stopped", {"abandoned": True, "grace_seconds": STOP_GRACE_SECONDS}, wait=0.5)
    exit_now(0)


def run_daemon(
    config: Config, err: TextIO, *, max_cycles: int | None = None, exit_now: Callable[[int], None] = os._exit
) -> int:
    """Run cycles every `config.interval_seconds` until SIGTERM/SIGINT (or `max_cycles`); after a
    signal the process ends within `STOP_GRACE_SECONDS` (`exit_now`, see the module docstring)."""
    log = _JsonLog(err)
    received: list[int] = []  # appended by the handler: no lock, no I/O
    signalled: list[float] = []  # when (monotonic), likewise
    noticed: list[int] = []
    finished = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        signalled.append(time.monotonic())

    def should_stop() -> bool:
        if received and not noticed:
            noticed.append(received[0])
            log("stopping", {"signal": signal.Signals(received[0]).name})
        return bool(received)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watchdog = threading.Thread(
        target=_stop_watchdog, args=(signalled, finished, log, exit_now), name="stop-watchdog", daemon=True
    )
    watchdog.start()
    try:
        return _serve(config, log, should_stop, max_cycles)
    finally:
        finished.set()


def _serve(config: Config, log: _JsonLog, should_stop: Callable[[], bool], max_cycles: int | None) -> int:
    sleep = interruptible_sleep(should_stop)  # retry and rate-limit waits end when a stop is asked
    with StateLock(config.state_path):
        state = StateDB.open(config.state_path)
        cycle = _Cycles(config, state, log, should_stop, sleep)
        events = _Events(config, state, cycle, log, should_stop)
        stats, health = cycle.stats, cycle.health

        def scheduled() -> None:
            cycle()
            events.after_cycle(cycle.triaged())

        scheduler = schedule.Scheduler()
        scheduler.every(max(1, round(config.interval_seconds))).seconds.do(scheduled)
        log("daemon_started", {"interval_seconds": config.interval_seconds, "state": str(config.state_path)})
        server = _serve_health(health, config, log, events.app)
        try:
            health.record_state(outbox=state.outbox_counts(), api_usage={})  # what an earlier run left
            # Events a killed process stored or was processing are finished first: a cycle of a
            # large book would keep them (and the writes they planned) waiting for minutes.
            events.process()
            scheduled()
            while not should_stop() and (max_cycles is None or stats["cycles"] < max_cycles):
                scheduler.run_pending()
                events.process()  # between cycles, in this thread: one writer to the state at a time
                health.progressed()  # the loop is alive between cycles (/livez)
                idle = scheduler.idle_seconds
                # A signal does not cut a nap short (PEP 475): short naps bound how late it is seen.
                events.wait(min(_NAP_SECONDS, max(idle or 0.0, 0.05)))
        finally:
            cycle.notifier.close()
            if server is not None:
                server.close()
            events.close()
            state.close()
    log("daemon_stopped", stats)
    return 0
