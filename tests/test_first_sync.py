"""A first sync you can watch (issue #16), at small scale: the real daemon in a process of its own
against the sandbox, whose Vitally rate limit is tightened (40 requests a second instead of 1,000 a
minute) so that a cycle of a few hundred accounts lasts many seconds, moves in bursts like the real
one, and outlives `healthy_within_seconds`. The same behaviours at full scale and the real limit:
bench/first_sync.py (about 25 minutes for 20,000 accounts)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, example_config_for
from test_daemon_health import free_port, healthz, sample, try_get, wait_for

from sandbox import Sandbox, generate_book

pytestmark = pytest.mark.e2e

NOW = datetime(2026, 11, 22, tzinfo=UTC)
ACCOUNT_PUT = "/resources/accounts/"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(generate_book(400, seed=11, now=NOW)) as sb:
        sb.configure(vitally_rate_limit=40, vitally_rate_window_s=1.0)
        yield sb


def start_daemon(sandbox: Sandbox, tmp_path: Path, port: int, **settings: str) -> tuple[subprocess.Popen[str], Path]:
    replacements = {
        "interval_seconds = 900": "interval_seconds = 3600",  # one cycle is the test
        "health_port = 9465": f"health_port = {port}",
        "# healthy_within_seconds = 2700": "healthy_within_seconds = 2",  # far shorter than the cycle
        "progress_log_seconds = 30": "progress_log_seconds = 1",
        **settings,
    }
    config = example_config_for(sandbox.url, tmp_path / "config.toml", replacements)
    err = tmp_path / "daemon.log"
    with err.open("w") as stream:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "sync", "--config", str(config), "--state", str(tmp_path / "state.db"), "daemon"],
            stdout=subprocess.DEVNULL,
            stderr=stream,
            text=True,
            cwd=ROOT,
        )
    return daemon, err


def events(err: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.read_text().splitlines() if line.startswith("{")]


def stop(daemon: subprocess.Popen[str]) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()


def test_a_long_first_cycle_is_healthy_throughout_logs_a_falling_eta_and_moves_the_metrics(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    port = free_port()
    daemon, err = start_daemon(sandbox, tmp_path, port)
    scrapes: list[tuple[float, int, str, bool, float | None]] = []
    gauge: set[float | None] = set()
    live_codes: set[int] = set()
    try:
        wait_for("the health endpoint", lambda: healthz(port))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(e["event"] == "cycle_finished" for e in events(err)):
            health, metrics, live = healthz(port), try_get(port, "/metrics"), try_get(port, "/livez")
            assert health is not None and metrics is not None and live is not None
            live_codes.add(live[0])
            gauge.add(sample(metrics[1], "crm_sync_cycle_running"))
            applied = sample(metrics[1], "crm_sync_writes_total", kind="applied")
            # Whether the cycle ran comes from the same /healthz body as its status: the two
            # endpoints are read one after the other, and the cycle may start between them.
            scrapes.append((time.monotonic(), health[0], health[1]["status"], health[1]["cycle_running"], applied))
            time.sleep(0.25)
        code, body = wait_for("the cycle's end", lambda: (h := healthz(port)) and h[1]["cycles"] == 1 and h)
    finally:
        stop(daemon)
    logged = events(err)
    finished = next(e for e in logged if e["event"] == "cycle_finished")
    assert finished["status"] == "ok" and finished["vitally_puts"] > 300
    assert (code, body["status"]) == (200, "ok")

    # /healthz: 200 at every scrape, "progressing" while the cycle ran, long past healthy_within_seconds.
    during = [s for s in scrapes if s[3]]
    assert during and during[-1][0] - during[0][0] > 4  # the cycle outlived healthy_within_seconds (2) twice over
    assert {(s[1], s[2]) for s in during} == {(200, "progressing")}
    assert {s[1] for s in scrapes} == {200}
    assert 1 in gauge  # /metrics said the cycle ran, too
    assert live_codes == {200}  # a Kubernetes liveness probe on /livez would leave it alone

    # cycle_progress lines: every phase ends once; the writes' ETA falls to 0.
    progress = [e for e in logged if e["event"] == "cycle_progress"]
    assert all(e["run_id"] == finished["run_id"] for e in progress)
    ended = [e["phase"] for e in progress if e["finished"]]
    assert ended == list(dict.fromkeys(ended)) and {
        "Vitally accounts read",
        "accounts evaluated",
        "writes sent",
    } <= set(ended)
    writes = [e for e in progress if e["phase"] == "writes sent"]
    assert len(writes) >= 4
    assert all(e["total"] == writes[0]["total"] for e in writes)
    assert [e["done"] for e in writes] == sorted(e["done"] for e in writes)
    etas = [e["eta_seconds"] for e in writes]
    unsettled = etas.index(next(eta for eta in etas if eta is not None))  # none before a tenth of the work
    assert all(eta is None for eta in etas[:unsettled]) and None not in etas[unsettled:]
    etas = etas[unsettled:]
    assert len(etas) >= 3 and etas[0] > etas[len(etas) // 2] > etas[-1] == 0
    assert writes[-1]["done"] == writes[-1]["total"] and writes[-1]["percent"] == 100.0
    waits = [e["waits"].get("vitally.rate_limit") for e in writes]
    assert any(w and w["count"] > 0 and w["longest_seconds"] > 0 for w in waits)  # the limit's waits, with their length

    # /metrics: the writes rose while the cycle ran, not only when it ended. The last writes may
    # land while the cycle still runs (its report and state are still to come), so a scrape taken
    # then already shows the final count: at least two counts strictly below it are required.
    applied_during = sorted({s[4] for s in during if s[4] is not None})
    assert applied_during and applied_during[-1] <= finished["applied"]
    assert len([a for a in applied_during if a < finished["applied"]]) >= 2


def test_a_cycle_that_stops_progressing_is_503_stalled_then_200_when_it_moves_again(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.configure(fault_timeout_s=30)
    sandbox.add_fault("timeout", method="PUT", path_prefix=ACCOUNT_PUT, share=1.0)  # every write hangs
    port = free_port()
    daemon, err = start_daemon(
        sandbox,
        tmp_path,
        port,
        **{"timeout_seconds = 10": "timeout_seconds = 6", "stalled_after_seconds = 900": "stalled_after_seconds = 2"},
    )
    try:
        # The writes' stall, not a read's: on a loaded machine a read may itself go 2 s without
        # progress (stalled, rightly, until it moves), which a first scrape would catch instead.
        _, body = wait_for(
            "a stalled cycle in its writes",
            lambda: (h := healthz(port)) and h[0] == 503 and h[1].get("phase") == "writes sent" and h,
            timeout=60,
        )
        assert (body["status"], body["cycle_running"], body["phase"]) == ("stalled", True, "writes sent")
        assert body["since_progress_seconds"] >= 2 and body["stalled_after_seconds"] == 2
        live = try_get(port, "/livez")
        assert live is not None and live[0] == 503 and json.loads(live[1])["status"] == "stalled"

        sandbox.clear_faults()  # the next attempt is answered: the cycle moves again
        _, body = wait_for("progress again", lambda: (h := healthz(port)) and h[0] == 200 and h, timeout=60)
        assert body["status"] in ("progressing", "ok")
        live = try_get(port, "/livez")
        assert live is not None and live[0] == 200
    finally:
        stop(daemon)
    assert any(e["event"] == "cycle_finished" for e in events(err))
