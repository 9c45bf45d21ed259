"""A first sync you can watch (issue #16): the real daemon's first cycle against a sandbox holding
N accounts, at Vitally's real rate limit (1,000 requests a minute: the sandbox's default, which
this script checks and never lifts), scraped like an operator would.

Usage:
    .venv/bin/python bench/first_sync.py                      # 20,000 accounts (about 25 minutes)
    .venv/bin/python bench/first_sync.py --accounts 2000 --scrape-seconds 10

The sandbox runs in a process of its own (`python -m sync sandbox --generate N`), the daemon in
another (`python -m sync --config CFG --state DB daemon`, its JSON log to a file). Every
`--scrape-seconds` this prints one row: `/healthz` (code, status, phase), the last
`cycle_progress` line of the log (phase, done/total, rate, ETA) and `/metrics` (writes applied,
Vitally PUTs, outbox pending, rate-limit waits). When the first cycle has finished it prints the
figures: duration, requests by service (counted by the sandbox), the time the rate limit alone
imposes (Vitally requests / 1,000 a minute), whether `/healthz` answered 200 at every scrape,
whether the writes' ETA fell, and whether the metrics moved during the cycle. Exit 0 when all
three held, 1 otherwise. Nothing but 127.0.0.1 is contacted; both processes are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families
from scenarios import stop_child

ROOT = Path(__file__).resolve().parent.parent
_EXAMPLE_URL = "http://127.0.0.1:8765"
_OUTER_PREFIXES = ("VITALLY_", "SALESFORCE_", "CRM_SYNC_")  # no secrets or settings from our shell
REAL_LIMIT, REAL_WINDOW = 1_000, 60.0  # Vitally: 1,000 requests a minute per key


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_OUTER_PREFIXES)}


def _get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _stop(process: subprocess.Popen[str] | None) -> None:
    if process is not None:
        stop_child(process, timeout=60)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return found


def _metric(samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@dataclass
class Row:
    at: float
    code: int
    status: str
    phase: str
    progress: dict[str, Any] | None
    applied: float
    puts: float
    pending: float
    waits: float
    wait_seconds: float


@dataclass
class Run:
    rows: list[Row] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def _events(log: Path) -> list[dict[str, Any]]:
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return [json.loads(line) for line in lines if line.startswith("{")]


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _print_row(row: Row) -> None:
    p = row.progress or {}
    done = f"{_fmt(p.get('done'))}/{_fmt(p.get('total'))}" if p else "-"
    print(
        f"{row.at:7.0f} {row.code:>4} {row.status:<12} {p.get('phase', '-'):<22} {done:>15} "
        f"{_fmt(p.get('rate_per_second')):>8} {_fmt(p.get('eta_seconds')):>6} "
        f"{row.applied:>8,.0f} {row.puts:>8,.0f} {row.pending:>8,.0f} {row.waits:>6,.0f} {row.wait_seconds:>8,.0f}",
        flush=True,
    )


class Processes:
    """The sandbox and the daemon, each in a process of its own."""

    def __init__(self, accounts: int, workdir: Path, scrape_seconds: float) -> None:
        self.accounts = accounts
        self.workdir = workdir
        self.scrape_seconds = scrape_seconds
        self.sandbox: subprocess.Popen[str] | None = None
        self.daemon: subprocess.Popen[str] | None = None
        self.url = ""
        self.health = ""
        self.log = workdir / "daemon.log"
        self._files: list[IO[str]] = []

    def start_sandbox(self) -> None:
        port = _free_port()
        sandbox_log = (self.workdir / "sandbox.log").open("w")
        self._files.append(sandbox_log)
        self.sandbox = subprocess.Popen(
            [sys.executable, "-m", "sync", "sandbox", "--generate", str(self.accounts), "--port", str(port)],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=sandbox_log,
            text=True,
        )
        assert self.sandbox.stdout is not None
        if not self.sandbox.stdout.readline().startswith("sandbox listening on "):
            raise RuntimeError(f"the sandbox did not start; see {self.workdir / 'sandbox.log'}")
        self.url = f"http://127.0.0.1:{port}"
        config = json.loads(_get(f"{self.url}/_sandbox/config")[1])
        if (config["vitally_rate_limit"], config["vitally_rate_window_s"]) != (REAL_LIMIT, REAL_WINDOW):
            raise RuntimeError(f"the sandbox's Vitally rate limit is not the real one: {config}")

    def start_daemon(self) -> None:
        health_port = _free_port()
        text = (ROOT / "config.example.toml").read_text(encoding="utf-8").replace(_EXAMPLE_URL, self.url)
        text = text.replace("health_port = 9465", f"health_port = {health_port}")
        text = text.replace("interval_seconds = 900", "interval_seconds = 86400")  # one cycle is the bench
        config = self.workdir / "config.toml"
        config.write_text(text, encoding="utf-8")
        self.health = f"http://127.0.0.1:{health_port}"
        log = self.log.open("w")
        self._files.append(log)
        self.daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sync",
                "--config",
                str(config),
                "--state",
                str(self.workdir / "state.db"),
                "daemon",
            ],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )

    def stop(self) -> None:
        _stop(self.daemon)
        _stop(self.sandbox)
        if self.sandbox is not None and self.sandbox.stdout is not None:
            self.sandbox.stdout.close()
        for file in self._files:
            file.close()

    def scrape(self, started: float) -> Row:
        try:
            code, body = _get(f"{self.health}/healthz")
            health = json.loads(body)
            samples = _samples(_get(f"{self.health}/metrics")[1])
        except (OSError, ValueError):  # not listening yet
            code, health, samples = 0, {"status": "no answer"}, {}
        progress = [e for e in _events(self.log) if e["event"] == "cycle_progress"]
        return Row(
            at=time.monotonic() - started,
            code=code,
            status=str(health.get("status")),
            phase=str(health.get("phase")),
            progress=progress[-1] if progress else None,
            applied=_metric(samples, "crm_sync_writes_total", kind="applied"),
            puts=_metric(samples, "crm_sync_writes_total", kind="vitally_puts"),
            pending=_metric(samples, "crm_sync_outbox_depth", status="pending"),
            waits=_metric(samples, "crm_sync_waits_total", service="vitally", reason="rate_limit"),
            wait_seconds=_metric(samples, "crm_sync_wait_seconds_total", service="vitally", reason="rate_limit"),
        )

    def finished(self) -> bool:
        return any(e["event"] in ("cycle_finished", "daemon_stopped") for e in _events(self.log))


def watch(processes: Processes, limit_seconds: float) -> Run:
    run = Run()
    print(
        f"{'s':>7} {'code':>4} {'status':<12} {'last progress line':<22} {'done/total':>15} {'rate/s':>8} "
        f"{'eta s':>6} {'applied':>8} {'PUTs':>8} {'pending':>8} {'waits':>6} {'waited s':>8}"
    )
    started = time.monotonic()
    while time.monotonic() - started < limit_seconds:
        time.sleep(processes.scrape_seconds)
        row = processes.scrape(started)
        run.rows.append(row)
        _print_row(row)
        if processes.finished():
            break
    run.events = _events(processes.log)
    return run


def summarise(run: Run, counters: Mapping[str, Any], accounts: int) -> bool:
    events = run.events
    begun = next(e for e in events if e["event"] == "cycle_started")
    ended = next((e for e in events if e["event"] == "cycle_finished"), None)
    vitally = sum(int(n) for n in dict(counters.get("vitally", {})).values())
    salesforce = sum(int(n) for n in dict(counters.get("salesforce", {})).values())
    print(f"\naccounts: {accounts:,}; Vitally requests: {vitally:,}; Salesforce requests: {salesforce:,}")
    if ended is None:
        print("the first cycle did not finish in time")
        return False
    duration = _seconds_between(begun["at"], ended["at"])
    floor = vitally / REAL_LIMIT * REAL_WINDOW
    print(f"first cycle: {duration / 60:.1f} min ({duration:,.0f} s), status {ended['status']}")
    print(f"the rate limit alone: {vitally:,} Vitally requests / 1,000 a minute = {floor / 60:.1f} min")
    print(f"counts: {json.dumps({k: v for k, v in ended.items() if k not in ('at', 'event')})}")
    during = [r for r in run.rows if r.status in ("progressing", "stalled")]
    healthy = all(r.code == 200 for r in run.rows if r.code)
    print(f"/healthz: {len(run.rows)} scrapes, codes {sorted({r.code for r in run.rows})}, "
          f"statuses {sorted({r.status for r in run.rows})}; {len(during)} during the cycle")  # fmt: skip
    writes = [e for e in events if e["event"] == "cycle_progress" and e["phase"] == "writes sent"]
    etas = [e["eta_seconds"] for e in writes if e["eta_seconds"] is not None]
    falling = len(etas) >= 3 and etas[-1] < etas[0] and etas == sorted(etas, reverse=True)
    print(f"writes' ETA over {len(etas)} progress lines: {etas[:6]} … {etas[-3:]}; falling at every line: {falling}")
    moved = sorted({r.applied for r in during})
    rising = len(moved) >= 3
    print(f"crm_sync_writes_total{{kind=applied}} during the cycle: {len(moved)} distinct values, "
          f"{moved[:3]} … {moved[-2:]}; rising mid-cycle: {rising}")  # fmt: skip
    return healthy and falling and rising


def _seconds_between(first: str, second: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(second) - datetime.fromisoformat(first)).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=20_000, help="accounts in the sandbox (default 20,000)")
    parser.add_argument("--scrape-seconds", type=float, default=30, help="seconds between two scrapes (default 30)")
    parser.add_argument("--limit-minutes", type=float, default=180, help="give up after this long (default 180)")
    parser.add_argument("--workdir", type=Path, help="keep the config, state, and logs here (default: a temp dir)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="first-sync-") as temporary:
        workdir = options.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        processes = Processes(options.accounts, workdir, options.scrape_seconds)
        try:
            processes.start_sandbox()
            processes.start_daemon()
            run = watch(processes, options.limit_minutes * 60)
            counters = json.loads(_get(f"{processes.url}/_sandbox/counters")[1])
        finally:
            processes.stop()
        return 0 if summarise(run, counters, options.accounts) else 1


if __name__ == "__main__":
    sys.exit(main())
