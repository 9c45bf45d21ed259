"""The state file (issue #13, item 7): a damaged, truncated or foreign state file is refused with a
clear message and exit status 5 (it was a traceback and exit 1, documented as "some writes
failed"), and left as it is; one instance per database whatever path names it (a symlinked
`--state` or a deleted lock file let three daemons share one); the private copies of dry runs,
`explain`, `failed` and `report` leave no file behind; report files are owner-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, example_config_for, run_cli

from sandbox import Sandbox, generate_book

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
NOW_TEXT = "2026-11-22T09:00:00Z"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(generate_book(80, seed=8, now=NOW), now=NOW) as sandbox:
        sandbox.configure(vitally_rate_limit=10**7)
        yield sandbox


@pytest.fixture(scope="module")
def good_state(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real state file, after one applied run."""
    directory = tmp_path_factory.mktemp("good")
    state = directory / "state.db"
    result = run_cli(example_config_for(sandbox.url, directory / "config.toml"), state, "run", "--now", NOW_TEXT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not Path(f"{state}-wal").exists()  # checkpointed and closed: the file is the whole state
    return state


def _corrupt(good: Path, target: Path) -> None:
    data = bytearray(good.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8192] = os.urandom(8192)  # two pages of the mirror overwritten
    target.write_bytes(bytes(data))


def _truncated(good: Path, target: Path) -> None:
    data = good.read_bytes()
    target.write_bytes(data[: len(data) // 2])


def _foreign_sqlite(good: Path, target: Path) -> None:
    db = sqlite3.connect(target)
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    db.execute("INSERT INTO notes (body) VALUES ('someone else''s database')")
    db.commit()
    db.close()


def _foreign_text(good: Path, target: Path) -> None:
    target.write_text("state = 'not a database'\n")


def _newer(good: Path, target: Path) -> None:
    target.write_bytes(good.read_bytes())
    db = sqlite3.connect(target)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()


UNUSABLE: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "corrupt": (_corrupt, "damaged"),
    "truncated": (_truncated, "damaged"),
    "foreign-sqlite": (_foreign_sqlite, "not a crm-sync state file (an SQLite database with the tables notes)"),
    "foreign-text": (_foreign_text, "not a readable SQLite database (file is not a database)"),
    "newer": (_newer, "written by a newer crm-sync (schema version 99"),
}
COMMANDS = {
    "run": ("run", "--now", NOW_TEXT),
    "dry-run": ("--dry-run", "--now", NOW_TEXT),
    "daemon": ("daemon",),
    "report": ("report",),
    "failed": ("failed",),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", sorted(UNUSABLE))
def test_state_unusable_file_is_refused_with_exit_5_and_left_as_it_is(
    kind: str, command: str, sandbox: Sandbox, good_state: Path, tmp_path: Path
) -> None:
    make, words = UNUSABLE[kind]
    state = tmp_path / "state.db"
    make(good_state, state)
    before = hashlib.sha256(state.read_bytes()).hexdigest()
    mode = stat.S_IMODE(state.stat().st_mode)
    config = example_config_for(sandbox.url, tmp_path / "config.toml")
    calls = sandbox.calls_total()

    result = run_cli(config, state, *COMMANDS[command], timeout=60)

    assert result.returncode == 5, (kind, command, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert f"error: the state file {state} cannot be used: " in result.stderr
    assert words in result.stderr
    assert "restore the state file from a backup" in result.stderr and "Recovering the state file" in result.stderr
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before and stat.S_IMODE(state.stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("state.db")) in (
        ["state.db"],
        ["state.db", "state.db.lock"],  # the pid note of the instance lock (run, daemon)
    )
    assert sandbox.calls_total() == calls  # refused before a single request


# -- one instance per database ---------------------------------------------------------------------


def _daemon(config: Path, state: Path, log: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state), "daemon"]
    with log.open("w") as err:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, text=True, cwd=ROOT)


def _started(log: Path) -> bool:
    return log.exists() and any('"daemon_started"' in line for line in log.read_text().splitlines())


def test_state_second_daemon_through_a_symlink_or_after_the_lock_file_was_deleted_exits_4(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config = example_config_for(
        sandbox.url, tmp_path / "config.toml", {"interval_seconds = 900": "interval_seconds = 1"}
    )
    state = tmp_path / "data" / "state.db"
    first = _daemon(config, state, tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 60
        while not _started(tmp_path / "first.log"):
            assert time.monotonic() < deadline and first.poll() is None, (tmp_path / "first.log").read_text()
            time.sleep(0.05)
        link = tmp_path / "elsewhere" / "link.db"
        link.parent.mkdir()
        link.symlink_to(state)
        (tmp_path / "hard").mkdir()
        os.link(state, tmp_path / "hard" / "same.db")
        lock_note = state.with_name("state.db.lock")
        assert lock_note.read_text() == str(first.pid)

        via_symlink = run_cli(config, link, "daemon", timeout=30)
        via_hard_link = run_cli(config, tmp_path / "hard" / "same.db", "run", timeout=30)
        lock_note.unlink()
        after_delete = run_cli(config, state, "daemon", timeout=30)

        for second in (via_symlink, via_hard_link, after_delete):
            assert second.returncode == 4, second.stderr[-2000:]
            assert "another crm-sync instance" in second.stderr and "holds the state database" in second.stderr
        assert f"(pid {first.pid})" in via_symlink.stderr
        assert first.poll() is None  # undisturbed
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0


# -- temporary copies and report files -------------------------------------------------------------


def test_state_private_copies_leave_no_file_behind_and_reports_are_owner_only(
    sandbox: Sandbox, good_state: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    state.write_bytes(good_state.read_bytes())
    config = example_config_for(sandbox.url, tmp_path / "config.toml")
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = {"TMPDIR": str(private_tmp)}
    account = sandbox.state()["vitally"]["accounts"][0]["id"]
    existing = tmp_path / "old-report.html"
    existing.write_text("an older report")
    existing.chmod(0o644)

    results: dict[str, Any] = {
        "dry-run": run_cli(config, state, "--dry-run", "--now", NOW_TEXT, env=env),
        "explain": run_cli(config, state, "explain", account, "--now", NOW_TEXT, env=env),
        "failed": run_cli(config, state, "failed", env=env),
        "report": run_cli(
            config, state, "report", "--output", str(tmp_path / "report.html"), "--format", "html", env=env
        ),
        "report-over": run_cli(config, state, "report", "--output", str(existing), "--format", "json", env=env),
    }

    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr[-2000:])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("state.db")) == ["state.db"]
    assert list(private_tmp.iterdir()) == []  # every private copy, with its -wal and -shm, removed
    assert hashlib.sha256(state.read_bytes()).digest() == hashlib.sha256(good_state.read_bytes()).digest()
    for report in (tmp_path / "report.html", existing):
        assert stat.S_IMODE(report.stat().st_mode) == 0o600, oct(report.stat().st_mode)
    assert json.loads(existing.read_text())["runs"]
