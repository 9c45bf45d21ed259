"""The daemon's `/healthz` and `/metrics` (Prometheus text), served on loopback.

`Health` holds what the endpoints show: a registry of its own (never prometheus_client's global
one) and the few facts `/healthz` needs. Only the daemon's main thread writes to it, after each
cycle, with numbers it has already read from the state and the connectors; the HTTP thread only
reads it. So the HTTP thread never touches the SQLite connection (one per thread) or a client.

`/healthz` answers 200 while the last successful cycle finished less than
`healthy_within_seconds` ago, and 503 otherwise. A cycle succeeds when it runs to its end (outcome
`ok`, or `partial`: some writes failed and wait to be retried or were parked, which the metrics
count). Before the first success a freshly started daemon is healthy (`starting`) until
`healthy_within_seconds` have passed since its start: its first cycle may be long. Neither
endpoint shows a secret, a URL or an error message: only the kind of the latest error.
"""

from __future__ import annotations

import json
import socket
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

__all__ = ["OUTCOMES", "WRITE_KINDS", "Health", "HealthServer", "Outcome", "make_app", "serve"]

Outcome = Literal["ok", "partial", "failed", "stopped"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "partial", "failed", "stopped")
_SUCCESSES = frozenset({"ok", "partial"})
# Counts of the cycle's report (CycleReport.counts) added to crm_sync_writes_total{kind}.
WRITE_KINDS = ("vitally_puts", "salesforce_writes", "applied", "failed", "parked", "queued")
_OUTBOX_STATUSES = ("pending", "parked")
_HANDLER_TIMEOUT_SECONDS = 10  # a client that connects and sends nothing is dropped after this
_POLL_SECONDS = 0.1  # how often the server thread notices `close()`


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
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.healthy_within_seconds = healthy_within_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()  # the facts below are written by one thread, read by another
        self._started = clock()
        self._last_success: _Success | None = None
        self._cycles = 0
        self._last_error_kind: str | None = None

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
        for outcome in OUTCOMES:
            self._cycles_total.labels(outcome)
        for kind in WRITE_KINDS:
            self._writes.labels(kind)
        for status in _OUTBOX_STATUSES:
            self._outbox.labels(status)

    def record_cycle(
        self,
        outcome: Outcome,
        *,
        duration_seconds: float,
        counts: Mapping[str, int],
        error_kind: str | None = None,
    ) -> None:
        """Count one finished cycle: its outcome, duration and report counts. `error_kind` says
        why it did not end `ok` (None when it did)."""
        self._cycles_total.labels(outcome).inc()
        self._duration.set(duration_seconds)
        for kind in WRITE_KINDS:
            self._writes.labels(kind).inc(counts.get(kind, 0))
        self._record_errors.inc(counts.get("record_errors", 0))
        self._conflicts.inc(counts.get("conflicts", 0))
        with self._lock:
            self._cycles += 1
            self._last_error_kind = error_kind
            if outcome in _SUCCESSES:
                self._last_success = _Success(self._clock(), self._wall_clock())
                self._last_success_at.set(self._last_success.wall)

    def record_state(self, *, outbox: Mapping[str, int], api_usage: Mapping[str, float]) -> None:
        """The outbox depth by status (a status absent is 0) and the API usage share of the
        services whose usage is known (the others keep their last value, or stay unexported)."""
        for status in _OUTBOX_STATUSES:
            self._outbox.labels(status).set(outbox.get(status, 0))
        for service, share in api_usage.items():
            self._api_usage.labels(service).set(share)

    def check(self) -> tuple[int, dict[str, Any]]:
        """`/healthz`: the HTTP status (200 or 503) and the JSON body."""
        with self._lock:
            now = self._clock()
            success, cycles, error_kind = self._last_success, self._cycles, self._last_error_kind
        if success is None:
            age = None
            fresh = now - self._started < self.healthy_within_seconds
            status = "starting" if fresh else "unhealthy"
        else:
            age = now - success.monotonic
            fresh = age < self.healthy_within_seconds
            status = "ok" if fresh else "unhealthy"
        body = {
            "status": status,
            "last_success": None if success is None else _iso(success.wall),
            "age_seconds": None if age is None else round(age, 3),
            "healthy_within_seconds": self.healthy_within_seconds,
            "cycles": cycles,
            "last_error_kind": error_kind,
        }
        return (200 if fresh else 503), body


def _iso(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_app(health: Health) -> WSGIApplication:
    """The WSGI application: GET `/healthz` (JSON) and `/metrics` (prometheus_client's own
    exposition, which also speaks OpenMetrics when asked); 404 elsewhere, 405 for other methods."""
    metrics = cast(WSGIApplication, make_wsgi_app(health.registry))

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ("/healthz", "/metrics"):
            return _reply(start_response, "404 Not Found", {"error": "not found"})
        if environ.get("REQUEST_METHOD") != "GET":
            return _reply(start_response, "405 Method Not Allowed", {"error": "use GET"}, [("Allow", "GET")])
        if path == "/metrics":
            return metrics(environ, start_response)
        code, body = health.check()
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
    """No access log: stderr carries the daemon's JSON lines only."""

    timeout = _HANDLER_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing."""


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per request, so one slow client cannot hold up a scrape; the threads never
    keep the process alive."""

    daemon_threads = True


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


def serve(health: Health, host: str, port: int) -> HealthServer:
    """Bind `host:port` (a loopback address: the config allows no other) and serve `health`
    from a daemon thread. Raises OSError when the port cannot be bound, e.g. it is busy."""
    server_class = _Server6 if ":" in host else _Server
    server = make_server(host, port, make_app(health), server_class=server_class, handler_class=_QuietHandler)
    return HealthServer(server)
