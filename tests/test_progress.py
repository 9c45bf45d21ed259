"""Progress bars: a cycle reports each phase a page at a time; the CLI draws them on a
terminal and prints nothing extra when stderr is a pipe."""

from __future__ import annotations

import io
import itertools
import os
import pty
import select
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import ROOT, example_config_for, run_cli

from sandbox import Sandbox, generate_book
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import example_against
from sync.cycle import run_cycle
from sync.progress import terminal_progress

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.slow
def test_cycle_reports_every_phase_with_its_final_count() -> None:
    with Sandbox(generate_book(1_200, seed=3, now=NOW), now=NOW) as sandbox:
        # Vitally's 1,000 requests a minute would hold this cycle's requests (over 1,000) back for a minute of
        # real time (tests/test_connector_vitally_parallel.py covers that wait): not what this test reads.
        sandbox.configure(vitally_rate_limit=10_000_000)
        config = example_against(sandbox.url)
        state = StateDB.memory()
        seen: dict[str, tuple[int, int | None]] = {}
        calls: list[str] = []
        dones: list[int] = []

        def hook(phase: str, done: int, total: int | None) -> None:
            calls.append(phase)
            dones.append(done)
            seen[phase] = (done, total)

        report = run_cycle(
            config, state, make_vitally(config), make_salesforce(config), clock=lambda: NOW, progress=hook
        )

    assert seen["Vitally accounts read"] == (1_200, None)
    assert calls.count("Vitally accounts read") == 2  # one page of 1,000, then the rest
    for sobject in ("Lead", "User", "Opportunity", "Account"):
        assert seen[f"Salesforce {sobject} read"][0] == report.counts[f"sf_{sobject.lower()}_read"]
    # A page at a time (1,000 of 1,200), then the final count (the malformed accounts are not evaluated).
    evaluated = [done for phase, done in zip(calls, dones, strict=True) if phase == "accounts evaluated"]
    assert evaluated == [1_000, report.counts["accounts_evaluated"]]
    assert seen["accounts evaluated"] == (report.counts["accounts_evaluated"], 1_200)
    sent, total = seen["writes sent"]
    assert total == report.counts["queued"] and sent == report.counts["applied"] == total > 0


def test_terminal_progress_draws_on_a_terminal_and_is_silent_on_a_pipe() -> None:
    terminal, pipe = _Terminal(), io.StringIO()
    with terminal_progress(terminal) as hook:
        hook("Vitally accounts read", 500, None)
        hook("writes sent", 3, 10)
    with terminal_progress(pipe) as hook:
        hook("Vitally accounts read", 500, None)
    assert "Vitally accounts read" in terminal.getvalue() or "writes sent" in terminal.getvalue()
    assert pipe.getvalue() == ""


def _run_on_a_terminal(config: Path, state: Path) -> tuple[int, str]:
    """The CLI with stderr on a pseudo-terminal (stdout piped): returns (exit, what stderr showed)."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VITALLY_", "SALESFORCE_", "CRM_SYNC_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state), "run", "--dry-run"],
        stdout=subprocess.DEVNULL,
        stderr=follower,
        cwd=ROOT,
        env={**env, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(follower)
    shown = bytearray()
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown.extend(chunk)
    os.close(leader)
    return process.wait(timeout=60), shown.decode(errors="replace")


@pytest.mark.e2e
def test_cli_shows_progress_on_a_terminal_and_only_the_summary_on_a_pipe(tmp_path: Path) -> None:
    with Sandbox(generate_book(2_500, seed=4, now=NOW), now=NOW) as sandbox:
        config = example_config_for(sandbox.url, tmp_path / "config.toml")
        code, shown = _run_on_a_terminal(config, tmp_path / "state.db")
        piped = run_cli(config, tmp_path / "state.db", "run", "--dry-run")
    assert code == 0 and piped.returncode == 0
    assert "Vitally accounts read" in shown and "dry run 1" in shown
    assert "accounts read" not in piped.stderr and "\x1b[" not in piped.stderr
    assert "dry run" in piped.stderr


def test_every_write_answered_is_progress_tasks_included() -> None:
    """A book's tasks are sent one request each; a long run of them must not look stalled
    (bench/first_sync.py found 3 minutes without progress before each task counted)."""
    with Sandbox(generate_book(300, seed=5, now=NOW), now=NOW) as sandbox:
        sandbox.configure(vitally_rate_limit=10_000_000)
        config = example_against(sandbox.url)
        writes: list[int] = []

        def hook(phase: str, done: int, total: int | None) -> None:
            if phase == "writes sent":
                writes.append(done)

        report = run_cycle(
            config, StateDB.memory(), make_vitally(config), make_salesforce(config), clock=lambda: NOW, progress=hook
        )
        tasks = sum(n for key, n in sandbox.counters()["vitally"].items() if key.startswith("POST /resources/tasks"))
    assert tasks > 10  # 14 in this book (circle-back tasks are for accounts in onboarding only)
    assert writes[0] == 0 and writes[-1] == report.counts["applied"]  # from the start of the step to its end
    assert writes == sorted(writes)
    steps = [b - a for a, b in itertools.pairwise(writes)]
    assert sum(step == 1 for step in steps) >= tasks  # each task answered is a call of its own


def test_a_run_that_draws_no_table_never_imports_rich() -> None:
    """The CLI's start (its modules and its argument parser, which reads `sync.report`) leaves rich
    unloaded: it is imported where a table or a progress bar is drawn, so a JSON run, a service
    and a cron job do not pay its 25-30 ms. A fresh interpreter, since this one has it loaded."""
    code = (
        "import contextlib, io, sys\n"
        "from sync.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as shown, contextlib.suppress(SystemExit):\n"
        "    main(['run', '--help'], io.StringIO(), io.StringIO())  # argparse exits after the help\n"
        "assert 'usage: crm-sync run' in shown.getvalue()\n"
        "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
