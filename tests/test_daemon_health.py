"""The daemon's /healthz and /metrics (issue #8): `sync.health` on its own (no sockets), then the
real daemon process against the sandbox, scraped over loopback."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import example_config_for

from sandbox.generator import generate_book
from sandbox.server import Sandbox
from state import StateDB
from sync.config import load_config
from sync.daemon import run_daemon
from sync.health import WRITE_KINDS, Health, make_app

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_PUT = "/resources/accounts/"


# -- helpers ----------------------------------------------------------------------------------------


class FakeClock:
    """Monotonic and wall seconds that move only when told."""

    def __init__(self) -> None:
        self.monotonic = 100.0
        self.wall = 1_795_000_000.0

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += seconds


def make_health(clock: FakeClock, healthy_within: float = 60) -> Health:
    return Health(healthy_within, version="9.9.9", clock=lambda: clock.monotonic, wall_clock=lambda: clock.wall)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name{labels}` in Prometheus text, or None when it is absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def scrape(health: Health) -> str:
    return generate_latest(health.registry).decode()


def call_app(health: Health, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": method}
    setup_testing_defaults(environ)
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
        answer["status"], answer["headers"] = status, dict(headers)
        return lambda data: None

    body = b"".join(make_app(health)(environ, start_response))
    return answer["status"], answer["headers"], body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def try_get(port: int, path: str) -> tuple[int, str] | None:
    """`get`, or None while nothing listens yet."""
    try:
        return get(port, path)
    except (urllib.error.URLError, ConnectionError):
        return None


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """Poll `check` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def metric(port: int, name: str, **labels: str) -> float | None:
    answer = try_get(port, "/metrics")
    return None if answer is None or answer[0] != 200 else sample(answer[1], name, **labels)


def healthz(port: int) -> tuple[int, dict[str, Any]] | None:
    answer = try_get(port, "/healthz")
    return None if answer is None else (answer[0], json.loads(answer[1]))


def events(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


# -- sync.health: /healthz ----------------------------------------------------------------------------


def test_health_is_starting_before_the_first_cycle_then_unhealthy_once_the_grace_has_passed() -> None:
    clock = FakeClock()
    health = make_health(clock, healthy_within=60)
    code, body = health.check()
    assert (code, body["status"], body["last_success"], body["age_seconds"], body["cycles"]) == (
        200,
        "starting",
        None,
        None,
        0,
    )
    clock.advance(59.9)
    assert health.check()[0] == 200
    clock.advance(0.1)
    code, body = health.check()
    assert (code, body["status"]) == (503, "unhealthy")


def test_health_is_ok_while_the_last_success_is_fresh_and_503_once_it_is_older_than_the_limit() -> None:
    clock = FakeClock()
    health = make_health(clock, healthy_within=60)
    clock.advance(5)
    health.record_cycle("ok", duration_seconds=2, counts={})
    finished = clock.wall
    clock.advance(59)
    code, body = health.check()
    assert code == 200
    assert body == {
        "status": "ok",
        "last_success": datetime.fromtimestamp(finished, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "age_seconds": 59,
        "healthy_within_seconds": 60,
        "cycles": 1,
        "last_error_kind": None,
        "cycle_running": False,
        "phase": None,
        "since_progress_seconds": 59,
        "stalled_after_seconds": 900,
    }
    clock.advance(1)
    code, body = health.check()
    assert (code, body["status"], body["age_seconds"]) == (503, "unhealthy", 60)


def test_health_failed_cycles_do_not_refresh_the_last_success_and_a_partial_one_does() -> None:
    clock = FakeClock()
    health = make_health(clock, healthy_within=60)
    health.record_cycle("ok", duration_seconds=1, counts={})
    clock.advance(61)
    health.record_cycle("failed", duration_seconds=1, counts={}, error_kind="auth")
    code, body = health.check()
    assert (code, body["cycles"], body["last_error_kind"]) == (503, 2, "auth")
    health.record_cycle("partial", duration_seconds=1, counts={"parked": 2}, error_kind="writes")
    code, body = health.check()
    assert (code, body["status"], body["age_seconds"], body["last_error_kind"]) == (200, "ok", 0, "writes")
    health.record_cycle("ok", duration_seconds=1, counts={})
    assert health.check()[1]["last_error_kind"] is None


def test_health_stopped_cycle_is_not_a_success() -> None:
    clock = FakeClock()
    health = make_health(clock, healthy_within=60)
    health.record_cycle("stopped", duration_seconds=1, counts={})
    clock.advance(60)
    assert health.check()[0] == 503


# -- sync.health: /metrics ----------------------------------------------------------------------------


def test_metrics_before_any_cycle_show_info_up_and_zeroes() -> None:
    text = scrape(make_health(FakeClock()))
    assert sample(text, "crm_sync_info", version="9.9.9") == 1
    assert sample(text, "crm_sync_up") == 1
    for outcome in ("ok", "partial", "failed", "stopped"):
        assert sample(text, "crm_sync_cycles_total", outcome=outcome) == 0
    for kind in WRITE_KINDS:
        assert sample(text, "crm_sync_writes_total", kind=kind) == 0
    assert sample(text, "crm_sync_last_success_timestamp_seconds") == 0
    assert sample(text, "crm_sync_outbox_depth", status="pending") == 0
    assert sample(text, "crm_sync_api_usage_ratio", service="vitally") is None  # unknown: not exported


def test_metrics_add_up_cycle_counts_and_show_the_latest_state() -> None:
    clock = FakeClock()
    health = make_health(clock)
    counts = {"vitally_puts": 7, "salesforce_writes": 1, "applied": 9, "parked": 2, "queued": 11}
    health.record_cycle("partial", duration_seconds=3.5, counts={**counts, "record_errors": 4, "conflicts": 1})
    clock.advance(10)
    health.record_cycle("ok", duration_seconds=1.25, counts={"vitally_puts": 1, "applied": 1, "conflicts": 1})
    health.record_cycle("failed", duration_seconds=0.5, counts={}, error_kind="unreachable")
    health.record_state(outbox={"pending": 3, "parked": 2}, api_usage={"vitally": 0.25, "salesforce": 0.5})
    health.record_state(outbox={"parked": 2}, api_usage={"vitally": 0.75})

    text = scrape(health)
    assert [sample(text, "crm_sync_cycles_total", outcome=o) for o in ("ok", "partial", "failed", "stopped")] == [
        1,
        1,
        1,
        0,
    ]
    assert sample(text, "crm_sync_last_cycle_duration_seconds") == 0.5
    assert sample(text, "crm_sync_last_success_timestamp_seconds") == clock.wall
    writes = {kind: sample(text, "crm_sync_writes_total", kind=kind) for kind in WRITE_KINDS}
    assert writes == {
        "vitally_puts": 8,
        "salesforce_writes": 1,
        "applied": 10,
        "failed": 0,
        "parked": 2,
        "queued": 11,
    }
    assert sample(text, "crm_sync_record_errors_total") == 4
    assert sample(text, "crm_sync_conflicts_total") == 2
    assert sample(text, "crm_sync_outbox_depth", status="pending") == 0  # absent from the latest reading
    assert sample(text, "crm_sync_outbox_depth", status="parked") == 2
    assert sample(text, "crm_sync_api_usage_ratio", service="vitally") == 0.75
    assert sample(text, "crm_sync_api_usage_ratio", service="salesforce") == 0.5  # kept while unknown


def test_metrics_have_help_texts_and_a_registry_of_their_own() -> None:
    first, second = make_health(FakeClock()), make_health(FakeClock())  # the global registry would refuse
    families = list(text_string_to_metric_families(scrape(first)))
    # prometheus_client adds a `<counter>_created` gauge (the counter's creation time) to every counter.
    assert {f.name for f in families if not f.name.endswith("_created")} == {
        "crm_sync_info",
        "crm_sync_up",
        "crm_sync_cycles",
        "crm_sync_last_success_timestamp_seconds",
        "crm_sync_last_cycle_duration_seconds",
        "crm_sync_writes",
        "crm_sync_record_errors",
        "crm_sync_conflicts",
        "crm_sync_outbox_depth",
        "crm_sync_api_usage_ratio",
        "crm_sync_cycle_running",
        "crm_sync_last_progress_timestamp_seconds",
        "crm_sync_phase_done",
        "crm_sync_phase_total",
        "crm_sync_phase_eta_seconds",
        "crm_sync_waits",
        "crm_sync_wait_seconds",
        "crm_sync_alerts",
        "crm_sync_alert_deliveries",
        "crm_sync_quota_stops",
        "crm_sync_listener_refused",
    }
    assert all(f.documentation for f in families)
    assert "crm_sync" not in generate_latest(REGISTRY).decode()
    assert second.registry is not first.registry


# -- sync.health: the WSGI application ----------------------------------------------------------------


def test_app_serves_healthz_as_json_with_its_status_code() -> None:
    clock = FakeClock()
    health = make_health(clock, healthy_within=60)
    status, headers, body = call_app(health, "/healthz")
    assert status == "200 OK"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["status"] == "starting"
    clock.advance(60)
    status, _, body = call_app(health, "/healthz")
    assert status == "503 Service Unavailable"
    assert json.loads(body)["status"] == "unhealthy"


def test_app_serves_metrics_in_prometheus_text_format() -> None:
    health = make_health(FakeClock())
    health.record_cycle("ok", duration_seconds=1, counts={"applied": 3})
    status, headers, body = call_app(health, "/metrics")
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert sample(body.decode(), "crm_sync_writes_total", kind="applied") == 3


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        ("/", "GET", "404 Not Found"),
        ("/metricsx", "GET", "404 Not Found"),
        ("/healthz", "POST", "405 Method Not Allowed"),
    ],
)
def test_app_answers_404_elsewhere_and_405_to_other_methods(path: str, method: str, expected: str) -> None:
    assert call_app(make_health(FakeClock()), path, method)[0] == expected


# -- the daemon in this process -------------------------------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(generate_book(120, seed=3, now=datetime(2026, 11, 22, tzinfo=UTC))) as sb:
        yield sb


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """run_daemon installs its own SIGTERM/SIGINT handlers; give pytest its own back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_daemon_events_of_a_cycle_all_carry_its_run_id_and_port_0_serves_nothing(
    sandbox: Sandbox, tmp_path: Path, signal_handlers: None
) -> None:
    sandbox.add_fault("status", method="PUT", path_prefix=ACCOUNT_PUT, status=400, count=3)
    config = load_config(example_config_for(sandbox.url, tmp_path / "config.toml"))
    config = replace(config.with_state(tmp_path / "state.db"), daemon=replace(config.daemon, health_port=0))
    err = StringIO()
    assert run_daemon(config, err, max_cycles=1) == 0
    logged = events(err.getvalue())
    names = [e["event"] for e in logged]
    assert names.count("write_failed") == 3
    within = logged[names.index("cycle_started") : names.index("cycle_finished") + 1]
    assert {e["run_id"] for e in within} == {1}
    assert not [name for name in names if name.startswith("health_")]


def test_daemon_failed_cycle_event_names_its_run_and_error_kind(
    sandbox: Sandbox, tmp_path: Path, signal_handlers: None
) -> None:
    sandbox.add_fault("status", path_prefix="/resources/", status=401, share=1.0)
    config = load_config(example_config_for(sandbox.url, tmp_path / "config.toml"))
    config = replace(config.with_state(tmp_path / "state.db"), daemon=replace(config.daemon, health_port=0))
    err = StringIO()
    assert run_daemon(config, err, max_cycles=1) == 0
    failed = [e for e in events(err.getvalue()) if e["event"] == "cycle_failed"]
    assert [(e["run_id"], e["kind"]) for e in failed] == [(1, "auth")]
    assert "API key refused" in failed[0]["error"]


def test_daemon_healthz_is_progressing_while_it_records_a_cycle_and_not_running_when_it_cannot(
    sandbox: Sandbox, tmp_path: Path, signal_handlers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /healthz as the daemon's own cycle wrapper leaves it: asked while the run's outcome is read
    # back from the state (after the cycle's last phase ended), then when that read fails.
    from sync import daemon as daemon_module

    config = load_config(example_config_for(sandbox.url, tmp_path / "config.toml"))
    config = replace(config.with_state(tmp_path / "state.db"), daemon=replace(config.daemon, health_port=0))
    config = replace(config, daemon=replace(config.daemon, healthy_within_seconds=0.001))  # every cycle is "long"
    err = StringIO()
    state = StateDB.open(config.state_path)
    cycles = daemon_module._Cycles(config, state, daemon_module._JsonLog(err), lambda: False, lambda s: None)
    seen: list[tuple[int, str, bool]] = []
    finished_run = daemon_module._finished_run

    def reading(state: Any, run_id: int | None) -> Any:
        code, body = cycles.health.check()
        seen.append((code, body["status"], body["cycle_running"]))
        if len(seen) == 3:
            raise sqlite3.OperationalError("disk I/O error")
        return finished_run(state, run_id)

    monkeypatch.setattr(daemon_module, "_finished_run", reading)
    try:
        cycles()  # the first cycle: no success yet
        assert seen[-1] == (200, "progressing", True)
        assert cycles.health.check()[1]["cycles"] == 1 and not cycles.health.check()[1]["cycle_running"]
        cycles()  # a later one, its last success older than healthy_within
        assert seen[-1] == (200, "progressing", True)
        cycles()  # the state cannot say how this one ended
        assert seen[-1] == (200, "progressing", True)
        body = cycles.health.check()[1]
        assert (body["cycle_running"], body["cycles"]) == (False, 2)
        assert [e["event"] for e in events(err.getvalue())].count("metrics_stale") == 1
    finally:
        state.close()


# -- the daemon as a real process -------------------------------------------------------------------------


def daemon_config(sandbox: Sandbox, tmp_path: Path, port: int, healthy_within: float = 60) -> Path:
    return example_config_for(
        sandbox.url,
        tmp_path / "config.toml",
        {
            "interval_seconds = 900": "interval_seconds = 1",
            "health_port = 9465": f"health_port = {port}",
            "healthy_within_seconds = 2700": f"healthy_within_seconds = {healthy_within}",
        },
    )


def start(config: Path, state: Path, err: Path) -> subprocess.Popen[str]:
    with err.open("w") as stream:  # a file, not a pipe: a pipe nobody reads could block the daemon
        return subprocess.Popen(
            [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state), "daemon"],
            stdout=subprocess.DEVNULL,
            stderr=stream,
            text=True,
            cwd=ROOT,
        )


def stop(daemon: subprocess.Popen[str]) -> int:
    daemon.send_signal(signal.SIGTERM)
    return daemon.wait(timeout=30)


def logged(err: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in events(err.read_text()) if e["event"] == name]


@pytest.mark.e2e
def test_daemon_serves_metrics_and_healthz_that_change_after_each_cycle(sandbox: Sandbox, tmp_path: Path) -> None:
    port = free_port()
    config = daemon_config(sandbox, tmp_path, port)
    state, err = tmp_path / "state.db", tmp_path / "daemon.log"
    sandbox.add_fault("status", method="PUT", path_prefix=ACCOUNT_PUT, status=400, count=5)  # parked for good
    daemon = start(config, state, err)
    try:
        wait_for("a successful cycle", lambda: (metric(port, "crm_sync_cycles_total", outcome="partial") or 0) >= 1)
        first = get(port, "/metrics")[1]
        # Between cycles (the next one, a second later, answers "progressing" while it runs).
        code, body = wait_for("/healthz", lambda: (h := healthz(port)) and h[1]["status"] != "progressing" and h)
        assert code == 200 and body["status"] == "ok" and body["cycles"] >= 1
        assert sample(first, "crm_sync_up") == 1
        assert (sample(first, "crm_sync_writes_total", kind="vitally_puts") or 0) > 0
        parked = sample(first, "crm_sync_writes_total", kind="parked")
        assert parked and parked >= 5
        assert sample(first, "crm_sync_outbox_depth", status="parked") == parked
        assert sample(first, "crm_sync_outbox_depth", status="pending") == 0
        vitally_usage = sample(first, "crm_sync_api_usage_ratio", service="vitally")
        salesforce_usage = sample(first, "crm_sync_api_usage_ratio", service="salesforce")
        assert vitally_usage is not None and 0 < vitally_usage < 1
        assert salesforce_usage is not None and 0 < salesforce_usage < 1
        first_success = sample(first, "crm_sync_last_success_timestamp_seconds")
        assert first_success and first_success > 0

        # The next cycles find nothing to change: they end ok, and the last success moves on.
        wait_for("an ok cycle", lambda: (metric(port, "crm_sync_cycles_total", outcome="ok") or 0) >= 1)
        later = wait_for(
            "a later success",
            lambda: (s := metric(port, "crm_sync_last_success_timestamp_seconds")) and s > first_success and s,
        )
        assert later > first_success
        assert metric(port, "crm_sync_outbox_depth", status="parked") == parked

        # A second instance exits 4 before binding: had it tried, the busy port would be logged.
        second = subprocess.run(
            [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state), "daemon"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert second.returncode == 4
        assert "health_" not in second.stderr
        assert stop(daemon) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # closed connections linger in TIME_WAIT
        again.bind(("127.0.0.1", port))  # nothing listens any more
    names = [e["event"] for e in events(err.read_text())]
    assert names[0] == "daemon_started"
    assert names[1] == "health_serving"
    assert names[-1] == "daemon_stopped"
    assert all("run_id" in e for e in events(err.read_text()) if e["event"] in {"write_failed", "cycle_finished"})


@pytest.mark.e2e
def test_daemon_healthz_turns_503_while_cycles_fail_and_200_once_they_succeed_again(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    port = free_port()
    config = daemon_config(sandbox, tmp_path, port, healthy_within=2)
    daemon = start(config, tmp_path / "state.db", tmp_path / "daemon.log")
    try:
        wait_for("a healthy daemon", lambda: (h := healthz(port)) and h[1]["status"] == "ok")
        sandbox.add_fault("status", path_prefix="/resources/", status=401, share=1.0)  # Vitally refuses the key
        code, body = wait_for("/healthz to fail", lambda: (h := healthz(port)) and h[0] == 503 and h)
        assert (code, body["status"], body["last_error_kind"]) == (503, "unhealthy", "auth")
        assert body["age_seconds"] >= 2
        assert (metric(port, "crm_sync_cycles_total", outcome="failed") or 0) >= 1

        sandbox.clear_faults()
        # Between cycles (a cycle under way answers 200 "progressing": see test_first_sync.py).
        code, body = wait_for(
            "/healthz to recover",
            lambda: (h := healthz(port)) and h[0] == 200 and h[1]["status"] != "progressing" and h,
        )
        assert (code, body["status"], body["last_error_kind"]) == (200, "ok", None)
        assert stop(daemon) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()


@pytest.mark.e2e
def test_daemon_keeps_cycling_when_the_health_port_is_busy(sandbox: Sandbox, tmp_path: Path) -> None:
    err = tmp_path / "daemon.log"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        daemon = start(daemon_config(sandbox, tmp_path, port), tmp_path / "state.db", err)
        try:
            wait_for("two cycles", lambda: len(logged(err, "cycle_finished")) >= 2)
            assert daemon.poll() is None
            assert stop(daemon) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
    unavailable = logged(err, "health_unavailable")
    assert len(unavailable) == 1
    assert unavailable[0]["host"] == "127.0.0.1" and unavailable[0]["port"] == port
    assert "in use" in unavailable[0]["error"]
    assert not logged(err, "health_serving")
    assert {e["status"] for e in logged(err, "cycle_finished")} <= {"ok", "partial"}
