"""Fast and frugal (issue #7): crm-sync's requests, time and memory per scenario, next to the
minimum (sync/budget.py) and to the naive baseline (bench/naive.py).

Usage:
    make bench                                        # 10,000 and 100,000 accounts
    .venv/bin/python bench/scenarios.py --quick       # one small book and a small burst
    .venv/bin/python bench/scenarios.py --accounts 10000 --latency-ms 2 --scenarios cold-dry,idle

Per book size the sandbox runs in a process of its own (`python -m sync sandbox --generate N`), so
its CPU and memory are not counted as crm-sync's; crm-sync runs through its real CLI in a
subprocess (`python -m sync --config CFG --state DB run [--dry-run]`), and its peak RSS is that
child's (its `VmHWM`, sampled) plus that of every process it starts (`measure`). The scenarios, in
this order:

    cold-dry     `run --dry-run` on an empty state: read everything, plan, send no write
    cold         `run` on an empty state: the first applied sync
    repeat       the same `run` again: it reads back the echo of the cold run's writes, writes nothing
    idle         `run` with nothing changed, seconds after the repeat run: the Salesforce read re-reads
                 every lead the cold run wrote, still inside the look-back (`[salesforce]
                 lookback_seconds`, 300 s)
    idle-daemon  a daemon's idle cycle: the sandbox's clock is moved on by the daemon's interval
                 (`[daemon] interval_seconds`, 900 s), an unreported `run` reads what the look-back
                 still covers, the clock moves on by the interval again, then the measured `run`
                 (nothing changed; the look-back no longer reaches the cold run's writes). The
                 rules' clock is the machine's, as in every scenario; only the services' moves.
                 Then the same cycles inside a running daemon (`python -m sync daemon`, the clock
                 moved on by the interval after each cycle): the CPU and counts of each cycle as
                 its `cycle_finished` log line gives them, printed under the tables one by one,
                 with the median of the idle ones. The Playbooks the sandbox runs an hour after
                 a trait write (as Vitally's hourly runs do) run before the daemon starts, so
                 that its first, unreported cycle reads what they changed; a later cycle that
                 still judged or wrote something is shown and left out of the median.
    incremental  1 % of the accounts get a new MRR (as Vitally's billing sync would), then `run`
    burst        1,000 new accounts that qualify for routing arrive, then `run` (1,000 new leads)
    next-day     the first cycle of the next day: the services' clock moves on by the interval, an
                 unreported `run` reads back what the scenarios before wrote (and what the look-back
                 still covers), the clock moves on by the interval again, and `run --now` sets the
                 rules' clock five minutes past the next midnight UTC. A judgement
                 holds until a date of its account says it may change (README, "Incremental
                 decisions"), so this cycle judges only the accounts whose day came, not the book.

Later scenarios need the cold and repeat runs first; they run unreported when not selected.

The minimum is computed from the sandbox's state, never from what crm-sync reports: reads from
what changed since the state the previous applied run read (`updatedAt`, `SystemModstamp`),
writes from what really changed during the run (accounts whose traits changed, tasks written,
leads created or updated). The naive baseline runs the same scenarios, with the same changes,
against a second sandbox process built from the same book.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import platform
import random
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

import requests
from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from core.errors import RecordError
from core.records import parse_account
from rules import EMPTY, evaluate_account
from sandbox.generator import generate_book
from sandbox.store import parse_timestamp, vitally_timestamp
from sync.budget import KINDS, Kind, Workload, by_kind, incremental_accounts_read, minimum
from sync.config import Config, DaemonSettings, load_config
from sync.ingest import SF_OBJECTS

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("cold-dry", "cold", "repeat", "idle", "idle-daemon", "incremental", "burst", "next-day")
# Far above any run here: the real 1,000 a minute would turn a 100,000-account cold run into
# minutes of waiting for the limit, which measures Vitally's limit, not crm-sync.
LIFTED_RATE_LIMIT = 1_000_000_000
BURST_ID_OFFSET = 10**9  # burst accounts get ids no book here reaches
_ROUTED_TEAMS = ("TAM", "TAE", "BDR")  # a routed account's lead goes to one of these (sync/plan.py)
_EXAMPLE_URL = "http://127.0.0.1:8765"
_OUTER_PREFIXES = ("VITALLY_", "SALESFORCE_", "CRM_SYNC_")  # no secrets or settings from our shell
_SF_SYSTEM_FIELDS = frozenset({"SystemModstamp", "LastModifiedDate", "LastModifiedById"})

Change = Literal["none", "incremental", "burst", "interval", "next-day"]


# -- the machine and the child processes ---------------------------------------------------------------


def machine() -> str:
    """CPU model, cores, Python and OS, for the top of the report."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform.processor() is the best there is
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{model}, {os.cpu_count()} cores ({usable} usable); Python {platform.python_version()} "
        f"({platform.python_implementation()}); {platform.system()} {platform.release()}"
    )


def _clean_env() -> dict[str, str]:
    """Our environment without credentials or crm-sync settings: against the loopback sandbox the
    config falls back to placeholder secrets."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_OUTER_PREFIXES)}


def compile_bytecode(tree: Path) -> list[str]:
    """Write the bytecode of `tree`'s packages (pyproject.toml's `[tool.setuptools] packages`), as
    `pip install` does when it installs crm-sync (deploy/Containerfile, deploy/crm-sync.service),
    and return the packages compiled. Without it, a run from a source checkout on a machine that
    sets PYTHONDONTWRITEBYTECODE (this project's does) compiles every module it imports on every
    start, ~0.12 s that an installed crm-sync never pays. Python reads bytecode whatever that
    variable says, and recompiles (in memory) any module whose source changed since."""
    packages: list[str] = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for package in packages:
        if not compileall.compile_dir(tree / package, quiet=1):
            raise RuntimeError(f"{tree / package}: does not compile")
    return packages


def stop_child(process: subprocess.Popen[str], timeout: float) -> None:
    """SIGTERM `process` (a sandbox or a daemon: both shut down cleanly on it), then SIGKILL it if it
    has not exited within `timeout` seconds; returns once it has exited."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class Measured:
    """One child process: exit status, wall time and the peak resident memory of it and of the
    processes it started (summed)."""

    exit_code: int
    wall_s: float
    peak_rss_mib: float
    stderr_tail: str
    cpu_s: float = 0.0  # user + sys of the child (its reaped children included)
    stdout_digest: str = ""  # BLAKE2b of what it printed (two plans compared without keeping them)


def _high_water_kib(pid: int) -> int | None:
    """The process's peak resident set so far (`VmHWM`), None once it has gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _descendants(pid: int) -> list[int]:
    """The process's children, their children and so on, as /proc lists them now."""
    found, i = [pid], 0
    while i < len(found):
        try:
            tasks = os.listdir(f"/proc/{found[i]}/task")
        except OSError:
            tasks = []
        for task in tasks:
            try:
                with open(f"/proc/{found[i]}/task/{task}/children", encoding="ascii") as children:
                    found.extend(int(child) for child in children.read().split())
            except (OSError, ValueError):
                continue
        i += 1
    return found[1:]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(argv: Sequence[str], cwd: Path = ROOT) -> Measured:
    """Run `argv` from `cwd` (the repository root) and sample its peak RSS: the peak resident set
    (`VmHWM`) of the program the child became and of every process it starts (a worker process,
    multiprocessing's resource tracker), summed, sampled every 10 ms until it exits: what the
    command needs, counting a library two processes share twice. Not `ru_maxrss` from `wait4`:
    Linux keeps in it the pre-exec high-water mark, i.e. this (larger) bench process copied by
    fork. Its CPU time is what this process's reaped children gained meanwhile (their own reaped
    children included; a sandbox child is reaped only at its end): on a shared machine a steadier
    figure than the wall time."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        cpu_before = _children_cpu_s()
        started = time.perf_counter()
        child = subprocess.Popen(argv, cwd=cwd, env=_clean_env(), stdout=out, stderr=err)
        peaks: dict[int, int] = {}  # pid -> its VmHWM, KiB
        while child.poll() is None:
            for pid in (child.pid, *_descendants(child.pid)):
                high = _high_water_kib(pid)
                if high is not None and high > peaks.get(pid, 0):
                    peaks[pid] = high
            time.sleep(0.01)
        wall = time.perf_counter() - started
        cpu = _children_cpu_s() - cpu_before
        err.seek(0)
        tail = err.read()[-1500:].decode(errors="replace")
        out.seek(0)
        digest = hashlib.file_digest(out, "blake2b").hexdigest()
    return Measured(child.returncode, wall, sum(peaks.values()) / 1024, tail, cpu, digest)


def crm_sync(config: Path, state: Path, *, dry_run: bool, tree: Path = ROOT, now: str | None = None) -> Measured:
    """One cycle of the real CLI (of the source tree `tree`: `python -m sync` run from there), with
    the rules' clock at `now` (ISO 8601; None: the machine's)."""
    mode = ["--dry-run"] if dry_run else []
    mode += ["--now", now] if now is not None else []
    argv = [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state), "run", *mode]
    return measure([*argv, "--format", "json"], cwd=tree)


def next_day() -> str:
    """Five minutes past the next midnight UTC, as `run --now` reads it."""
    today = datetime.now(UTC).date()
    return f"{today + timedelta(days=1)}T00:05:00Z"


def naive(config: Path, *, dry_run: bool) -> Measured:
    """One run of the baseline."""
    mode = ["--dry-run"] if dry_run else []
    return measure([sys.executable, str(ROOT / "bench" / "naive.py"), "--config", str(config), *mode])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class SandboxProcess:
    """`python -m sync sandbox --generate N` in a process of its own, steered through `/_sandbox/`.

    Every book of the same size is the same (the generator's seed is fixed), so two of these hold
    the same accounts, leads and ids. Vitally's rate limit is lifted (LIFTED_RATE_LIMIT) and every
    API call waits `latency_ms`.
    """

    def __init__(self, accounts: int, latency_ms: float, log: Path) -> None:
        self.accounts = accounts
        self.latency_ms = latency_ms
        self.log = log
        self.url = ""
        self._session = requests.Session()
        self._process: subprocess.Popen[str] | None = None
        self._log_file: IO[str] | None = None

    def __enter__(self) -> SandboxProcess:
        port = _free_port()
        self._log_file = self.log.open("w")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "sync", "sandbox", "--generate", str(self.accounts), "--port", str(port)],
            cwd=ROOT,
            env=_clean_env(),
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # "sandbox listening on ..." once the book is built
        if not line.startswith("sandbox listening on "):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the sandbox did not start; see {self.log}")
        self.url = f"http://127.0.0.1:{port}"
        self.control("POST", "config", {"vitally_rate_limit": LIFTED_RATE_LIMIT, "latency_ms": self.latency_ms})
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        process = self._process
        if process is not None:
            stop_child(process, timeout=30)
            if process.stdout is not None:
                process.stdout.close()
        if self._log_file is not None:
            self._log_file.close()
        self._session.close()

    def control(self, method: str, name: str, body: Mapping[str, Any] | None = None) -> Any:
        response = self._session.request(method, f"{self.url}/_sandbox/{name}", json=body, timeout=900)
        response.raise_for_status()
        return response.json()

    def state(self) -> dict[str, Any]:
        return dict(self.control("GET", "state"))

    def counters(self) -> dict[str, dict[str, int]]:
        return dict(self.control("GET", "counters"))

    def reset(self) -> None:
        self.control("POST", "reset")

    def load(self, seed: Mapping[str, Any]) -> None:
        self.control("POST", "load", seed)

    def now(self) -> datetime:
        moment = parse_timestamp(self.control("GET", "clock")["now"])
        assert moment is not None, "the sandbox's clock answers ISO 8601"
        return moment

    def accounts_by_id(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Whole account records through the Vitally API (before a run: its counters are reset)."""
        return [
            self._session.get(f"{self.url}/resources/accounts/{i}", auth=("bench", ""), timeout=60).json() for i in ids
        ]


# -- what the sandbox holds, and what changed ------------------------------------------------------


def _digest(value: Any) -> bytes:
    return hashlib.blake2b(json.dumps(value, sort_keys=True, separators=(",", ":")).encode(), digest_size=12).digest()


@dataclass(frozen=True)
class Snapshot:
    """The sandbox's state reduced to what the minimum needs: each record's version and a digest of
    its content. `accounts` holds the accounts `GET /resources/accounts` lists (active ones)."""

    accounts: dict[str, tuple[str, bytes]]  # id -> (updatedAt, digest of traits)
    mrr: dict[str, float]  # the numeric MRR of each listed account
    sf: dict[str, dict[str, tuple[str, bytes]]]  # object -> Id -> (SystemModstamp, digest of the other fields)
    tasks: dict[str, bytes]  # externalId (or id) -> digest

    @classmethod
    def of(cls, state: Mapping[str, Any]) -> Snapshot:
        vitally, salesforce = state["vitally"], state["salesforce"]
        listed = [a for a in vitally["accounts"] if a.get("churnedAt") is None]
        return cls(
            accounts={a["id"]: (str(a.get("updatedAt")), _digest(a.get("traits"))) for a in listed},
            mrr={
                a["id"]: float(a["mrr"])
                for a in listed
                if isinstance(a.get("mrr"), int | float) and not isinstance(a.get("mrr"), bool)
            },
            sf={
                sobject: {
                    r["Id"]: (
                        str(r.get("SystemModstamp")),
                        _digest({k: v for k, v in r.items() if k not in _SF_SYSTEM_FIELDS}),
                    )
                    for r in salesforce.get(sobject, [])
                }
                for sobject in SF_OBJECTS
            },
            tasks={str(t.get("externalId") or t.get("id")): _digest(t) for t in vitally.get("tasks", [])},
        )


@dataclass(frozen=True)
class Writes:
    """What a run changed, seen in the sandbox: the K of the minimum."""

    accounts: int
    tasks: int
    leads_created: int
    leads_updated: int

    @classmethod
    def between(cls, before: Snapshot, after: Snapshot) -> Writes:
        old_leads, new_leads = before.sf["Lead"], after.sf["Lead"]
        return cls(
            accounts=sum(
                1
                for i, (_, traits) in after.accounts.items()
                if i in before.accounts and before.accounts[i][1] != traits
            ),
            tasks=sum(1 for key, task in after.tasks.items() if before.tasks.get(key) != task),
            leads_created=sum(1 for i in new_leads if i not in old_leads),
            leads_updated=sum(
                1 for i, (_, fields) in new_leads.items() if i in old_leads and old_leads[i][1] != fields
            ),
        )

    def describe(self) -> str:
        """e.g. `1,960 accounts · 248 tasks · +192 leads · 268 lead updates`."""
        parts = [
            f"{self.accounts:,} accounts" if self.accounts else "",
            f"{self.tasks:,} tasks" if self.tasks else "",
            f"+{self.leads_created:,} leads" if self.leads_created else "",
            f"{self.leads_updated:,} lead updates" if self.leads_updated else "",
        ]
        return " · ".join(p for p in parts if p) or "nothing"


def workload(last_read: Snapshot | None, before: Snapshot, writes: Writes) -> Workload:
    """The run's work: everything when nothing was read before (a cold run), else what changed since
    the state the previous applied run read; and the writes the sandbox saw."""
    if last_read is None:
        accounts_read = len(before.accounts)
        sf_read = {sobject: len(rows) for sobject, rows in before.sf.items()}
    else:
        changed = sum(1 for i, (at, _) in before.accounts.items() if last_read.accounts.get(i, ("", b""))[0] != at)
        accounts_read = incremental_accounts_read(changed, len(before.accounts))
        sf_read = {
            sobject: sum(1 for i, (stamp, _) in rows.items() if last_read.sf[sobject].get(i, ("", b""))[0] != stamp)
            for sobject, rows in before.sf.items()
        }
    return Workload(
        accounts_read=accounts_read,
        sf_read=sf_read,
        accounts_changed=writes.accounts,
        tasks=writes.tasks,
        sf_upserts=writes.leads_created,
        sf_updates=writes.leads_updated,
    )


# -- the scenarios' changes ---------------------------------------------------------------------------


def _stamp(now: datetime, k: int) -> str:
    """Distinct `updatedAt`s just after the sandbox's now, newest last, as a bulk change writes them."""
    return vitally_timestamp(now + timedelta(milliseconds=k + 1))


def choose_mrr_changes(snapshot: Snapshot, share: float) -> dict[str, float]:
    """`share` of the listed accounts (a fixed random sample of those with a numeric MRR) get
    +60 % and +$300 of MRR: enough to move many across the handbook's bands (product-led band,
    account review, a new owner at $20k ARR), not all of them."""
    count = max(1, round(share * len(snapshot.accounts)))
    chosen = random.Random(7).sample(sorted(snapshot.mrr), min(count, len(snapshot.mrr)))
    return {account_id: round(snapshot.mrr[account_id] * 1.6 + 300, 2) for account_id in chosen}


def apply_mrr_changes(sandbox: SandboxProcess, new_mrr: Mapping[str, float]) -> None:
    """Set the new MRRs with a fresh `updatedAt`, as Vitally's billing sync would."""
    now = sandbox.now()
    records = sandbox.accounts_by_id(sorted(new_mrr))
    changed = [{**r, "mrr": new_mrr[r["id"]], "updatedAt": _stamp(now, k)} for k, r in enumerate(records)]
    sandbox.load({"vitally": {"accounts": changed}})


def _routes(raw: Mapping[str, Any], config: Config, written: tuple[str, ...], now: datetime) -> bool:
    """The planner's test for "becomes a lead": a routing rule with a team fires (no Salesforce
    record knows a brand-new account, hence the empty context)."""
    try:
        account = parse_account(raw, config.vitally.trait_keys, written)
    except RecordError:
        return False
    decisions = evaluate_account(account, EMPTY, config.policy, now, config.custom_triggers, full=False)
    return any(d.fired and d.team in _ROUTED_TEAMS and "routing_reason" in d.traits for d in decisions)


def routable_accounts(config: Config, count: int, now: datetime) -> list[dict[str, Any]]:
    """`count` generated accounts (ids from BURST_ID_OFFSET) that the rules route: product-led and
    new-business triggers of every kind, in the generator's proportions."""
    written = tuple(config.vitally.written_traits.values()) + tuple(config.vitally.segment_traits.values())
    size = max(count * 12, 200)
    while True:
        book = generate_book(size, seed=2026, now=now, malformed_share=0.0, id_offset=BURST_ID_OFFSET)
        found = [raw for raw in book["vitally"]["accounts"] if _routes(raw, config, written, now)]
        if len(found) >= count:
            return found[:count]
        size *= 2


def load_burst(sandbox: SandboxProcess, accounts: Sequence[Mapping[str, Any]]) -> None:
    """The burst's accounts arrive at once, each with a fresh `updatedAt`."""
    now = sandbox.now()
    sandbox.load({"vitally": {"accounts": [{**a, "updatedAt": _stamp(now, k)} for k, a in enumerate(accounts)]}})


@dataclass
class Changes:
    """The scenarios' changes, chosen in the crm-sync pass and replayed as they are in the naive pass."""

    new_mrr: dict[str, float] = field(default_factory=dict)
    burst: list[dict[str, Any]] = field(default_factory=list)


# -- the passes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One run of a pass: the scenario, the change made just before it, and whether it is shown."""

    name: str
    dry_run: bool
    change: Change
    reported: bool


def interval_seconds(config: Path) -> float:
    """`[daemon] interval_seconds` of `config`, read as TOML: `--tree` may be an older tree whose config
    this tree's loader would refuse (bench/goals.py's baseline), and this is the one setting needed."""
    with config.open("rb") as file:
        daemon = tomllib.load(file).get("daemon", {})
    return float(daemon.get("interval_seconds", DaemonSettings().interval_seconds))


def steps_for(selected: Sequence[str]) -> list[Step]:
    """The runs the selected scenarios need, in order. `cold` and `repeat` are the ground every later
    scenario stands on; an unreported run between `incremental` and `burst` reads back the
    incremental run's writes, so that the burst is measured on its own."""
    wanted = set(selected)
    later = wanted & {"repeat", "idle", "idle-daemon", "incremental", "burst", "next-day"}
    steps = [Step("cold-dry", True, "none", True)] if "cold-dry" in wanted else []
    if later or "cold" in wanted:
        steps.append(Step("cold", False, "none", "cold" in wanted))
    if later:
        steps.append(Step("repeat", False, "none", "repeat" in wanted))
    if "idle" in wanted:
        steps.append(Step("idle", False, "none", True))
    if "idle-daemon" in wanted:
        steps.append(Step("idle-daemon-first", False, "interval", False))
        steps.append(Step("idle-daemon", False, "interval", True))
    if "incremental" in wanted:
        steps.append(Step("incremental", False, "incremental", True))
        if "burst" in wanted:
            steps.append(Step("settle", False, "none", False))
    if "burst" in wanted:
        steps.append(Step("burst", False, "burst", True))
    if "next-day" in wanted:  # last: its judgements start on the next day, which no later run reaches
        steps.append(Step("settle-before-next-day", False, "interval", False))
        steps.append(Step("next-day", False, "next-day", True))
    return steps


@dataclass(frozen=True)
class Result:
    """One reported run: requests by kind; for crm-sync also the accounts listed, the minimum and
    what the run changed; for `idle-daemon` also the cycles of a running daemon."""

    scenario: str
    requests: dict[Kind, int]
    measured: Measured
    accounts: int = 0
    minimum: dict[Kind, int] = field(default_factory=dict)
    writes: Writes | None = None
    daemon_cycles: tuple[DaemonCycle, ...] = ()


DAEMON_CYCLES = 4  # the first one, right after start, is not counted: its process has only just started
_DAEMON_NAP_S = 5  # `[daemon] interval_seconds` of the daemon measured: the services' clock moves by the real one


def _daemon_config(config: Path, target: Path) -> Path:
    """`config` with a short real interval and no health endpoints (a bench must not take a port)."""
    text = config.read_text()
    text = re.sub(r"(?m)^interval_seconds = .*$", f"interval_seconds = {_DAEMON_NAP_S}", text, count=1)
    text = re.sub(r"(?m)^health_port = .*$", "health_port = 0", text, count=1)
    target.write_text(text)
    return target


@dataclass(frozen=True)
class DaemonCycle:
    """One cycle of a running daemon, from its `cycle_finished` log line."""

    cpu_s: float
    accounts_read: int
    accounts_evaluated: int
    queued: int

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> DaemonCycle:
        return cls(
            float(event.get("cpu_seconds", "nan")),
            int(event.get("accounts_read", 0)),
            int(event.get("accounts_evaluated", 0)),
            int(event.get("queued", 0)),
        )

    @property
    def idle(self) -> bool:
        """Nothing changed in the world for it: no account to judge again, nothing to write."""
        return self.accounts_evaluated == 0 and self.queued == 0

    def describe(self) -> str:
        what = "idle" if self.idle else f"{_count(self.accounts_evaluated, 'account')} judged again, "
        what += "" if self.idle else _count(self.queued, "write")
        return f"{self.cpu_s:.2f} s ({_count(self.accounts_read, 'account')} read, {what})"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def idle_median(cycles: Sequence[DaemonCycle]) -> float | None:
    """The median CPU of the idle cycles; None when no cycle was idle."""
    idle = [cycle.cpu_s for cycle in cycles if cycle.idle]
    return statistics.median(idle) if idle else None


def daemon_idle_cycles(sandbox: SandboxProcess, config: Path, state: Path, tree: Path) -> tuple[DaemonCycle, ...]:
    """The cycles of one running daemon (`cpu_seconds` and counts of its `cycle_finished` lines: no
    imports, no state check, what a cycle itself costs): `python -m sync daemon` on the state, the
    services' clock moved on by the configured interval (`[daemon] interval_seconds`, as in
    `idle-daemon`) after each cycle; the cycles after the first, whose process has just started,
    are kept. Empty when the daemon did not run them.

    The sandbox runs Vitally's Playbooks `vitally_playbook_delay_s` (an hour) after a trait write,
    on its own clock: moving it on would have them change the segments of the accounts the earlier
    runs wrote in one of the measured cycles, which is then no idle cycle. So the Playbooks due by
    then run before the daemon starts, and its first, unkept cycle reads what they changed; a
    cycle that still judged or wrote something is reported apart (`DaemonCycle.idle`)."""
    interval = interval_seconds(config)
    sandbox.control("POST", "playbooks", {"run": "all"})
    short = _daemon_config(config, config.with_name("daemon.toml"))
    argv = [sys.executable, "-m", "sync", "--config", str(short), "--state", str(state), "daemon"]
    child = subprocess.Popen(
        argv, cwd=tree, env=_clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seen: list[DaemonCycle] = []
    try:
        assert child.stderr is not None
        for line in child.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") != "cycle_finished":
                continue
            seen.append(DaemonCycle.of(event))
            if len(seen) >= DAEMON_CYCLES:
                break
            sandbox.control("POST", "clock", {"advance_seconds": interval})
    finally:
        stop_child(child, timeout=60)
    return tuple(seen[1:])


def _config(url: str, path: Path, tree: Path = ROOT) -> Path:
    """`tree`'s config.example.toml pointed at the sandbox (its secrets fall back to placeholders on
    loopback): an older tree (bench/goals.py's baseline) does not know this tree's settings."""
    path.write_text((tree / "config.example.toml").read_text().replace(_EXAMPLE_URL, url))
    return path


def crm_sync_pass(
    accounts: int, steps: Sequence[Step], options: argparse.Namespace, workdir: Path, changes: Changes
) -> list[Result]:
    """Every step against a fresh sandbox; the changes are chosen here and kept for the naive pass."""
    results: list[Result] = []
    with SandboxProcess(accounts, options.latency_ms, workdir / "sandbox-crm-sync.log") as sandbox:
        config = _config(sandbox.url, workdir / "crm-sync.toml", options.tree)
        state = workdir / "crm-sync.db"
        last_read: Snapshot | None = None
        current: Snapshot | None = None
        for step in steps:
            if step.change == "incremental":
                changes.new_mrr = choose_mrr_changes(current or Snapshot.of(sandbox.state()), options.changed_share)
                apply_mrr_changes(sandbox, changes.new_mrr)
                current = None
            elif step.change == "burst":
                changes.burst = routable_accounts(load_config(config), options.burst, sandbox.now())
                load_burst(sandbox, changes.burst)
                current = None
            elif step.change in ("interval", "next-day"):
                sandbox.control("POST", "clock", {"advance_seconds": interval_seconds(config)})
            before = current or Snapshot.of(sandbox.state())
            sandbox.reset()
            now = next_day() if step.change == "next-day" else None
            measured = crm_sync(config, state, dry_run=step.dry_run, tree=options.tree, now=now)
            requests_made = by_kind(sandbox.counters())
            after = Snapshot.of(sandbox.state())
            writes = Writes.between(before, after)
            cold = step.name in ("cold-dry", "cold")
            need = minimum(workload(None if cold else last_read, before, writes))
            if not step.dry_run:
                last_read = before
            current = after
            inside: tuple[DaemonCycle, ...] = ()
            if step.name == "idle-daemon":
                inside = daemon_idle_cycles(sandbox, config, state, options.tree)
                # The daemon's cycles read the world as it is now (the Playbooks it ran included):
                # the next run's minimum starts from here, not from the CLI run before them.
                last_read = current = Snapshot.of(sandbox.state())
            if step.reported:
                results.append(Result(step.name, requests_made, measured, len(before.accounts), need, writes, inside))
    return results


def naive_pass(
    accounts: int, steps: Sequence[Step], options: argparse.Namespace, workdir: Path, changes: Changes
) -> dict[str, Result]:
    """The baseline over the same book with the same changes; it keeps no state, so only the
    reported steps run."""
    results: dict[str, Result] = {}
    with SandboxProcess(accounts, options.latency_ms, workdir / "sandbox-naive.log") as sandbox:
        config = _config(sandbox.url, workdir / "naive.toml")
        for step in steps:
            if step.change == "incremental":
                apply_mrr_changes(sandbox, changes.new_mrr)
            elif step.change == "burst":
                load_burst(sandbox, changes.burst)
            elif step.change in ("interval", "next-day"):
                sandbox.control("POST", "clock", {"advance_seconds": interval_seconds(config)})
            if not step.reported:
                continue
            sandbox.reset()
            measured = naive(config, dry_run=step.dry_run)
            results[step.name] = Result(step.name, by_kind(sandbox.counters()), measured)
    return results


# -- the report ---------------------------------------------------------------------------------------


def _over(actual: int, least: int) -> str:
    if least == 0:
        return "=" if actual == 0 else f"+{actual:,}"
    return "=" if actual == least else f"{actual / least:.2f}×"


def _times(naive_count: int, ours: int) -> str:
    if ours == 0:
        return "—" if naive_count == 0 else "∞"
    return f"{naive_count / ours:,.1f}×"


def report(
    console: Console, accounts: int, labels: Mapping[str, str], ours: Sequence[Result], base: Mapping[str, Result]
) -> None:
    """Two tables per book: requests by kind (crm-sync, minimum, naive), then time and memory."""
    table = Table(title=f"{accounts:,} accounts: requests by kind", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("scenario", "left"),
        ("kind", "left"),
        ("crm-sync", "right"),
        ("minimum", "right"),
        ("crm-sync ÷ min", "right"),
        ("naive", "right"),
        ("naive ÷ crm-sync", "right"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for result in ours:
        naive_requests = base[result.scenario].requests if result.scenario in base else dict.fromkeys(KINDS, 0)
        label = labels[result.scenario]
        for kind in KINDS:
            counts = (result.requests[kind], result.minimum[kind], naive_requests[kind])
            if any(counts):
                table.add_row(
                    label,
                    kind,
                    f"{counts[0]:,}",
                    f"{counts[1]:,}",
                    _over(counts[0], counts[1]),
                    f"{counts[2]:,}" if base else "—",
                    _times(counts[2], counts[0]) if base else "—",
                )
                label = ""
        total, least = sum(result.requests.values()), sum(result.minimum.values())
        naive_total = sum(naive_requests.values())
        table.add_row(
            label,
            "[b]total[/b]",
            f"[b]{total:,}[/b]",
            f"{least:,}",
            _over(total, least),
            f"{naive_total:,}" if base else "—",
            f"[b]{_times(naive_total, total)}[/b]" if base else "—",
            end_section=True,
        )
    console.print(table)

    timing = Table(title=f"{accounts:,} accounts: time and memory (each run a child process)", title_justify="left")
    for name in (
        "scenario",
        "writes needed (K)",
        "exit",
        "wall s",
        "CPU s",
        "accounts/s",
        "peak RSS MiB",
        "naive wall s",
        "naive RSS MiB",
    ):
        timing.add_column(name, justify="left" if name in ("scenario", "writes needed (K)") else "right")
    for result in ours:
        m, baseline = result.measured, (base[result.scenario].measured if result.scenario in base else None)
        timing.add_row(
            labels[result.scenario],
            result.writes.describe() if result.writes else "",
            str(m.exit_code),
            f"{m.wall_s:.2f}",
            f"{m.cpu_s:.2f}",
            f"{result.accounts / m.wall_s:,.0f}",
            f"{m.peak_rss_mib:,.0f}",
            f"{baseline.wall_s:.2f}" if baseline else "—",
            f"{baseline.peak_rss_mib:,.0f}" if baseline else "—",
        )
    console.print(timing)
    for result in ours:
        if not result.daemon_cycles:
            continue
        median = idle_median(result.daemon_cycles)
        summary = "no idle cycle" if median is None else f"median {median:.2f} s CPU of the idle ones"
        console.print(
            f"{labels[result.scenario]}, inside a running daemon (cpu_seconds of its cycle_finished, no imports "
            f"or state check): {summary}",
            soft_wrap=True,
        )
        for number, cycle in enumerate(result.daemon_cycles, start=2):
            console.print(f"  cycle {number}: {cycle.describe()}", soft_wrap=True)
    for who, results in (("crm-sync", ours), ("naive", list(base.values()))):
        for result in results:
            if result.measured.exit_code != 0:
                console.print(f"[red]{who}, {labels[result.scenario]}: exit {result.measured.exit_code}[/red]")
                console.print(escape(result.measured.stderr_tail))
    incremental = next((r for r in ours if r.scenario == "incremental"), None)
    if incremental is not None and "incremental" in base:
        ratio = sum(base["incremental"].requests.values()) / max(1, sum(incremental.requests.values()))
        verdict = "[green]met[/green]" if ratio >= 10 else "[red]not met[/red]"
        console.print(f"goal, incremental: at least 10× fewer requests than naive: {ratio:,.1f}× ({verdict})")


def _accounts_list(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("expected at least one positive number of accounts")
    return sizes


def _scenario_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--accounts", type=_accounts_list, default=[10_000, 100_000], help="book sizes (default 10000,100000)"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to every API call by the sandbox (default 0)"
    )
    parser.add_argument(
        "--scenarios", type=_scenario_list, default=list(SCENARIOS), help=f"default {','.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--burst", type=int, default=1000, help="accounts that newly qualify for routing (default 1000)"
    )
    parser.add_argument("--changed-share", type=float, default=0.01, help="share of accounts changed (default 0.01)")
    parser.add_argument("--quick", action="store_true", help="a small run: 2,000 accounts, a burst of 250")
    parser.add_argument(
        "--no-naive",
        action="store_true",
        help="leave out the naive baseline (its columns print —); bench/goals.py needs only crm-sync's runs",
    )
    parser.add_argument(
        "--tree", type=Path, default=ROOT, help="the crm-sync source tree to measure (default this one; bench/goals.py)"
    )
    options = parser.parse_args()
    if options.quick:
        options.accounts, options.burst = [2_000], 250
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file or a pipe: keep each table row on one line
    console.print(f"[b]machine[/b]: {machine()}")
    compiled = compile_bytecode(options.tree)
    console.print(f"[b]bytecode[/b]: written for {', '.join(compiled)} ({options.tree}), as installed")
    console.print(
        f"[b]sandbox[/b]: a separate process per book (python -m sync sandbox --generate N), "
        f"{options.latency_ms:g} ms latency per API call.\n"
        f"[b]Vitally's rate limit is LIFTED[/b] (1,000 requests a minute → {LIFTED_RATE_LIMIT:,}): a cold run is "
        "ceil(N/100) pages plus up to one PUT per account, and waiting out the real limit would time Vitally's limit, "
        "not crm-sync. Request counts do not depend on it.\n"
        "[b]auth[/b]: the example config authenticates to Salesforce with a token (no OAuth request); with client "
        "credentials a one-off CLI run adds 1 auth request, a daemon 1 per process, not per cycle."
    )
    labels = {
        "cold-dry": "cold, --dry-run",
        "cold": "cold, applied",
        "repeat": "repeat (2nd run)",
        "idle": "idle, right after the repeat run",
        "idle-daemon": "idle, a daemon's cycle (clock +interval)",
        "incremental": f"incremental ({options.changed_share:.0%} MRR changes)",
        "burst": f"routing burst ({options.burst:,} accounts)",
        "next-day": "the first cycle of the next day (rules' clock)",
    }
    steps = steps_for(options.scenarios)
    for accounts in options.accounts:
        console.rule(f"{accounts:,} accounts")
        with tempfile.TemporaryDirectory(prefix="crm-sync-bench-") as directory:
            changes = Changes()
            ours = crm_sync_pass(accounts, steps, options, Path(directory), changes)
            base = {} if options.no_naive else naive_pass(accounts, steps, options, Path(directory), changes)
        report(console, accounts, labels, ours, base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
