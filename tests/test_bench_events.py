"""bench/events.py, the webhook half of issue 17's goal table, run for real at a small size, and
bench/goals.py's reading of its output.

The inbound row once timed nothing: the sandbox's org gives every web-to-lead its default lead
owner (as a real org does, Setup > Lead Settings), and the bench waited for "an owner". These
tests hold the bench to timing the routed owner, and goals.py to reading the figures it prints.
"""

from __future__ import annotations

import pytest
from support import bench_module, run_bench

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def printed() -> str:
    return run_bench("events.py", "--events", "3")


def test_each_inbound_lead_is_timed_until_crm_sync_routes_it(printed: str) -> None:
    [inbound] = [line for line in printed.splitlines() if line.startswith("| inbound lead")]
    cells = [cell.strip() for cell in inbound.strip("|").split("|")]
    events, reads_per_change, writes_per_change = cells[1], cells[5], cells[8]
    assert events == "3"
    # Routing a web-to-lead is one owner write after reading the lead and its context: a measure
    # that saw the default owner and stopped would have written nothing.
    assert float(writes_per_change) >= 1.0
    assert reads_per_change.startswith("2.00")


def test_goals_reads_the_latency_and_requests_the_bench_prints(printed: str) -> None:
    goals = bench_module("goals")
    p95 = dict(goals._EVENT_ROW.findall(printed))
    assert set(p95) == {"segment added", "inbound lead"}
    assert all(float(seconds) > 0.0 for seconds in p95.values())  # read, never judged here: bench figures
    per_webhook = [float(value) for value in goals._PER_WEBHOOK.findall(printed)]
    assert len(per_webhook) == 4 and max(per_webhook) <= 3.0  # one per row: the linked lead's since 2026-12-07


def test_each_opportunity_is_timed_until_its_accounts_stage_is_written(printed: str) -> None:
    [opened] = [line for line in printed.splitlines() if line.startswith("| opportunity opened")]
    cells = [cell.strip() for cell in opened.strip("|").split("|")]
    events, reads_per_change, writes_per_change = cells[1], cells[5], cells[8]
    assert events == "3"
    # The opportunity read by id and the account's last look; the stage's PUT (a measure that
    # stopped before the mini-cycle wrote would count no write).
    assert reads_per_change.startswith("2.00") and float(writes_per_change) >= 1.0
