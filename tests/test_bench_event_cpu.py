"""bench/event_cpu.py, an event's CPU as the book grows (issue 17), run for real at a small size:
it must time mini-cycles that ran (a row per size, both kinds of event), not print a table of
nothing."""

from __future__ import annotations

import re

import pytest
from support import run_bench

pytestmark = pytest.mark.e2e


def test_the_bench_times_each_kind_of_event_at_each_size() -> None:
    printed = run_bench("event_cpu.py", "--accounts", "150,300", "--events", "2")
    rows = [line for line in printed.splitlines() if re.match(r"\| \d", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["150", "300"]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert re.fullmatch(r"[\d,]+ writes, \d+ s", cells[2]), cells  # the first cycle applied its plan
        for cell in cells[3:]:
            median, most = (float(part.split()[0]) for part in cell.split(" / "))
            assert 0 < median <= most, cells  # two events of the kind each took some CPU
