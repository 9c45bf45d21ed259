"""bench/scenarios.py's runs: which runs each selection of scenarios needs, in which order. The
`next-day` scenario runs last: its cycle's judgements start on the next day of the rules' clock,
which no later run (on the machine's clock) would be inside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support import bench_module


def test_the_next_day_runs_last_after_a_run_that_reads_back_the_writes_before_it() -> None:
    scenarios = bench_module("scenarios")
    names = [step.name for step in scenarios.steps_for(list(scenarios.SCENARIOS))]
    assert names[-2:] == ["settle-before-next-day", "next-day"]
    assert names.index("burst") < names.index("next-day")
    alone = scenarios.steps_for(["next-day"])
    assert [(s.name, s.change, s.reported) for s in alone] == [
        ("cold", "none", False),
        ("repeat", "none", False),
        ("settle-before-next-day", "interval", False),
        ("next-day", "next-day", True),
    ]


def test_the_next_day_is_five_minutes_past_the_next_midnight_utc() -> None:
    moment = datetime.fromisoformat(bench_module("scenarios").next_day().replace("Z", "+00:00"))
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert (moment.date(), moment.hour, moment.minute, moment.tzinfo) == (tomorrow, 0, 5, UTC)
