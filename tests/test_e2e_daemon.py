"""The daemon as a real process: cycles, one instance per state file, clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import example_config_for

from sandbox.generator import generate_book
from sandbox.server import Sandbox

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    from datetime import UTC, datetime

    with Sandbox(generate_book(120, seed=3, now=datetime(2026, 11, 22, tzinfo=UTC))) as sb:
        yield sb


@pytest.fixture
def config(tmp_path: Path, sandbox: Sandbox) -> Path:
    return example_config_for(sandbox.url, tmp_path / "config.toml", {"interval_seconds = 900": "interval_seconds = 1"})


def start(config: Path, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state), "daemon"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def cycles_done(state: Path) -> int:
    import sqlite3

    if not state.exists():
        return 0
    try:
        return int(sqlite3.connect(state).execute("SELECT count(*) FROM runs WHERE status = 'ok'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def wait_for_cycles(state: Path, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cycles_done(state) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} cycles finished in {timeout} s")


def test_daemon_cycles_and_stops_cleanly_on_sigterm(config: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    daemon = start(config, state)
    try:
        wait_for_cycles(state, 2)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert names[0] == "daemon_started"
    assert "cycle_finished" in names
    assert names[-1] == "daemon_stopped"
    assert all("run_id" in e for e in events if e["event"].startswith("cycle_"))


def test_daemon_second_instance_exits_4_and_kill_leaves_no_stale_lock(config: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    first = start(config, state)
    try:
        wait_for_cycles(state, 1)
        second = start(config, state)
        _, err = second.communicate(timeout=30)
        assert second.returncode == 4
        assert "another crm-sync instance" in err
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        before = cycles_done(state)
        third = start(config, state)
        try:
            wait_for_cycles(state, before + 1)  # the new instance got the lock at once and cycled
        finally:
            third.send_signal(signal.SIGTERM)
            third.communicate(timeout=30)
        assert third.returncode == 0
    finally:
        if first.poll() is None:
            first.kill()
