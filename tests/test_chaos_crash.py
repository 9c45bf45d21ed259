"""Crash safety of the real daemon process against the sandbox (issue 6, items 1, 6, 7 and 11).

kill -9 at reproducible random points (after the plan is queued, while a write is in flight, in
the middle of the apply batch), each followed by restarts until the outbox is empty, and checked
against a crash-free reference run of the same book: one lead per Sync_Key__c, every planned
write applied exactly once, round-robin counts equal to the owners given, and an intact state
file after every crash. Also: one instance per state file, SIGTERM mid-apply, and the durability
settings of the state database.

Trials run two at a time (this machine has two cores); `pytest -s` prints each scenario's trials.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import state_rows, vitally_account, wait_until, written_unstamped

from sandbox import Sandbox
from sandbox.server import FaultKind
from state import StateDB

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261122
ROUTED = 60  # accounts routed to the TAM/US pool: one lead each, in one upsert collection
GUARDED = 4  # accounts already managed: Vitally writes only, no lead
TAMS = ["005000000000000TAM", "005000000000001TAM", "005000000000002TAM"]
PAUSED = "005000000000003TAM"
UPSERT = "/services/data/v59.0/composite/sobjects/Lead/Sync_Key__c"
ACCOUNT_PUT = "/resources/accounts/"
WRITE_METHODS = frozenset({"PUT", "PATCH", "POST", "DELETE"})
TRIALS_PER_SCENARIO = 11  # three scenarios: 33 kills in all
WORKERS = 2
SIGTERM_BOUND_S = 5.0

POOLS = f"""
[[pools]]
team = "TAM"
region = "US"
fallback_queue = "00G000000000001QUE"
members = [
    {{ user_id = "{TAMS[0]}", name = "Tam 0" }},
    {{ user_id = "{TAMS[1]}", name = "Tam 1", weight = 2 }},
    {{ user_id = "{TAMS[2]}", name = "Tam 2" }},
    {{ user_id = "{PAUSED}", name = "Tam Paused", active = false }},
]
"""


# -- the book, the config and the processes -------------------------------------------------------


def _account(index: int, **extra: Any) -> dict[str, Any]:
    segments = [{"id": "seg_am_referral", "name": "AM referral"}]  # product_led.am_referral → TAM
    return vitally_account(index, **{"segments": segments, **extra})


def _seed() -> dict[str, Any]:
    accounts = [_account(i) for i in range(ROUTED)]
    for i in range(GUARDED):
        accounts.append(
            _account(
                1000 + i,
                segments=[{"id": "seg_am_managed", "name": "AM Managed"}],
                keyRoles=[{"keyRole": {"label": "TAM"}, "vitallyUser": {"id": f"vu_{i}", "email": "am@example.com"}}],
            )
        )
    users = [
        {"Id": user, "Name": f"Tam {i}", "Email": f"tam{i}@example.com", "IsActive": True}
        for i, user in enumerate([*TAMS, PAUSED])
    ]
    return {
        "vitally": {"accounts": accounts},
        "salesforce": {"User": users, "Lead": [], "Opportunity": [], "Account": []},
    }


def _sandbox() -> Sandbox:
    sandbox = Sandbox(_seed()).start()
    # fault_timeout_s: a held request outlives the kill, but must not outlive the test by much.
    sandbox.configure(vitally_rate_limit=10**7, fault_timeout_s=5)
    return sandbox


@dataclass(frozen=True)
class Setup:
    config: Path
    state: Path

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "sync", "--config", str(self.config), "--state", str(self.state), *args]

    def run(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command("run"), capture_output=True, text=True, timeout=120, cwd=ROOT)

    def daemon(self, log: Path) -> subprocess.Popen[str]:
        with log.open("w") as err:  # a file, not a pipe: a pipe nobody reads could block the daemon
            return subprocess.Popen(self.command("daemon"), stdout=subprocess.DEVNULL, stderr=err, text=True, cwd=ROOT)


def _setup(sandbox: Sandbox, directory: Path) -> Setup:
    directory.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "config.example.toml").read_text().replace("http://127.0.0.1:8765", sandbox.url)
    text = text.split("# Round-robin pools")[0]  # the example's own pools are replaced by POOLS
    text = text.replace("interval_seconds = 900", "interval_seconds = 1")
    config = directory / "config.toml"
    config.write_text(text + POOLS)
    return Setup(config, directory / "state.db")


def _pending(state: Path) -> int:
    return int(state_rows(state, "SELECT count(*) FROM outbox WHERE status = 'pending'")[0][0])


def _wait_until(predicate: Callable[[], bool], what: str) -> None:
    # Asked every 2 ms: a kill point (a write in flight, the apply batch) is caught while it lasts.
    wait_until(predicate, what, timeout=30, poll=0.002)


def _kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL


def _integrity(state: Path) -> str:
    return str(state_rows(state, "PRAGMA integrity_check")[0][0])


def _settle(setup: Setup, attempts: int = 4) -> int:
    """One-shot runs until one exits 0 with nothing pending; returns how many it took."""
    for attempt in range(1, attempts + 1):
        result = setup.run()
        if result.returncode == 0 and _pending(setup.state) == 0:
            return attempt
    raise AssertionError(f"not settled after {attempts} runs: exit {result.returncode}: {result.stderr[-1500:]}")


# -- what a finished book looks like ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    owners: dict[str, str]  # Sync_Key__c → OwnerId
    traits: dict[str, dict[str, Any]]  # Vitally account id → traits
    writes: Counter[str]  # planned writes (system, op, record, payload) marked done
    statuses: Counter[str]
    credits: dict[str, int]  # rr_credits.assigned of TAM/US
    assignments: dict[str, int]  # assignments of TAM/US per owner


def _outcome(sandbox: Sandbox, state: Path) -> Outcome:
    world = sandbox.state()
    leads = [lead for lead in world["salesforce"]["Lead"] if lead.get("Sync_Key__c")]
    keys = Counter(lead["Sync_Key__c"] for lead in leads)
    duplicated = {key: n for key, n in keys.items() if n > 1}
    assert not duplicated, f"more than one lead per Sync_Key__c: {duplicated}"
    rows = state_rows(state, "SELECT system, op, record, payload, status FROM outbox")
    return Outcome(
        owners={lead["Sync_Key__c"]: lead["OwnerId"] for lead in leads},
        traits={
            account["id"]: written_unstamped(account.get("traits", {})) for account in world["vitally"]["accounts"]
        },
        writes=Counter(
            json.dumps([system, op, record, json.loads(payload)], sort_keys=True)
            for system, op, record, payload, status in rows
            if status == "done"
        ),
        statuses=Counter(status for *_, status in rows),
        credits=dict(state_rows(state, "SELECT user_id, assigned FROM rr_credits WHERE pool = 'TAM/US'")),
        assignments=dict(
            state_rows(state, "SELECT user_id, count(*) FROM assignments WHERE pool = 'TAM/US' GROUP BY 1")
        ),
    )


def _assert_exactly_once(outcome: Outcome, reference: Outcome) -> None:
    assert len(outcome.owners) == ROUTED, f"{len(outcome.owners)} leads for {ROUTED} routed accounts"
    assert outcome.owners == reference.owners, "a lead got another owner than in the crash-free run"
    assert set(outcome.statuses) == {"done"}, f"outbox rows not done: {dict(outcome.statuses)}"
    assert outcome.writes == reference.writes, "planned writes differ from the crash-free run's, or repeat"
    assert all(n == 1 for n in outcome.writes.values())
    assert outcome.traits == reference.traits
    given = Counter(outcome.owners.values())
    assert {user: n for user, n in outcome.credits.items() if n} == dict(given), "rr_credits.assigned ≠ leads owned"
    assert outcome.assignments == dict(given), "assignments ≠ leads owned"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The crash-free run of the same book (the plan is deterministic: owners drawn in account order)."""
    sandbox = _sandbox()
    try:
        setup = _setup(sandbox, tmp_path_factory.mktemp("reference"))
        result = setup.run()
        assert result.returncode == 0, result.stderr[-2000:]
        outcome = _outcome(sandbox, setup.state)
    finally:
        sandbox.stop()
    assert len(outcome.owners) == ROUTED
    assert Counter(outcome.owners.values()) == {TAMS[0]: 15, TAMS[1]: 30, TAMS[2]: 15}  # weights 1:2:1
    assert sum(outcome.writes.values()) > ROUTED  # lead upserts and Vitally trait writes
    return outcome


# -- kill -9 trials ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    index: int
    scenario: str
    target: str = ""  # in flight: "vitally" (the account PUT) or "salesforce" (the lead upsert)
    fault: FaultKind = "drop_response"  # in flight only: applied, answer lost; or "timeout" (never answered)
    delay: float = 0.0  # seconds between reaching the kill point and the kill
    after_writes: int = 0  # mid-batch: kill once this many write requests are answered


def _write_calls(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [c for c in sandbox.calls() if c["method"] in WRITE_METHODS]


def _reads_started(sandbox: Sandbox) -> bool:
    """The daemon holds the lock and has opened and migrated the state: it is reading."""
    return sandbox.calls_total() > 0


def _crash_queued(trial: Trial, sandbox: Sandbox, setup: Setup, log: Path, total: int) -> str:
    """Kill after the plan committed and before anything was applied: every write request is held."""
    for method, prefix in (("PUT", "/resources/"), ("POST", "/resources/"), ("PATCH", "/services/")):
        sandbox.add_fault("timeout", method=method, path_prefix=prefix, count=10**6)
    daemon = setup.daemon(log)
    try:
        _wait_until(lambda: _reads_started(sandbox), what="the first read")
        _wait_until(lambda: _pending(setup.state) > 0, what="the queued plan")
        time.sleep(trial.delay)
    finally:
        _kill(daemon)
    held = _write_calls(sandbox)
    assert all(c.get("fault") == "timeout" for c in held), "a write was applied"
    # The plan, the owners and the outbox commit in one transaction: all of it or none.
    assert _pending(setup.state) == total
    return "first write held" if held else "before any write request"


def _crash_in_flight(trial: Trial, sandbox: Sandbox, setup: Setup, log: Path, total: int) -> str:
    """Kill while the client waits for the answer to a write the sandbox did (drop_response) or
    did not (timeout) apply."""
    prefix, method = (ACCOUNT_PUT, "PUT") if trial.target == "vitally" else (UPSERT, "PATCH")
    sandbox.add_fault(trial.fault, method=method, path_prefix=prefix, count=10**6)
    daemon = setup.daemon(log)
    try:
        _wait_until(lambda: any(c.get("fault") for c in sandbox.calls()), what="the faulted write")
        time.sleep(trial.delay)
    finally:
        _kill(daemon)
    first = next(c for c in sandbox.calls() if c.get("fault"))
    if trial.target == "vitally":
        record = first["path"].rsplit("/", 1)[1]
        rows = state_rows(setup.state, f"SELECT status FROM outbox WHERE system = 'vitally' AND record = '{record}'")
        applied = (
            "routing_reason" in next(a for a in sandbox.state()["vitally"]["accounts"] if a["id"] == record)["traits"]
        )
    else:
        rows = state_rows(setup.state, "SELECT status FROM outbox WHERE op = 'upsert_lead'")
        applied = any(lead.get("Sync_Key__c") for lead in sandbox.state()["salesforce"]["Lead"])
    assert rows and {status for (status,) in rows} == {"pending"}, "the result of the write was recorded"
    assert applied == (trial.fault == "drop_response")
    return f"{trial.target} {trial.fault}"


def _crash_mid_batch(trial: Trial, sandbox: Sandbox, setup: Setup, log: Path, total: int) -> str:
    """Kill once `after_writes` write requests were answered and the applier has committed some of
    them (a success waits up to 20 ms for its commit, longer on a busy machine: killed on the
    answers alone, a kill after the first few found every write still pending), while the rest of
    the batch waits."""
    sandbox.configure(latency_ms=8)  # about 0.5 s of writes: the kill lands inside the batch
    daemon = setup.daemon(log)
    try:
        _wait_until(
            lambda: len(_write_calls(sandbox)) >= trial.after_writes and _pending(setup.state) < total,
            what="the writes and a commit of some",
        )
        time.sleep(trial.delay)
    finally:
        _kill(daemon)
    sandbox.configure(latency_ms=0)
    answered = len(_write_calls(sandbox))
    assert answered >= trial.after_writes
    assert 0 < _pending(setup.state) < total, "the kill should land in the middle of the batch"
    return f"after {answered} of {ROUTED + GUARDED + 1} write requests"


_Crash = Callable[[Trial, Sandbox, Setup, Path, int], str]
_CRASHES: dict[str, _Crash] = {"queued": _crash_queued, "in_flight": _crash_in_flight, "mid_batch": _crash_mid_batch}


def _trials(scenario: str, write_requests: int) -> list[Trial]:
    rng = random.Random(f"{SEED}-{scenario}")
    trials = []
    for index in range(TRIALS_PER_SCENARIO):
        if scenario == "queued":
            trials.append(Trial(index, scenario, delay=rng.uniform(0, 0.4)))
        elif scenario == "in_flight":
            faults: tuple[FaultKind, FaultKind] = ("drop_response", "timeout")
            target, fault = ("vitally", "salesforce")[index % 2], faults[index // 2 % 2]
            trials.append(Trial(index, scenario, target=target, fault=fault, delay=rng.uniform(0, 0.3)))
        else:
            # Leave a margin of several requests so the kill cannot miss the batch.
            trials.append(Trial(index, scenario, after_writes=rng.randint(1, write_requests - 8)))
    return trials


def _run_trial(trial: Trial, directory: Path, reference: Outcome) -> str:
    sandbox = _sandbox()
    try:
        setup = _setup(sandbox, directory)
        total = sum(reference.writes.values())
        try:
            point = _CRASHES[trial.scenario](trial, sandbox, setup, directory / "daemon.log", total)
            assert _integrity(setup.state) == "ok"
            sandbox.clear_faults()
            runs = _settle(setup)
            assert _integrity(setup.state) == "ok"
            _assert_exactly_once(_outcome(sandbox, setup.state), reference)
        except AssertionError as exc:
            raise AssertionError(f"{trial}: {exc}") from exc
        return f"  trial {trial.index:2}: killed {point}; recovered exactly once in {runs} restart run(s)"
    finally:
        sandbox.stop()


def _run_scenario(scenario: str, tmp_path: Path, reference: Outcome) -> None:
    write_requests = ROUTED + GUARDED + 1  # one PUT per account, one upsert collection
    trials = _trials(scenario, write_requests)
    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(_run_trial, t, tmp_path / f"trial{t.index}", reference) for t in trials]
        results = [future.result() for future in futures]
    print(f"\nchaos {scenario}: {len(trials)} kill -9 trials in {time.monotonic() - started:.1f} s", *results, sep="\n")
    assert len(results) == TRIALS_PER_SCENARIO


def test_daemon_kill_9_after_plan_queued_then_restart_applies_every_write_once(
    tmp_path: Path, reference: Outcome
) -> None:
    _run_scenario("queued", tmp_path, reference)


def test_daemon_kill_9_while_write_in_flight_then_restart_applies_every_write_once(
    tmp_path: Path, reference: Outcome
) -> None:
    _run_scenario("in_flight", tmp_path, reference)


def test_daemon_kill_9_mid_batch_then_restart_applies_every_write_once(tmp_path: Path, reference: Outcome) -> None:
    _run_scenario("mid_batch", tmp_path, reference)


# -- one instance -----------------------------------------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sandbox = _sandbox()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def _logged(log: Path, event: str) -> bool:
    return log.exists() and any(e["event"] == event for e in _events(log))


def test_daemon_second_instance_exits_4_and_kill_9_leaves_no_stale_lock(sandbox: Sandbox, tmp_path: Path) -> None:
    setup = _setup(sandbox, tmp_path)
    first = setup.daemon(tmp_path / "first.log")
    third: subprocess.Popen[str] | None = None
    try:
        _wait_until(lambda: _logged(tmp_path / "first.log", "cycle_finished"), what="the first cycle")
        second = subprocess.run(setup.command("daemon"), capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert second.returncode == 4
        assert f"another crm-sync instance (pid {first.pid}) holds the state database {setup.state}" in second.stderr
        assert first.poll() is None  # the refused start did not disturb the running daemon

        _kill(first)
        lock = setup.state.with_name(setup.state.name + ".lock")
        assert lock.read_text() == str(first.pid)  # the file stays; the kernel dropped the flock
        killed = time.monotonic()
        third = setup.daemon(tmp_path / "third.log")
        _wait_until(lambda: _logged(tmp_path / "third.log", "daemon_started"), what="the new instance")
        print(f"\nnew instance holds the lock {time.monotonic() - killed:.2f} s after kill -9 (process start included)")
        finished = "SELECT count(*) FROM runs WHERE finished_at IS NOT NULL"
        before = int(state_rows(setup.state, finished)[0][0])
        _wait_until(lambda: int(state_rows(setup.state, finished)[0][0]) > before, what="a cycle of the new instance")
        assert third.poll() is None
        assert lock.read_text() == str(third.pid)
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=30) == 0
    finally:
        for process in (first, third):
            if process is not None and process.poll() is None:
                process.kill()


# -- SIGTERM during a cycle -------------------------------------------------------------------------


def test_daemon_sigterm_mid_apply_exits_0_within_bound_and_next_run_finishes_once(
    sandbox: Sandbox, tmp_path: Path, reference: Outcome
) -> None:
    setup = _setup(sandbox, tmp_path)
    log = tmp_path / "daemon.log"
    sandbox.configure(latency_ms=40)  # ~65 write requests: about 2.6 s of apply
    daemon = setup.daemon(log)
    try:
        _wait_until(lambda: len(_write_calls(sandbox)) >= 10, what="the apply phase")
        signalled = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=30)
        took = time.monotonic() - signalled
    finally:
        if daemon.poll() is None:
            daemon.kill()
    print(f"\nSIGTERM mid-apply: exit {code} after {took:.2f} s (bound {SIGTERM_BOUND_S} s)")
    assert code == 0
    assert took <= SIGTERM_BOUND_S
    # Issue 16's progress lines (a phase's last one comes as the cycle ends) and the alerts the
    # finished cycle raised (logged after it) are no writes.
    events = [e["event"] for e in _events(log) if e["event"] not in ("cycle_progress", "alert")]
    after_stop = events[len(events) - 1 - events[::-1].index("stopping") :]
    assert after_stop[-2:] == ["cycle_finished", "daemon_stopped"]
    # Only the PUTs already in flight (vitally.write_workers = 4) came back after the signal.
    assert set(after_stop[1:-2]) <= {"write_failed"} and len(after_stop) - 3 <= 4

    runs = state_rows(setup.state, "SELECT status, finished_at FROM runs")
    assert len(runs) == 1 and runs[0][0] != "running" and runs[0][1] is not None  # the run row committed
    # The unit in flight finished and was recorded: every account the sandbox updated is marked
    # done, every other write stays pending, and the lead upsert was never sent.
    sent = {c["path"].rsplit("/", 1)[1] for c in _write_calls(sandbox) if c["status"] == 200}
    done = {record for (record,) in state_rows(setup.state, "SELECT DISTINCT record FROM outbox WHERE status = 'done'")}
    assert done == sent
    assert 10 <= len(sent) < ROUTED + GUARDED
    assert not any(c["path"] == UPSERT for c in sandbox.calls())
    assert _pending(setup.state) == sum(reference.writes.values()) - int(
        state_rows(setup.state, "SELECT count(*) FROM outbox WHERE status = 'done'")[0][0]
    )

    sandbox.configure(latency_ms=0)
    assert setup.run().returncode == 0
    assert _pending(setup.state) == 0
    _assert_exactly_once(_outcome(sandbox, setup.state), reference)


@pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="needs Linux pipe sizes")
def test_daemon_sigterm_while_blocked_writing_its_log_exits_0_once_the_log_drains(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The signal lands inside a log write (a slow log reader fills stderr's pipe): the handler
    must not log or take a lock itself, or the daemon deadlocks and never exits."""
    setup = _setup(sandbox, tmp_path)
    # Every account PUT is refused for good: one `write_failed` line each, ~13 kB in all.
    sandbox.add_fault("status", method="PUT", path_prefix=ACCOUNT_PUT, status=400, count=10**6)
    daemon = subprocess.Popen(setup.command("daemon"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert daemon.stderr is not None
        fcntl.fcntl(daemon.stderr.fileno(), fcntl.F_SETPIPE_SZ, 4096)
        # First its writes begin (starting up can take over a second on a loaded machine; a
        # signal before the handler is installed would prove nothing), then they stop for 1 s.
        began = time.monotonic()
        while not any(c["method"] == "PUT" for c in sandbox.calls()):
            assert time.monotonic() - began < 60, "the daemon never began writing"
            assert daemon.poll() is None, "the daemon stopped before writing"
            time.sleep(0.02)
        seen, still_since = -1, time.monotonic()
        while time.monotonic() - still_since < 1.0:  # no new request for 1 s: blocked on its log
            if sandbox.calls_total() != seen:
                seen, still_since = sandbox.calls_total(), time.monotonic()
            time.sleep(0.02)
        assert sum(c["method"] == "PUT" for c in sandbox.calls()) < ROUTED + GUARDED, "the log never filled up"
        daemon.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the handler runs inside the blocked write
        draining = time.monotonic()
        try:
            _, err = daemon.communicate(timeout=SIGTERM_BOUND_S)
        except subprocess.TimeoutExpired:
            raise AssertionError("the daemon hangs after SIGTERM (signal handler deadlocked)") from None
        took = time.monotonic() - draining
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    print(f"\nSIGTERM during a blocked log write: exit {daemon.returncode} {took:.2f} s after the log drained")
    assert daemon.returncode == 0
    logged = [json.loads(line)["event"] for line in err.decode().splitlines() if line.startswith("{")]
    events = [event for event in logged if event not in ("cycle_progress", "alert")]  # no writes (see above)
    after_stop = events[len(events) - 1 - events[::-1].index("stopping") :]
    assert after_stop[-2:] == ["cycle_finished", "daemon_stopped"]
    # Only the PUTs already in flight (vitally.write_workers = 4) came back after the signal.
    assert set(after_stop[1:-2]) <= {"write_failed"} and len(after_stop) - 3 <= 4
    assert "deferred" in err.decode()  # the writes not yet tried were left for the next start


# -- durability -------------------------------------------------------------------------------------


def test_state_db_is_wal_synchronous_full_and_owner_only(sandbox: Sandbox, tmp_path: Path) -> None:
    setup = _setup(sandbox, tmp_path)
    assert setup.run().returncode == 0
    # journal_mode=WAL is stored in the file: a fresh connection that sets nothing reads it back.
    assert state_rows(setup.state, "PRAGMA journal_mode") == [("wal",)]
    # synchronous is per connection: the code path the daemon opens with sets FULL (2).
    state = StateDB.open(setup.state)
    try:
        assert state.db.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert state.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with state.atomic():
            state.set_cursor("chaos.test", "1")  # a write, so the -wal and -shm files exist
        lock = setup.state.with_name(setup.state.name + ".lock")
        files = [setup.state, Path(f"{setup.state}-wal"), Path(f"{setup.state}-shm"), lock]
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}
    finally:
        state.close()
    assert modes == {path.name: 0o600 for path in files}
    assert _integrity(setup.state) == "ok"
