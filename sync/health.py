"""The daemon's `/healthz`, `/livez` and `/metrics` (Prometheus text).

`Health` holds what the endpoints show: a registry of its own (never prometheus_client's global
one) and the few facts `/healthz` needs. The daemon's threads write to it with numbers they have
already read from the state and the connectors (the main thread during and after each cycle, the
connectors' workers when they wait); the HTTP thread only reads it. So the HTTP thread never
touches the SQLite connection (one per thread) or a client.

`/healthz` tells a cycle that is progressing from one that is stuck:

- while a cycle runs: 200 `progressing` as long as it acknowledged work (a page read, a batch of
  accounts evaluated, a write answered) less than `stalled_after_seconds` ago, however long the
  cycle has run (a first sync takes hours); 503 `stalled` once nothing has progressed for that long;
- between cycles: 200 `ok` while the last successful cycle finished less than
  `healthy_within_seconds` ago, 503 `unhealthy` otherwise; before the first success, 200
  `starting` until `healthy_within_seconds` have passed since the daemon started.

A cycle succeeds when it runs to its end (outcome `ok`, or `partial`: some writes failed and wait
to be retried or were parked, which the metrics count). `/livez` answers 503 only when the daemon
is stuck (a cycle `stalled`, or its loop silent for `stalled_after_seconds`): what a restart can
fix, unlike a service that refuses the credentials. No endpoint shows a secret, a URL or an error
message: only the kind of the latest error.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import Any, Literal, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, make_wsgi_app

from sync.throttle import Throttled

__all__ = [
    "OUTCOMES",
    "WAIT_REASONS",
    "WRITE_KINDS",
    "Health",
    "HealthServer",
    "Outcome",
    "make_app",
    "request_deadline",
    "serve",
]

Outcome = Literal["ok", "partial", "failed", "stopped"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "partial", "failed", "stopped")
_SUCCESSES = frozenset({"ok", "partial"})
# Counts of the cycle's report (CycleReport.counts) added to crm_sync_writes_total{kind}.
WRITE_KINDS = ("vitally_puts", "salesforce_writes", "applied", "failed", "parked", "queued")
_OUTBOX_STATUSES = ("pending", "parked")
# Why a connector waited: its rate limiter held a request back, or a failed attempt backed off.
WAIT_REASONS = ("rate_limit", "retry")
_SERVICES = ("vitally", "salesforce")
_HANDLER_TIMEOUT_SECONDS = 10  # a client that connects and sends nothing is dropped after this
_MAX_CONNECTIONS = 64  # connections served at once; one more goes to the probes' reserve
# Connections kept for the probes and the scrapes (a GET of /healthz, /livez or /metrics) beyond
# _MAX_CONNECTIONS: a flood of webhooks at the cap must not fail a liveness probe (Kubernetes
# would restart a daemon that is only busy). Any other request on one is answered 503.
_PROBE_RESERVE = 8
_PROBES = frozenset({"/healthz", "/livez", "/metrics"})
_RESERVED = "crm_sync.reserved"  # the WSGI environ key: this request came on a reserved connection
# A body read and dropped before a 503 on a reserved connection (at most the receiver's limit): a
# connection closed with unread data is reset, and its sender saw a broken pipe, not the 503.
_DRAINED_BYTES = 1 << 20
# A connection's whole life by default: a webhook waits up to [events] queue_wait_seconds (20 by
# default, at most 55) for the inbox, after reads of up to _HANDLER_TIMEOUT_SECONDS each.
_REQUEST_DEADLINE_SECONDS = 45


def request_deadline(queue_wait_seconds: float) -> float:
    """How long a connection may stay open when a webhook may wait `queue_wait_seconds` for the
    inbox: that wait, two reads' timeouts and 5 s more (45 s for the default 20)."""
    return queue_wait_seconds + 2 * _HANDLER_TIMEOUT_SECONDS + 5


_LISTEN_BACKLOG = 128  # connections the kernel holds until they are accepted (socketserver's default: 5)
_PROBLEMS_LOGGED = 20  # `listener_busy` and `listener_error` lines a minute at most; the rest are counted
_POLL_SECONDS = 0.1  # how often the server thread notices `close()`
_Log = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class _Success:
    monotonic: float  # for the age: immune to wall-clock steps
    wall: float  # for display and crm_sync_last_success_timestamp_seconds


class Health:
    """What `/healthz` and `/metrics` show, updated by the daemon's main thread after each cycle.

    `clock` (monotonic seconds) and `wall_clock` (Unix seconds) are inputs, so tests need no
    real waiting. The constructor's moment is the daemon's start for the first cycle's grace.
    """

    def __init__(
        self,
        healthy_within_seconds: float,
        *,
        version: str,
        stalled_after_seconds: float = 900,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.healthy_within_seconds = healthy_within_seconds
        self.stalled_after_seconds = stalled_after_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()  # the facts below are written by one thread, read by another
        self._started = clock()
        self._last_success: _Success | None = None
        self._cycles = 0
        self._last_error_kind: str | None = None
        self._running = False
        self._phase: str | None = None
        self._last_progress = self._started  # a cycle's acknowledged work, or the idle loop's tick

        self.registry = CollectorRegistry()
        registry = self.registry
        Info("crm_sync", "crm-sync build information.", registry=registry).info({"version": version})
        Gauge("crm_sync_up", "1 while the crm-sync daemon runs.", registry=registry).set(1)
        self._cycles_total = Counter(
            "crm_sync_cycles_total",
            "Sync cycles finished, by outcome (ok, partial: some writes failed or were parked, "
            "failed: the cycle ended on an error, stopped: asked to stop while reading).",
            ["outcome"],
            registry=registry,
        )
        self._last_success_at = Gauge(
            "crm_sync_last_success_timestamp_seconds",
            "Unix time the last successful (ok or partial) cycle finished; 0 before the first.",
            registry=registry,
        )
        self._duration = Gauge(
            "crm_sync_last_cycle_duration_seconds", "How long the last cycle took.", registry=registry
        )
        self._writes = Counter(
            "crm_sync_writes_total",
            "Writes by kind: vitally_puts and salesforce_writes are requests sent; applied, failed "
            "(transient, retried next cycle), parked (refused for good) and queued are outbox rows.",
            ["kind"],
            registry=registry,
        )
        self.listener_refused = Counter(
            "crm_sync_listener_refused_total",
            "Connections the listener turned away: closed at once beyond its cap and its probes' "
            "reserve (closed), or a request other than a probe's on a reserved one, answered 503 "
            "(reserved). A Vitally webhook turned away is not sent again (the next cycle reads its "
            "change); Salesforce sends its message again.",
            ["reason"],
            registry=registry,
        )
        for reason in ("closed", "reserved"):
            self.listener_refused.labels(reason)
        self._record_errors = Counter(
            "crm_sync_record_errors_total",
            "Malformed records reported by cycles (each is reported once).",
            registry=registry,
        )
        self._conflicts = Counter(
            "crm_sync_conflicts_total",
            "Conflicts found by cycles: values a person changed since our last write (one left "
            "alone is found again by every cycle).",
            registry=registry,
        )
        self._outbox = Gauge(
            "crm_sync_outbox_depth",
            "Outbox rows by status after the last cycle: pending (to send) and parked (see `failed`).",
            ["status"],
            registry=registry,
        )
        self._api_usage = Gauge(
            "crm_sync_api_usage_ratio",
            "Share of the API allowance used, by service, from the last response seen: Vitally "
            "1 - RateLimit-Remaining / RateLimit-Limit, Salesforce daily used / max (Sforce-Limit-Info).",
            ["service"],
            registry=registry,
        )
        self._define_live_metrics()
        for outcome in OUTCOMES:
            self._cycles_total.labels(outcome)
        for kind in WRITE_KINDS:
            self._writes.labels(kind)
        for status in _OUTBOX_STATUSES:
            self._outbox.labels(status)

    def _define_live_metrics(self) -> None:
        """The metrics that move while a cycle runs."""
        registry = self.registry
        self._running_gauge = Gauge(
            "crm_sync_cycle_running", "1 while a cycle runs, 0 between cycles.", registry=registry
        )
        self._last_progress_at = Gauge(
            "crm_sync_last_progress_timestamp_seconds",
            "Unix time the running cycle last acknowledged work (a page read, accounts evaluated, a write "
            "answered), or the idle daemon last ticked.",
            registry=registry,
        )
        self._phase_done = Gauge(
            "crm_sync_phase_done",
            "Items the current (or last) cycle has done in each phase so far: records read, accounts "
            "evaluated, writes sent.",
            ["phase"],
            registry=registry,
        )
        self._phase_total = Gauge(
            "crm_sync_phase_total",
            "Items a phase has to do, where known (writes: the outbox at the start of the apply step).",
            ["phase"],
            registry=registry,
        )
        self._phase_eta = Gauge(
            "crm_sync_phase_eta_seconds",
            "Estimated seconds left in a phase at its average rate so far (phases with a known total; 0 when done).",
            ["phase"],
            registry=registry,
        )
        self._waits = Counter(
            "crm_sync_waits_total",
            "Waits of the connectors, by service and reason (rate_limit: the rate limiter held a request "
            "back until the window reopened; retry: a failed attempt backed off).",
            ["service", "reason"],
            registry=registry,
        )
        self._wait_seconds = Counter(
            "crm_sync_wait_seconds_total",
            "Seconds spent in those waits, by service and reason.",
            ["service", "reason"],
            registry=registry,
        )
        for service in _SERVICES:
            for reason in WAIT_REASONS:
                self._waits.labels(service, reason)
                self._wait_seconds.labels(service, reason)
        self._quota_stops = Counter(
            "crm_sync_quota_stops_total",
            "Cycles whose writes the API quota stopped (REQUEST_LIMIT_EXCEEDED, or [salesforce] budget_share "
            "of the daily allocation used); the rest stayed pending.",
            registry=registry,
        )
        self._alerts = Counter(
            "crm_sync_alerts_total",
            "Alerts that went out (repeats held back are not counted), by kind ([alerts], sync/notify.py).",
            ["kind"],
            registry=registry,
        )
        self._deliveries = Counter(
            "crm_sync_alert_deliveries_total",
            "Alert deliveries by sink (slack, webhook) and result (ok, failed).",
            ["sink", "result"],
            registry=registry,
        )

    def quota_stopped(self) -> None:
        """The API quota stopped a cycle's writes (`quota_exhausted`)."""
        self._quota_stops.inc()

    def count_alert(self, what: str, label: str) -> None:
        """`sync.notify.Counted`: an alert that went out (`"alert", kind`) or a delivery
        (`"delivery", "<sink>:<ok|failed>"`)."""
        if what == "alert":
            self._alerts.labels(label).inc()
        else:
            sink, _, result = label.partition(":")
            self._deliveries.labels(sink, result).inc()

    # -- while a cycle runs ------------------------------------------------------------------------

    def cycle_started(self) -> None:
        """A cycle begins: /healthz follows its progress until `record_cycle` (or `cycle_ended`)."""
        self._phase_done.clear()
        self._phase_total.clear()
        self._phase_eta.clear()
        with self._lock:
            self._running = True
            self._phase = None
            self._touch()
        self._running_gauge.set(1)

    def progressed(self, phase: str | None = None) -> None:
        """The running cycle acknowledged work (in `phase`, when given); between cycles, the
        daemon's loop is alive (its tick)."""
        with self._lock:
            self._touch()
            if phase is not None:
                self._phase = phase

    def record_phase(self, phase: str, done: int, total: int | None, eta_seconds: float | None) -> None:
        """The progress gauges of one phase (`phase` is a metric label: lower case, underscores)."""
        self._phase_done.labels(phase).set(done)
        if total is not None:
            self._phase_total.labels(phase).set(total)
        if eta_seconds is not None:
            self._phase_eta.labels(phase).set(eta_seconds)

    def add_writes(self, counts: Mapping[str, int]) -> None:
        """Writes by kind as they happen (increments, never totals), and the record errors and
        conflicts found so far: the cycle's counts reach the metrics during the cycle."""
        for kind in WRITE_KINDS:
            if counts.get(kind):
                self._writes.labels(kind).inc(counts[kind])
        if counts.get("record_errors"):
            self._record_errors.inc(counts["record_errors"])
        if counts.get("conflicts"):
            self._conflicts.inc(counts["conflicts"])

    def record_wait(self, service: str, reason: str, seconds: float) -> None:
        """One wait of a connector (any thread), counted when it begins."""
        self._waits.labels(service, reason).inc()
        self._wait_seconds.labels(service, reason).inc(max(seconds, 0.0))

    def cycle_ended(self) -> None:
        """The cycle is over and will not be recorded (`record_cycle` could not be reached)."""
        with self._lock:
            self._running = False
            self._touch()
        self._running_gauge.set(0)

    def _touch(self) -> None:
        """Called with the lock held."""
        self._last_progress = self._clock()
        self._last_progress_at.set(self._wall_clock())

    # -- after a cycle ----------------------------------------------------------------------------

    def record_cycle(
        self,
        outcome: Outcome,
        *,
        duration_seconds: float,
        counts: Mapping[str, int],
        error_kind: str | None = None,
    ) -> None:
        """Count one finished cycle: its outcome, duration and the report counts not yet added
        with `add_writes` (all of them, for a caller that never did). `error_kind` says why it did
        not end `ok` (None when it did). The cycle stops running and its success (if it is one) is
        recorded under one lock: a /healthz between the two would see neither, and after a cycle
        longer than `healthy_within_seconds` answer 503 `unhealthy` for a moment."""
        self._cycles_total.labels(outcome).inc()
        self._duration.set(duration_seconds)
        self.add_writes(counts)
        with self._lock:  # one step: no /healthz between "no longer running" and the new success
            self._running = False
            self._touch()
            self._cycles += 1
            self._last_error_kind = error_kind
            if outcome in _SUCCESSES:
                self._last_success = _Success(self._clock(), self._wall_clock())
                self._last_success_at.set(self._last_success.wall)
        self._running_gauge.set(0)

    def record_state(self, *, outbox: Mapping[str, int], api_usage: Mapping[str, float]) -> None:
        """The outbox depth by status (a status absent is 0) and the API usage share of the
        services whose usage is known (the others keep their last value, or stay unexported)."""
        for status in _OUTBOX_STATUSES:
            self._outbox.labels(status).set(outbox.get(status, 0))
        for service, share in api_usage.items():
            self._api_usage.labels(service).set(share)

    def check(self) -> tuple[int, dict[str, Any]]:
        """`/healthz`: the HTTP status (200 or 503) and the JSON body (see the module docstring)."""
        with self._lock:
            now = self._clock()
            success, cycles, error_kind = self._last_success, self._cycles, self._last_error_kind
            running, phase, quiet = self._running, self._phase, now - self._last_progress
        age = None if success is None else now - success.monotonic
        if running:
            healthy = quiet < self.stalled_after_seconds
            status = "progressing" if healthy else "stalled"
        elif success is None:
            healthy = now - self._started < self.healthy_within_seconds
            status = "starting" if healthy else "unhealthy"
        else:
            healthy = age is not None and age < self.healthy_within_seconds
            status = "ok" if healthy else "unhealthy"
        body = {
            "status": status,
            "last_success": None if success is None else _iso(success.wall),
            "age_seconds": None if age is None else round(age, 3),
            "healthy_within_seconds": self.healthy_within_seconds,
            "cycles": cycles,
            "last_error_kind": error_kind,
            "cycle_running": running,
            "phase": phase if running else None,
            "since_progress_seconds": round(quiet, 3),
            "stalled_after_seconds": self.stalled_after_seconds,
        }
        return (200 if healthy else 503), body

    def live(self) -> tuple[int, dict[str, Any]]:
        """`/livez`: 503 only when the daemon is stuck (nothing acknowledged, no loop tick, for
        `stalled_after_seconds`); a failing service does not make it 503, a restart would not help."""
        with self._lock:
            quiet = self._clock() - self._last_progress
            running = self._running
        alive = quiet < self.stalled_after_seconds
        status = "alive" if alive else "stalled"
        body = {
            "status": status,
            "cycle_running": running,
            "since_progress_seconds": round(quiet, 3),
            "stalled_after_seconds": self.stalled_after_seconds,
        }
        return (200 if alive else 503), body


def _iso(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_app(health: Health, events: WSGIApplication | None = None) -> WSGIApplication:
    """The WSGI application: GET `/healthz` and `/livez` (JSON) and `/metrics` (prometheus_client's
    own exposition, which also speaks OpenMetrics when asked); `/events/…` to `events` (the
    receiver, `sync.receiver`) when given; 404 elsewhere, 405 for other methods."""
    metrics = cast(WSGIApplication, make_wsgi_app(health.registry))
    checks = {"/healthz": health.check, "/livez": health.live}

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if events is not None and path.startswith("/events/"):
            return events(environ, start_response)
        if path not in ("/healthz", "/livez", "/metrics"):
            return _reply(start_response, "404 Not Found", {"error": "not found"})
        if environ.get("REQUEST_METHOD") != "GET":
            return _reply(start_response, "405 Method Not Allowed", {"error": "use GET"}, [("Allow", "GET")])
        if path == "/metrics":
            return metrics(environ, start_response)
        code, body = checks[path]()
        return _reply(start_response, "200 OK" if code == 200 else "503 Service Unavailable", body)

    return app


def _reply(
    start_response: StartResponse, status: str, body: Mapping[str, Any], headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            *(headers or []),
        ],
    )
    return [data]


class _QuietHandler(WSGIRequestHandler):
    """No access log: stderr carries the daemon's JSON lines only. Marks a request that came on one
    of the probes' reserved connections (`_Server.probes_only`)."""

    server: _Server

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[_RESERVED] = self.server.on_reserve(self.request)
        return environ

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.client_timeout)  # each read: a silent client is dropped

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing."""


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per connection, so one slow client cannot hold up a scrape; the threads never keep
    the process alive. At most `max_connections` are served at once; beyond them, `probe_reserve`
    more connections are taken for the probes and scrapes alone (a GET of /healthz, /livez or
    /metrics; any other request on one is answered 503 with Retry-After, `listener_busy`), so a
    flood of webhooks at the cap does not fail a liveness probe; one more still is closed at once
    (`listener_busy`). So clients that hold connections open cannot take every thread (nor all the
    memory); and a connection still open `request_deadline` seconds after it was accepted is shut,
    however slowly it trickles its bytes in, so a held slot comes back. Clients that hold
    connections open without sending a request can still take the reserve too, which is why the
    listener belongs behind a proxy (README, "Reverse proxy") and, in Kubernetes, a
    NetworkPolicy. An error of a connection (a client silent past `client_timeout`, a reset) is one
    JSON line (`listener_error`), never a traceback on stderr; both lines at most 20 a minute."""

    daemon_threads = True
    request_queue_size = _LISTEN_BACKLOG

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.client_timeout: float = _HANDLER_TIMEOUT_SECONDS
        self.request_deadline: float = _REQUEST_DEADLINE_SECONDS
        self.max_connections = _MAX_CONNECTIONS
        self._slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
        self._reserve = threading.BoundedSemaphore(_PROBE_RESERVE)
        self._reserved: set[socket.socket] = set()  # connections on a reserved slot (under _open_lock)
        self._open: dict[socket.socket, float] = {}  # connection -> when it must be done (monotonic)
        self._open_lock = threading.Lock()
        self.busy: Callable[[Mapping[str, Any]], None] = _unlogged
        self.refused: Callable[[str], None] = _uncounted  # "closed" or "reserved"
        self.failed: Callable[[Mapping[str, Any]], None] = _unlogged
        super().__init__(*args, **kwargs)

    def service_actions(self) -> None:
        """Between two polls of the serving loop: shut the connections past their deadline (their
        handler's next read ends, and its thread gives its slot back)."""
        now = time.monotonic()
        with self._open_lock:
            late = [connection for connection, deadline in self._open.items() if deadline <= now]
            for connection in late:
                del self._open[connection]
        for connection in late:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            self.failed({"error": "deadline", "seconds": self.request_deadline})

    def limit(
        self,
        max_connections: int,
        client_timeout: float,
        request_deadline: float,
        log: _Log | None,
        probe_reserve: int = _PROBE_RESERVE,
    ) -> None:
        """Serve at most `max_connections` at once and `probe_reserve` more for probes alone, drop a
        client silent for `client_timeout` seconds or still connected `request_deadline` seconds
        after it was accepted, and log to `log` (nothing without it)."""
        self.max_connections, self.client_timeout = max_connections, client_timeout
        self.request_deadline = request_deadline
        self._slots = threading.BoundedSemaphore(max_connections)
        self._reserve = threading.BoundedSemaphore(probe_reserve)  # 0: every one beyond the cap is closed
        if log is not None:
            self.busy = Throttled(log, "listener_busy", _PROBLEMS_LOGGED)
            self.failed = Throttled(log, "listener_error", _PROBLEMS_LOGGED)

    def process_request(self, request: Any, client_address: Any) -> None:
        slots = self._slots
        if not slots.acquire(blocking=False):
            slots = self._reserve
            if not slots.acquire(blocking=False):
                self.busy({"connections": self.max_connections})
                self.refused("closed")
                self.shutdown_request(request)
                return
            with self._open_lock:
                self._reserved.add(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._give_back(request)  # no thread started to give the slot back
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open[request] = time.monotonic() + self.request_deadline
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._give_back(request)

    def _give_back(self, request: Any) -> None:
        """The connection's slot, in the cap or the probes' reserve, free again."""
        with self._open_lock:
            self._open.pop(request, None)
            reserved = request in self._reserved
            self._reserved.discard(request)
        (self._reserve if reserved else self._slots).release()

    def on_reserve(self, request: Any) -> bool:
        """Whether the connection holds one of the probes' reserved slots."""
        with self._open_lock:
            return request in self._reserved

    def probes_only(self, app: WSGIApplication) -> WSGIApplication:
        """`app`, except that a request on a reserved connection that is not a probe or a scrape is
        answered 503 with Retry-After (Salesforce sends its message again; Vitally does not, and
        the next cycle reads the change), logged `listener_busy` and counted. A webhook's body
        (a POST to /events/…, announced by Content-Length, up to 1 MiB) is read first, so the
        answer reaches its sender instead of a reset connection; the read holds the reserved slot
        no longer than a silent client's `client_timeout` or the connection's deadline. A chunked
        body is not read (its connection may be reset, as the receiver's own 411 leaves it)."""

        def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            if environ.get(_RESERVED) and not (
                environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO", "") in _PROBES
            ):
                self.busy({"connections": self.max_connections, "reserved_for": "probes"})
                self.refused("reserved")
                if environ.get("PATH_INFO", "").startswith("/events/"):
                    _drain(environ)  # a webhook's: any other body is left unread, as the receiver leaves it
                body = {"error": "busy: the listener serves its probes alone beyond its connection cap"}
                return _reply(start_response, "503 Service Unavailable", body, [("Retry-After", "1")])
            return app(environ, start_response)

        return guarded

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        self.failed({"error": type(error).__name__ if error is not None else "unknown"})


def _unlogged(data: Mapping[str, Any]) -> None:
    """No log."""


def _uncounted(reason: str) -> None:
    """No metric."""


def _drain(environ: WSGIEnvironment) -> None:
    """Read and drop the request's body, up to `_DRAINED_BYTES` (a body announced larger is left:
    its connection is reset, as the receiver's own limit does)."""
    try:
        left = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if not 0 < left <= _DRAINED_BYTES:
        return
    stream = environ["wsgi.input"]
    with contextlib.suppress(OSError):  # a client silent past client_timeout, or gone
        while left > 0:
            chunk = stream.read(min(left, 65536))
            if not chunk:
                return
            left -= len(chunk)


class _Server6(_Server):
    address_family = socket.AF_INET6


class HealthServer:
    """The endpoints served from a daemon thread; `close()` stops serving and frees the port."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": _POLL_SECONDS}, name="health", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The port bound (an ephemeral one when 0 was asked for)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve(
    health: Health,
    host: str,
    port: int,
    events: WSGIApplication | None = None,
    *,
    log: _Log | None = None,
    max_connections: int = _MAX_CONNECTIONS,
    client_timeout: float = _HANDLER_TIMEOUT_SECONDS,
    request_deadline: float = _REQUEST_DEADLINE_SECONDS,
    probe_reserve: int = _PROBE_RESERVE,
) -> HealthServer:
    """Bind `host:port` (`[daemon] health_host`: loopback, or every interface of a private network)
    and serve `health` (and `events`, see `make_app`) from a daemon thread, at most
    `max_connections` at once and `probe_reserve` more for the probes and scrapes alone, each
    dropped after `client_timeout` seconds of silence or `request_deadline` seconds in all; the
    listener's own problems go to `log` (`_Server`). Raises OSError when the port cannot be bound,
    e.g. it is busy."""
    server_class = _Server6 if ":" in host else _Server
    app = make_app(health, events)
    server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    server.set_app(server.probes_only(app))
    server.refused = lambda reason: health.listener_refused.labels(reason).inc()
    server.limit(max_connections, client_timeout, request_deadline, log, probe_reserve)
    return HealthServer(server)
