"""bench/event_cpu.py, an event's CPU as the book grows (issue 17), run for real at a small size:
it must time mini-cycles that ran (a row per size, both kinds of event), not print a table of
nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e


def test_the_bench_times_each_kind_of_event_at_each_size() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "event_cpu.py"), "--accounts", "150,300", "--events", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if re.match(r"\| \d", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["150", "300"]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert re.fullmatch(r"[\d,]+ writes, \d+ s", cells[2]), cells  # the first cycle applied its plan
        for cell in cells[3:]:
            median, most = (float(part.split()[0]) for part in cell.split(" / "))
            assert 0 < median <= most, cells  # two events of the kind each took some CPU
