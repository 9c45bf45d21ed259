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


def test_a_daemon_cycle_that_judged_or_wrote_is_shown_but_left_out_of_the_idle_median() -> None:
    """The sandbox's delayed Playbooks once changed 734 of 10,000 accounts in one of the three
    measured cycles and made its CPU the idle row's median: each cycle is printed with its counts,
    and the median, which bench/goals.py reads, is of the idle ones alone."""
    import io

    from rich.console import Console

    scenarios = bench_module("scenarios")
    goals = bench_module("goals")
    logged = [
        {"event": "cycle_finished", "cpu_seconds": 0.15, "accounts_read": 0, "accounts_evaluated": 0, "queued": 0},
        {"event": "cycle_finished", "cpu_seconds": 0.46, "accounts_read": 735, "accounts_evaluated": 734, "queued": 0},
        {"event": "cycle_finished", "cpu_seconds": 0.13, "accounts_read": 1, "accounts_evaluated": 0, "queued": 0},
    ]
    cycles = tuple(scenarios.DaemonCycle.of(event) for event in logged)
    assert [cycle.idle for cycle in cycles] == [True, False, True]
    assert scenarios.idle_median(cycles) == 0.14
    assert scenarios.idle_median(cycles[1:2]) is None

    measured = scenarios.Measured(exit_code=0, wall_s=1.0, peak_rss_mib=90.0, stderr_tail="", cpu_s=0.9)
    requests = dict.fromkeys(scenarios.KINDS, 0)
    result = scenarios.Result("idle-daemon", requests, measured, 10_000, dict(requests), None, cycles)
    out = io.StringIO()
    scenarios.report(Console(file=out, width=160), 10_000, {"idle-daemon": "idle cycle"}, [result], {})
    printed = out.getvalue()
    assert goals._DAEMON_CPU.search(printed).group(1) == "0.14"
    assert "cycle 3: 0.46 s (735 accounts read, 734 accounts judged again, 0 writes)" in printed
    assert "cycle 2: 0.15 s (0 accounts read, idle)" in printed
    assert "cycle 4: 0.13 s (1 account read, idle)" in printed
