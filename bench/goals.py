"""Issue #17's goal table: each measure for the tree as it was ("today", `--baseline`, by default the
commit before issue #17's faster cold cycle) and for this working tree ("new"), on this machine, in
one run.

Usage:
    make bench-goals                                  # the table (part of `make bench`)
    .venv/bin/python bench/goals.py --repeat 3 --baseline int
    .venv/bin/python bench/goals.py --compiled         # also the optional compiled build

How each row is measured:

- cold dry run of 100,000: `python -m sync run --dry-run` on an empty state against the sandbox in
  a process of its own (`python -m sync sandbox --generate 100000`, Vitally's rate limit lifted),
  each tree's CLI in turn, `--repeat` times; the median wall time, and the CPU time of the CLI child
  (user + sys), which the machine's other load disturbs much less than the wall time.
- rule set over 100,000 on one core: this tree's `bench/rule_set.py` run against each tree's
  packages (rules that cannot fire skipped, CPU time, the best of `--repeat` runs). Like for like,
  as the baseline's own bench measured it: `--context empty` (`evaluate_account` with no Salesforce
  context, the book's malformed records skipped), for both trees; and for this tree also a cycle's
  evaluation (`--context mirror`: `Decider.account` with each account's Salesforce context from the
  book's records), which the baseline has no code for. (Until 2026-12-04 each tree's own script ran,
  and the baseline's imported this tree's rules: its script's directory, not the tree, came first
  on the path.)
- peak RSS at 10,000 and at 100,000: the CLI child's peak resident set (`VmHWM`, sampled) in those
  cold dry runs, plus that of every process it starts (a worker, multiprocessing's resource
  tracker), summed; `make bench` (bench/scenarios.py) shows it for every other scenario.
- the plans: every cold dry run prints its plan as JSON lines (`--now` fixed); the table's footer
  says whether both trees' plans were byte-identical. Each tree runs with its own
  config.example.toml (an older tree rejects settings added since), so the plans may differ where
  the example config's settings did.
- idle and 1 % incremental cycle CPU: this tree's `bench/scenarios.py --scenarios
  idle-daemon,incremental --no-naive --tree TREE` for each tree (a cold and a repeat run first; then
  a daemon's idle cycle: the services' clock moved on by the daemon's interval, an unreported cycle,
  moved on again, the measured cycle; then a run after 1 % of the accounts got a new MRR): the CPU
  time of the CLI child in those two runs, one run each. The idle row also gives the median CPU of
  an idle cycle inside a running `python -m sync daemon` (its `cycle_finished` log's
  `cpu_seconds`: what a daemon pays each interval, without the interpreter's start, the imports
  and the state check a CLI run pays once); a tree whose daemon does not log it shows none.
  (Before 2026-12-04 the idle row was the cycle right after the repeat run, which re-reads the
  repeat run's lead writes still inside the Salesforce look-back: `bench/scenarios.py` prints
  both.)
- the webhook rows (latency p95 of 200 events each way, requests per webhook beyond the records
  written): this tree's `bench/events.py` (a daemon with its event receiver against the sandbox,
  which sends the webhooks itself). The baseline has no receiver: an event waits for the next
  scheduled cycle (the interval, 900 s by default, plus the cycle).

- with `--compiled`, the cold dry runs, their peak RSS and the rule set also for this tree's
  optional compiled build (README, "The compiled build"): a copy of the tree in the run's
  temporary directory, built with `python -m sync.compiled build`, taking its turn between the
  other two trees against the same sandbox; its plans are compared with theirs.

The column "new ÷ today" gives each CPU or wall figure of this tree as a share of the baseline's
in the same run. The machine's speed moves (on 2026-12-03 the same tree read 39-60 % slower in the
evening than in the morning), the share much less: compare runs on different hours by it.

The baseline runs from a `git archive` of its commit, with this tree's virtualenv: `python -m sync`
in that directory imports that tree's packages (the current directory comes first on the path).
Both trees' packages get their bytecode written first, as `pip install` writes it for an installed
crm-sync (`compile_bytecode` in bench/scenarios.py; this project's machine sets
PYTHONDONTWRITEBYTECODE, under which a source checkout compiles every module it imports on every
start: ~0.12 s of a CLI child's CPU that a deployed crm-sync does not pay).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from rich.console import Console
from rich.table import Table
from scenarios import ROOT, Measured, SandboxProcess, _clean_env, _config, compile_bytecode, machine, measure

BASELINE = "5f2d409"
"""The tree before issue #17's faster cold cycle (`int` when the work began)."""

NOW = "2026-11-22T09:00:00Z"  # the rules' clock: both trees plan the same day


@dataclass(frozen=True)
class Run:
    """One CLI child: wall seconds, CPU seconds (user + sys) and peak RSS in MiB."""

    wall_s: float
    cpu_s: float
    rss_mib: float
    plan: str  # digest of the plan printed (JSON lines)


def export(ref: str, into: Path) -> Path | None:
    """The tree at `ref` extracted into `into` (None when git does not know `ref`)."""
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True)
    if archive.returncode != 0:
        return None
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def cold_dry_run(tree: Path, config: Path, state: Path) -> Run:
    """One cold dry run of `tree`'s CLI on an empty state."""
    state.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state)]
    measured: Measured = measure([*argv, "run", "--dry-run", "--format", "json", "--now", NOW], cwd=tree)
    if measured.exit_code != 0:
        raise RuntimeError(f"{tree}: exit {measured.exit_code}\n{measured.stderr_tail}")
    return Run(measured.wall_s, measured.cpu_s, measured.peak_rss_mib, measured.stdout_digest)


def cold_dry_runs(trees: Sequence[Path], accounts: int, repeat: int, workdir: Path) -> list[list[Run]]:
    """`repeat` cold dry runs of each tree, taken in turn against one sandbox process."""
    runs: list[list[Run]] = [[] for _ in trees]
    with SandboxProcess(accounts, 0.0, workdir / f"sandbox-{accounts}.log") as sandbox:
        configs = [_config(sandbox.url, workdir / f"goals-{accounts}-{i}.toml", tree) for i, tree in enumerate(trees)]
        for _ in range(repeat):
            for i, tree in enumerate(trees):
                runs[i].append(cold_dry_run(tree, configs[i], workdir / f"goals-{i}.db"))
    return runs


_CYCLE_CPU = re.compile(r"│ (idle|incremental)[^│]*│[^│]*│\s*\d+ │\s*[\d.]+ │\s*([\d.]+) │")


_DAEMON_CPU = re.compile(r"inside a running daemon[^\n]*?median ([\d.]+) s CPU")


def cycle_cpu_seconds(tree: Path, accounts: int) -> dict[str, float]:
    """CPU seconds of `tree`'s CLI in an idle cycle and in a 1 % incremental one (`idle`,
    `incremental`), as this tree's bench/scenarios.py measures them (cold and repeat run first)."""
    scenarios = ["--scenarios", "idle-daemon,incremental", "--no-naive", "--tree", str(tree)]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scenarios.py"), "--accounts", str(accounts), *scenarios],
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:  # say why and leave the rows empty rather than lose every other figure
        tail = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        print(f"bench/scenarios.py --tree {tree} exited {done.returncode}:\n{tail}")
        return {"idle": float("nan"), "incremental": float("nan")}
    found = {"idle" if name.startswith("idle") else name: float(cpu) for name, cpu in _CYCLE_CPU.findall(done.stdout)}
    if set(found) != {"idle", "incremental"}:
        raise RuntimeError(f"bench/scenarios.py: no idle and incremental CPU in {done.stdout!r}")
    in_daemon = _DAEMON_CPU.search(done.stdout)  # a tree whose daemon does not log its cycles' CPU: none
    if in_daemon is not None:
        found["idle in a daemon"] = float(in_daemon.group(1))
    return found


_EVENT_ROW = re.compile(r"^\| (segment added|inbound lead)[^|]*\| \d+ \| [\d.]+ s \| ([\d.]+) s \|", re.MULTILINE)
_PER_WEBHOOK = re.compile(r"^\| [^|]+\|(?: [^|]+ \|){6} ([\d.]+) \|", re.MULTILINE)


@dataclass(frozen=True)
class Events:
    """`bench/events.py`'s figures: p95 seconds each way, and the most requests one webhook made
    beyond the records written."""

    segment_p95_s: float
    inbound_p95_s: float
    reads_per_webhook: float


def event_figures(tree: Path, events: int) -> Events | None:
    """`bench/events.py` of `tree` (None, with its output printed, when it fails)."""
    done = subprocess.run(
        [sys.executable, str(tree / "bench" / "events.py"), "--events", str(events)],
        cwd=tree,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    p95 = dict(_EVENT_ROW.findall(done.stdout))
    per_webhook = [float(value) for value in _PER_WEBHOOK.findall(done.stdout)]
    # Two rows, three since the opportunity's, four since the linked lead's (their requests count
    # towards the worst webhook).
    if done.returncode != 0 or set(p95) != {"segment added", "inbound lead"} or len(per_webhook) < 2:
        print(f"bench/events.py exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return None
    return Events(float(p95["segment added"]), float(p95["inbound lead"]), max(per_webhook))


_EVALUATE = re.compile(r"evaluate, cycle[^:]*: ([\d.]+) s")


def rule_set_seconds(tree: Path, accounts: int, repeat: int, context: str) -> float:
    """Seconds of CPU to evaluate the rule set over `accounts` on one core, best of `repeat`: this
    tree's `bench/rule_set.py --context CONTEXT` with `tree`'s packages first on the path (the
    script's own directory comes first, so without PYTHONPATH an older tree's script would import
    this tree's rules from the virtualenv's editable install)."""
    script = ROOT / "bench" / "rule_set.py"
    argv = [sys.executable, str(script), "--accounts", str(accounts), "--repeat", str(repeat), "--context", context]
    done = subprocess.run(
        argv, cwd=tree, env={**_clean_env(), "PYTHONPATH": str(tree)}, capture_output=True, text=True, check=True
    )
    found = _EVALUATE.search(done.stdout)
    if found is None:
        raise RuntimeError(f"{script} --context {context} on {tree}: no evaluation time in {done.stdout!r}")
    return float(found.group(1))


def compiled_copy(into: Path) -> Path:
    """A copy of this tree's packages and bench with the optional compiled build made in it
    (`python -m sync.compiled build`), measured beside the pure-Python tree."""
    ignore = shutil.ignore_patterns(".venv", ".git", "build", "*.so", "__pycache__", ".*_cache", ".hypothesis")
    shutil.copytree(ROOT, into, ignore=ignore)
    done = subprocess.run(
        [sys.executable, "-m", "sync.compiled", "build"],
        cwd=into,
        env={**_clean_env(), "PYTHONPATH": str(into)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the compiled build failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    compile_bytecode(into)
    return into


def _median(runs: Sequence[Run], value: Callable[[Run], float]) -> float:
    return statistics.median(value(run) for run in runs)


def _wall(run: Run) -> float:
    return run.wall_s


def _cpu(run: Run) -> float:
    return run.cpu_s


def _share(new: float, today: float) -> str:
    """`new` as a percentage of `today` (either unmeasured: "–")."""
    return "–" if not today or new != new or today != today else f"{100 * new / today:.1f} %"


def _cold(runs: Sequence[Run]) -> str:
    return f"{_median(runs, lambda r: r.wall_s):.1f} s wall, {_median(runs, lambda r: r.cpu_s):.1f} s CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=BASELINE, help=f"the 'today' commit (default {BASELINE})")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each tree per measure (default 2)")
    parser.add_argument("--accounts", type=int, default=100_000, help="the large book (default 100000)")
    parser.add_argument("--small", type=int, default=10_000, help="the small book (default 10000)")
    parser.add_argument("--events", type=int, default=200, help="webhook events each way (default 200)")
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="also measure the cold dry runs and the rule set of this tree's optional compiled build "
        "(a copy of the tree built with `python -m sync.compiled build`: mypyc and a C compiler needed)",
    )
    options = parser.parse_args()
    console = Console() if Console().is_terminal else Console(width=160)
    console.print(f"[b]machine[/b]: {machine()}")
    with tempfile.TemporaryDirectory(prefix="crm-sync-goals-") as directory:
        workdir = Path(directory)
        baseline = export(options.baseline, workdir / "baseline")
        if baseline is None:
            console.print(f"[red]git does not know {options.baseline!r}: the 'today' column is left empty[/red]")
        trees = [tree for tree in (baseline, ROOT) if tree is not None]
        built = compiled_copy(workdir / "compiled") if options.compiled else None
        for tree in trees:  # each CLI child starts as an installed crm-sync does: bytecode written
            compile_bytecode(tree)
        measured = trees if built is None else [*trees, built]
        small = cold_dry_runs(measured, options.small, options.repeat, workdir)
        large = cold_dry_runs(measured, options.accounts, options.repeat, workdir)
        rules = [rule_set_seconds(t, options.accounts, options.repeat, "empty") for t in measured]
        rules_mirror = rule_set_seconds(ROOT, options.accounts, options.repeat, "mirror")
        compiled_mirror = float("nan")
        if built is not None:
            compiled_mirror = rule_set_seconds(built, options.accounts, options.repeat, "mirror")
        cycles = [cycle_cpu_seconds(t, options.accounts) for t in trees]
        events = event_figures(ROOT, options.events)
    today: Callable[[list[str]], str] = (lambda cells: cells[0]) if baseline is not None else (lambda cells: "—")
    new = len(trees) - 1

    def peak(runs: list[list[Run]], i: int) -> str:
        return f"{max(r.rss_mib for r in runs[i]):.0f}"

    waits = today(["≤ interval + a cycle (no receiver)"])

    def webhook(figure: Callable[[Events], float], unit: str) -> str:
        return "failed (see above)" if events is None else f"{figure(events):.{3 if unit else 2}f}{unit}"

    def idle_cpu(cycle: dict[str, float]) -> str:
        daemon = cycle.get("idle in a daemon")
        in_daemon = "" if daemon is None else f"; {daemon:.2f} s a cycle in a running daemon"
        return f"{cycle['idle']:.2f} s CLI child{in_daemon}"

    rows: list[tuple[str, str, str, str]] = [
        (
            f"segment added in Vitally → lead owned in Salesforce, webhook path, p95 over {options.events} events",
            waits,
            webhook(lambda e: e.segment_p95_s, " s"),
            "≤ 5 s",
        ),
        (
            "inbound lead created in Salesforce → owner set, p95",
            waits,
            webhook(lambda e: e.inbound_p95_s, " s"),
            "≤ 5 s",
        ),
        (
            "requests per event beyond the records it writes (bench/events.py, worst webhook)",
            today(["–"]),
            webhook(lambda e: e.reads_per_webhook, ""),
            "≤ 3",
        ),
        (
            f"idle cycle CPU at {options.accounts:,} accounts (bench/scenarios.py idle-daemon)",
            today([idle_cpu(cycles[0])]),
            idle_cpu(cycles[new]),
            "≤ 1 s",
        ),
        (
            f"1 % incremental cycle CPU at {options.accounts:,} (CLI child, bench/scenarios.py)",
            today([f"{cycles[0]['incremental']:.2f} s"]),
            f"{cycles[new]['incremental']:.2f} s",
            "≤ 3 s",
        ),
        (
            f"cold dry run of {options.accounts:,}, wall, sandbox in its own process (median of {options.repeat})",
            today([_cold(large[0])]),
            _cold(large[new]),
            "≤ 15 s",
        ),
        (
            f"rule set over {options.accounts:,} on one core, CPU (bench/rule_set.py, best of {options.repeat})",
            today([f"{rules[0]:.2f} s no Salesforce context"]),
            f"{rules[new]:.2f} s no Salesforce context; {rules_mirror:.2f} s a cycle's (the mirror's context)",
            "≤ 1 s",
        ),
        (
            f"peak RSS at {options.small:,} and at {options.accounts:,} (cold dry run)",
            today([f"{peak(small, 0)} / {peak(large, 0)} MiB"]),
            f"{peak(small, new)} / {peak(large, new)} MiB",
            "≤ 150 MiB at both",
        ),
    ]
    # The new figure as a share of today's, measured in the same run: what stays put when the
    # machine's speed moves (the same tree read 39-60 % slower in the evening than in the morning
    # of 2026-12-03), so runs on different hours compare by it.
    ratios: list[str] = ["", "", ""]
    if baseline is not None:
        ratios += [
            _share(cycles[new]["idle"], cycles[0]["idle"]) + " CPU",
            _share(cycles[new]["incremental"], cycles[0]["incremental"]) + " CPU",
            f"{_share(_median(large[new], _wall), _median(large[0], _wall))} wall, "
            f"{_share(_median(large[new], _cpu), _median(large[0], _cpu))} CPU",
            _share(rules[new], rules[0]) + " CPU",
            "",
        ]
    else:
        ratios += [""] * (len(rows) - len(ratios))
    if built is not None:  # the optional compiled build of this tree (`--compiled`), measured alongside
        at = new + 1
        rows += [
            (
                f"cold dry run of {options.accounts:,}: this tree's compiled build (`make compiled`)",
                "",
                _cold(large[at]),
                "≤ 15 s",
            ),
            (
                f"rule set over {options.accounts:,}: this tree's compiled build",
                "",
                f"{rules[at]:.2f} s no Salesforce context; {compiled_mirror:.2f} s a cycle's",
                "≤ 1 s",
            ),
            (
                f"peak RSS at {options.small:,} and at {options.accounts:,}: this tree's compiled build",
                "",
                f"{peak(small, at)} / {peak(large, at)} MiB",
                "≤ 150 MiB at both",
            ),
        ]
        ratios += [
            f"{_share(_median(large[at], _wall), _median(large[0], _wall))} wall, "
            f"{_share(_median(large[at], _cpu), _median(large[0], _cpu))} CPU"
            if baseline is not None
            else "",
            _share(rules[at], rules[0]) + " CPU" if baseline is not None else "",
            "",
        ]
    table = Table(title=f"issue #17 goals: today = {options.baseline}, new = this tree", title_justify="left")
    for name in ("measure", "today", "new", "new ÷ today", "goal"):
        table.add_column(name, justify="left" if name == "measure" else "right")
    for (label, today_cell, new_cell, goal), ratio in zip(rows, ratios, strict=True):
        table.add_row(label, today_cell, new_cell, ratio, goal)
    console.print(table)
    if baseline is not None:
        console.print(f"{options.baseline} has no event receiver: an event waits for the next scheduled cycle.")
    for runs, size in ((small, options.small), (large, options.accounts)):
        pairs = [(0, new, "today's tree and this one")] if baseline is not None else []
        if built is not None:  # the compiled build must plan exactly what its sources plan
            pairs.append((new, new + 1, "this tree and its compiled build"))
        for first, second, named in pairs:
            plans = {run.plan for run in (*runs[first], *runs[second])}
            same = "[green]byte-identical[/green]" if len(plans) == 1 else "[red]DIFFERENT[/red]"
            console.print(f"plan JSON of the {size:,}-account dry runs, {named}: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
