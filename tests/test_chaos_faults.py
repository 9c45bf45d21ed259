"""Chaos: the real CLI (`python -m sync run`) in a subprocess against the sandbox, with faults.

- a fifth of all requests fail (429 with RateLimit-Reset, 500, 503, timeouts, connection resets,
  and writes applied whose answer is dropped): repeated runs end in exactly the state a fault-free
  run reaches, with no duplicate lead, and the extra requests are counted;
- an expired Salesforce session costs exactly one re-login; the daily quota (a 403) or our own
  budget share stops the writes, keeps them pending and the next day's cycle finishes them;
- per-record errors in sObject Collections: locks are re-sent, permanent refusals are parked
  with their reason, listed by `failed`, never turned into a create, and `retry` sends them again.

Retries are fast without any test-only branch: the config sets `max_wait_seconds` (the cap of
any single retry wait) to 0.01 s and `timeout_seconds` to 1 s; the sandbox keeps a `timeout`
fault's connection open just longer than that.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import SANDBOX_ORG_UNROUTED, UNROUTED_DEFAULT, run_cli, written_unstamped

from sandbox import Sandbox, SandboxConfig, generate_book
from sandbox.server import FaultKind

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
NOW_TEXT = "2026-11-22T09:00:00Z"
CLIENT_TIMEOUT_S = 1.0
# A run with no fault armed waits as long as the product's default: on a loaded machine (the suite
# runs on every core) an honest answer can take over CLIENT_TIMEOUT_S, and the fault-free reference
# run must not turn that into a fault of its own (it once exited 3 under a load of 11).
REFERENCE_TIMEOUT_S = 30.0
MAX_WAIT_S = 0.01
DATA = "/services/data/v59.0"
UPSERT = f"{DATA}/composite/sobjects/Lead/Sync_Key__c"
UPDATE = f"{DATA}/composite/sobjects"
TOKEN = "/services/oauth2/token"
CLIENT_ID = "crm-sync-integration"
CLIENT_SECRET = "s3cr3t-for-the-sandbox"
# Fields the sandbox stamps itself: they differ between two runs by construction.
_STAMPS = {"Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "id", "createdAt", "updatedAt"}


# -- the sandbox, the config, the CLI --------------------------------------------------------------


def start_sandbox(accounts: int, seed: int, **settings: Any) -> Sandbox:
    """A sandbox with a generated book, its clock frozen at NOW, no rate limit in the way, and a
    `timeout` fault that outlasts the client's timeout by a little."""
    config = SandboxConfig().updated(
        {"vitally_rate_limit": 10_000_000, "fault_timeout_s": CLIENT_TIMEOUT_S + 0.2, **settings}
    )
    return Sandbox(generate_book(accounts, seed=seed, now=NOW), config=config, now=NOW).start()


@pytest.fixture
def sandboxes() -> Iterator[Callable[..., Sandbox]]:
    started: list[Sandbox] = []

    def make(accounts: int, seed: int, **settings: Any) -> Sandbox:
        started.append(start_sandbox(accounts, seed, **settings))
        return started[-1]

    yield make
    for sandbox in started:
        sandbox.stop()


def _replace(text: str, old: str, new: str, count: int) -> str:
    assert text.count(old) == count, f"config.example.toml changed: {old!r}"
    return text.replace(old, new)


def _set(text: str, section: str, key: str, value: str) -> str:
    """`key = value` in `[section]` of the example config: the setting must be there, uncommented."""
    lines = text.splitlines(keepends=True)
    current, found = None, False
    for index, line in enumerate(lines):
        if line.startswith("["):
            current = line.strip().strip("[]")
        elif current == section and line.startswith(f"{key} = "):
            lines[index], found = f"{key} = {value}\n", True
    assert found, f"config.example.toml changed: no {key} in [{section}]"
    return "".join(lines)


def write_config(
    sandbox: Sandbox,
    path: Path,
    *,
    oauth: bool = False,
    budget_share: float = 0.8,
    timeout_s: float = CLIENT_TIMEOUT_S,
) -> Path:
    """config.example.toml pointed at `sandbox`, with fast retries (the product's own settings) and
    a client timeout of `timeout_s` (short by default, so that an injected timeout costs little)."""
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    text = _set(text, "vitally", "base_url", f'"{sandbox.url}"')
    text = _set(text, "salesforce", "instance_url", f'"{sandbox.url}"')
    for section in ("vitally", "salesforce"):
        text = _set(text, section, "timeout_seconds", str(timeout_s))
        text = _set(text, section, "max_wait_seconds", str(MAX_WAIT_S))
    text = _set(text, "salesforce", "budget_share", str(budget_share))
    text = _replace(text, UNROUTED_DEFAULT, SANDBOX_ORG_UNROUTED, 1)  # the org's default lead owner
    if oauth:
        text = _replace(
            text,
            'token_env = "SALESFORCE_TOKEN"\n',
            'client_id_env = "SALESFORCE_CLIENT_ID"\nclient_secret_env = "SALESFORCE_CLIENT_SECRET"\n',
            1,
        )
    path.write_text(text, encoding="utf-8")
    return path


def cli(config: Path, state: Path, *args: str, oauth: bool = False) -> subprocess.CompletedProcess[str]:
    env = {"SALESFORCE_CLIENT_ID": CLIENT_ID, "SALESFORCE_CLIENT_SECRET": CLIENT_SECRET} if oauth else None
    return run_cli(config, state, *args, env=env)


def run(config: Path, state: Path, *, oauth: bool = False) -> subprocess.CompletedProcess[str]:
    return cli(config, state, "run", "--format", "json", "--now", NOW_TEXT, oauth=oauth)


def applied(result: subprocess.CompletedProcess[str]) -> int:
    match = re.search(r"applied (\d+), failed (\d+), parked (\d+)", result.stderr)
    assert match is not None, result.stderr[-2000:]
    return int(match.group(1))


def plan(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def outbox(state: Path) -> Counter[tuple[str, str]]:
    """(system, status) → rows of the outbox."""
    db = sqlite3.connect(state)
    try:
        rows = db.execute("SELECT system, status, count(*) FROM outbox GROUP BY system, status").fetchall()
    finally:
        db.close()
    return Counter({(system, status): n for system, status, n in rows})


def pending(state: Path) -> int:
    return sum(n for (_, status), n in outbox(state).items() if status == "pending")


@dataclass
class Settled:
    runs: list[subprocess.CompletedProcess[str]]

    @property
    def codes(self) -> list[int]:
        return [r.returncode for r in self.runs]


def sync_until_settled(config: Path, state: Path, *, max_runs: int) -> Settled:
    """`run` until a cycle exits 0, plans nothing, applies nothing and leaves nothing pending."""
    runs = []
    for _ in range(max_runs):
        result = run(config, state)
        runs.append(result)
        if result.returncode == 0 and not plan(result) and applied(result) == 0 and pending(state) == 0:
            return Settled(runs)
        assert result.returncode in (0, 1, 3), result.stderr[-2000:]
    raise AssertionError(f"not settled after {max_runs} runs: {[r.returncode for r in runs]}")


def business_state(sandbox: Sandbox) -> dict[str, Any]:
    """What the daemon is responsible for, without what the sandbox stamps itself: Vitally traits
    and segments per account, tasks by externalId, Salesforce leads (ours by Sync_Key__c, the
    others by Id) with owners and every field."""
    state = sandbox.state()
    accounts = {
        a["id"]: {"traits": written_unstamped(a["traits"]), "segments": sorted(s["name"] for s in a["segments"])}
        for a in state["vitally"]["accounts"]
    }
    tasks = {t["externalId"]: _unstamped(t) for t in state["vitally"]["tasks"]}
    ours = {lead["Sync_Key__c"]: _unstamped(lead) for lead in state["salesforce"]["Lead"] if lead.get("Sync_Key__c")}
    others = {lead["Id"]: lead for lead in state["salesforce"]["Lead"] if not lead.get("Sync_Key__c")}
    for lead in others.values():
        for stamp in ("LastModifiedDate", "SystemModstamp"):
            lead.pop(stamp, None)
    return {
        "accounts": accounts,
        "tasks": tasks,
        "task_count": len(state["vitally"]["tasks"]),  # tasks are upserted on externalId: never twice
        "our_leads": ours,
        "other_leads": others,
    }


def _unstamped(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _STAMPS}


def our_leads(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [lead for lead in sandbox.state()["salesforce"]["Lead"] if lead.get("Sync_Key__c")]


def total(counters: dict[str, dict[str, int]]) -> int:
    return sum(n for per_system in counters.values() for n in per_system.values())


def arm(sandbox: Sandbox, method: str, prefix: str, mix: list[tuple[FaultKind, int, float]], seed: int) -> None:
    """Faults on `method prefix`: each (kind, status, share) hits `share` of all matching requests.

    The sandbox tries faults in order and the first that fires wins, so each is armed with its
    share of the requests the earlier ones left alone."""
    taken = 0.0
    for offset, (kind, status, share) in enumerate(mix):
        sandbox.add_fault(
            kind,
            method=method,
            path_prefix=prefix,
            status=status,
            share=share / (1.0 - taken),
            random_seed=seed + offset,
            reset_seconds=1,
        )
        taken += share


def mix(share: float, *, timeouts: float) -> list[tuple[FaultKind, int, float]]:
    """`share` of requests fail: `timeouts` of them by a timeout, the rest evenly by 429, 500,
    503, a connection reset and a dropped answer (to a request that took effect)."""
    each = (share - timeouts) / 5
    return [
        ("status", 429, each),
        ("status", 500, each),
        ("status", 503, each),
        ("reset", 503, each),
        ("drop_response", 503, each),
        ("timeout", 503, timeouts),
    ]


@contextmanager
def when_called(
    sandbox: Sandbox, seen: Callable[[dict[str, Any]], bool], action: Callable[[], None]
) -> Iterator[threading.Event]:
    """Run `action` as soon as the sandbox logs a call for which `seen` is true (a fault-free hook
    into the middle of a cycle running in another process)."""
    done = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        since = sandbox.calls_total()
        while not stop.is_set():
            calls = sandbox.calls(since)
            if calls:
                since = calls[-1]["seq"] + 1
            if any(seen(call) for call in calls):
                action()
                done.set()
                return
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(timeout=5)


def first_vitally_put(call: dict[str, Any]) -> bool:
    """The apply phase has begun: every Salesforce read is done, every Salesforce write is to come
    (the cycle applies all Vitally writes, hundreds of requests, before the first Salesforce one)."""
    return bool(call["system"] == "vitally" and call["method"] == "PUT")


def statuses(sandbox: Sandbox, system: str) -> Counter[tuple[str, str, int]]:
    return Counter((c["method"], c["template"], c["status"]) for c in sandbox.calls() if c["system"] == system)


# -- 0. the retry waits are capped by the config --------------------------------------------------


def test_config_max_wait_seconds_caps_every_retry_wait_of_both_clients(
    sandboxes: Callable[..., Sandbox], tmp_path: Path
) -> None:
    from sync.app import make_salesforce, make_vitally
    from sync.config import load_config

    sandbox = sandboxes(20, 1)
    text = write_config(sandbox, tmp_path / "config.toml").read_text(encoding="utf-8")
    config = load_config(write_config(sandbox, tmp_path / "config.toml"))
    assert config.vitally.max_wait_seconds == config.salesforce.max_wait_seconds == MAX_WAIT_S
    assert f"max_wait_seconds = {MAX_WAIT_S}" in text
    waits: list[float] = []
    # RateLimit-Reset asks for 30 s, the backoff would reach 4 s, a lock re-send 2 s: all capped.
    sandbox.add_fault("status", method="GET", path_prefix="/resources/", status=429, count=1, reset_seconds=30)
    sandbox.add_fault("status", method="GET", path_prefix="/resources/", status=503, count=3)
    sandbox.add_fault("status", method="GET", path_prefix=DATA, status=503, count=3)
    sandbox.add_record_errors("Lead", "UNABLE_TO_LOCK_ROW", count=2, match={"Sync_Key__c": "k-1"})

    vitally = make_vitally(config, sleep=waits.append)
    assert len(list(vitally.iter_accounts())) == 20
    salesforce = make_salesforce(config, sleep=waits.append)
    assert list(salesforce.iter_changed("User", ["Name"], None))
    [result] = salesforce.upsert(
        "Lead", "Sync_Key__c", [{"Sync_Key__c": "k-1", "LastName": "L", "Company": "C"}], set_owner=False
    )

    assert result.ok
    # Retry waits: Vitally 4, Salesforce 3 + 2 lock re-sends. After the 429 (Remaining 0, Reset
    # 30 s) Vitally's rate limiter also holds each of the 4 later attempts back, capped the same.
    assert len(waits) == 4 + 3 + 2 + 4
    assert max(waits) <= MAX_WAIT_S
    assert "max_wait_seconds: must be ≥ 0" in _config_problems(
        text.replace(f"max_wait_seconds = {MAX_WAIT_S}", "max_wait_seconds = -1", 1), tmp_path
    )


def _config_problems(text: str, tmp_path: Path) -> str:
    from core.errors import ConfigError
    from sync.config import load_config

    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return "\n".join(caught.value.problems)


# -- 1. a fifth of all requests fail ---------------------------------------------------------------


def test_chaos_faults_on_a_fifth_of_requests_end_in_the_fault_free_state(
    sandboxes: Callable[..., Sandbox], tmp_path: Path
) -> None:
    accounts, seed = 2000, 11

    started = time.monotonic()  # printed for the record, never asserted
    clean = sandboxes(accounts, seed)
    reference = sync_until_settled(
        write_config(clean, tmp_path / "clean.toml", timeout_s=REFERENCE_TIMEOUT_S), tmp_path / "clean.db", max_runs=5
    )
    assert reference.codes[0] == 0
    expected = business_state(clean)
    clean_requests = total(clean.counters())

    clean_seconds = time.monotonic() - started
    faulty = sandboxes(accounts, seed)
    # 20 % of the requests of every kind fail. Timeouts cost a whole client timeout each, so on the
    # ~2,200 Vitally writes they are a small part of the 20 %; reads and Salesforce get a full share.
    arm(faulty, "PUT", "/resources/", mix(0.20, timeouts=0.005), seed=100)
    arm(faulty, "POST", "/resources/", mix(0.20, timeouts=0.01), seed=200)
    arm(faulty, "GET", "/resources/", mix(0.20, timeouts=0.2 / 6), seed=300)
    arm(faulty, "GET", DATA, mix(0.20, timeouts=0.2 / 6), seed=400)
    arm(faulty, "PATCH", DATA, mix(0.20, timeouts=0.2 / 6), seed=500)
    state = tmp_path / "faulty.db"
    chaos = sync_until_settled(write_config(faulty, tmp_path / "faulty.toml"), state, max_runs=15)
    faulty.clear_faults()
    faulty_seconds = time.monotonic() - started - clean_seconds

    calls = faulty.calls()
    faulted = Counter(str(c["status"]) if c["fault"] == "status" else c["fault"] for c in calls if "fault" in c)
    faulty_requests = total(faulty.counters())
    print(
        f"\nfault-free: {len(reference.runs)} runs {reference.codes}, {clean_requests} requests, {clean_seconds:.0f}s"
        f"\nfaulty:     {len(chaos.runs)} runs {chaos.codes}, {faulty_requests} requests, {faulty_seconds:.0f}s, "
        f"{sum(faulted.values())} faulted {dict(faulted)}"
        f"\nratio {faulty_requests / clean_requests:.3f}; fault share {sum(faulted.values()) / faulty_requests:.3f}"
    )

    actual = business_state(faulty)
    assert actual["accounts"] == expected["accounts"]
    assert actual["tasks"] == expected["tasks"]
    assert actual["task_count"] == expected["task_count"] == len(expected["tasks"])
    assert actual["other_leads"] == expected["other_leads"]
    assert actual["our_leads"] == expected["our_leads"]
    keys = [lead["Sync_Key__c"] for lead in our_leads(faulty)]
    assert len(keys) == len(set(keys)) == len(expected["our_leads"]) > 0  # no duplicate lead
    assert outbox(state)[("salesforce", "parked")] == outbox(state)[("vitally", "parked")] == 0
    # Every kind of fault happened, about a fifth of all requests failed, and each that surely did
    # not take effect cost a request. A write whose answer was dropped took effect: the look after it
    # (one listing for a page of Vitally PUTs, one query for a collection) finds it done, so it may
    # cost no request of its own.
    assert set(faulted) == {"429", "500", "503", "reset", "drop_response", "timeout"}
    assert 0.15 < sum(faulted.values()) / faulty_requests < 0.25
    assert faulty_requests - clean_requests >= 0.9 * (sum(faulted.values()) - faulted["drop_response"])
    # A retried write is an upsert or an update by Id, never a create.
    assert not any(c["method"] == "POST" and c["system"] == "salesforce" for c in calls)


ONBOARDING_TASK = "crm-sync:onboarding.lead:"  # the specialist's task: sync/planned_writes.py


@pytest.mark.parametrize(("kind", "code"), [("status", 1), ("reset", 3)])
def test_chaos_a_task_that_failed_for_good_is_sent_once_its_specialist_trait_went_through(
    kind: FaultKind, code: int, sandboxes: Callable[..., Sandbox], tmp_path: Path
) -> None:
    """An onboarding lead's specialist is one trait PUT and one task POST. When every attempt of the
    task's POST fails (all `max_attempts` of them: rare under the fifth-of-requests chaos above,
    where it lost `crm-sync:onboarding.lead:acc_1045` after a first run that exited 3) while the
    trait's PUT went through, the task stays pending, and a later cycle, which no longer waits for a
    specialist (the trait names one now), must still send it, not drop it as "not planned again".
    A 503 fails that task and the cycle goes on (exit 1); resets on every attempt read as Vitally
    unreachable and end the cycle at the first task (exit 3)."""
    accounts, seed = 60, 5
    clean = sandboxes(accounts, seed)
    sync_until_settled(
        write_config(clean, tmp_path / "clean.toml", timeout_s=REFERENCE_TIMEOUT_S), tmp_path / "clean.db", max_runs=5
    )
    expected = business_state(clean)["tasks"]
    onboarding = sorted(key for key in expected if key.startswith(ONBOARDING_TASK))
    assert onboarding, "the book must give an onboarding lead a specialist"

    faulty = sandboxes(accounts, seed)
    faulty.add_fault(kind, method="POST", path_prefix="/resources/tasks", status=503, share=1.0)
    config, state = write_config(faulty, tmp_path / "faulty.toml"), tmp_path / "faulty.db"
    first = run(config, state)

    assert first.returncode == code, first.stderr[-2000:]
    assert business_state(faulty)["tasks"] == {}  # no task went through…
    specialists = {a["id"]: a["traits"].get("onboarding_specialist") for a in faulty.state()["vitally"]["accounts"]}
    for key in onboarding:  # …but every specialist trait did
        assert specialists[key.removeprefix(ONBOARDING_TASK)], key
    assert outbox(state)[("vitally", "pending")] == len(expected)

    faulty.clear_faults()
    settled = sync_until_settled(config, state, max_runs=5)

    assert settled.codes[0] == 0, settled.runs[0].stderr[-2000:]
    assert business_state(faulty)["tasks"] == expected
    assert pending(state) == 0
    db = sqlite3.connect(state)
    try:
        query = "SELECT count(*) FROM outbox WHERE op = 'create_task' AND status = 'superseded'"
        dropped = db.execute(query).fetchone()
    finally:
        db.close()
    assert dropped == (0,)


# -- 2. credentials and quota ----------------------------------------------------------------------


def test_chaos_expired_session_mid_run_costs_exactly_one_relogin(
    sandboxes: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandboxes(200, 21, sf_client_id=CLIENT_ID, sf_client_secret=CLIENT_SECRET, latency_ms=1)
    config = write_config(sandbox, tmp_path / "config.toml", oauth=True)

    with when_called(sandbox, first_vitally_put, sandbox.expire_sessions) as expired:
        result = run(config, tmp_path / "state.db", oauth=True)

    assert expired.is_set()
    assert result.returncode == 0, result.stderr[-2000:]
    calls = [c for c in sandbox.calls() if c["system"] == "salesforce"]
    assert [c["status"] for c in calls if c["path"] == TOKEN] == [200, 200]  # first login + one re-login
    refused = [c for c in calls if c["status"] == 401]
    assert len(refused) == 1 and refused[0]["method"] == "PATCH"
    # The refused write was sent again after the re-login, and everything went through.
    after = calls[calls.index(refused[0]) + 1 :]
    assert after[0]["path"] == TOKEN and after[1]["path"] == refused[0]["path"] and after[1]["status"] == 200
    assert our_leads(sandbox)
    assert pending(tmp_path / "state.db") == 0


def test_chaos_request_limit_exceeded_stops_writes_and_next_day_finishes_them(
    sandboxes: Callable[..., Sandbox], tmp_path: Path
) -> None:
    quota = 10_000
    sandbox = sandboxes(200, 22, sf_daily_quota=quota, latency_ms=1)
    config = write_config(sandbox, tmp_path / "config.toml")
    state = tmp_path / "state.db"

    # Another integration spends the org's whole allocation while our cycle writes to Vitally.
    with when_called(sandbox, first_vitally_put, lambda: sandbox.set_api_usage(quota)) as spent:
        first = run(config, state)

    assert spent.is_set()
    assert first.returncode == 1, first.stderr[-2000:]
    sf = statuses(sandbox, "salesforce")
    assert sum(n for (method, _, status), n in sf.items() if status == 403) == 1  # not retried
    assert not any(method == "PATCH" and status == 200 for (method, _, status) in sf)
    planned = Counter(line["system"] for line in plan(first))
    assert outbox(state) == {("vitally", "done"): planned["vitally"], ("salesforce", "pending"): planned["salesforce"]}
    assert our_leads(sandbox) == []

    sandbox.set_clock(advance_seconds=86_400)  # a new day: a fresh allocation
    sandbox.reset()
    second = run(config, state)

    assert second.returncode == 0, second.stderr[-2000:]
    assert outbox(state)[("salesforce", "done")] == planned["salesforce"]
    assert pending(state) == 0
    keys = [lead["Sync_Key__c"] for lead in our_leads(sandbox)]
    upserts = {line["record"] for line in plan(first) if line["op"] == "upsert_lead"}
    assert sorted(keys) == sorted(upserts)  # every lead once
    assert not any(status == 403 for (_, _, status) in statuses(sandbox, "salesforce"))


def test_chaos_budget_share_spent_stops_writes_without_a_403(sandboxes: Callable[..., Sandbox], tmp_path: Path) -> None:
    quota = 10_000
    sandbox = sandboxes(200, 23, sf_daily_quota=quota)
    sandbox.set_api_usage(quota - 10)  # the reads fit, and our share (80 %) is long spent
    config = write_config(sandbox, tmp_path / "config.toml")
    state = tmp_path / "state.db"

    first = run(config, state)

    assert first.returncode == 1, first.stderr[-2000:]
    sf = statuses(sandbox, "salesforce")
    assert not any(method == "PATCH" for (method, _, _) in sf)  # stopped before sending
    assert not any(status == 403 for (_, _, status) in sf)
    planned = Counter(line["system"] for line in plan(first))
    assert planned["salesforce"] > 0
    assert outbox(state) == {("vitally", "done"): planned["vitally"], ("salesforce", "pending"): planned["salesforce"]}

    sandbox.set_clock(advance_seconds=86_400)
    second = run(config, state)

    assert second.returncode == 0, second.stderr[-2000:]
    assert pending(state) == 0
    keys = [lead["Sync_Key__c"] for lead in our_leads(sandbox)]
    assert len(keys) == len(set(keys)) == sum(line["op"] == "upsert_lead" for line in plan(first))


@pytest.mark.parametrize("scenario", ["request_limit", "budget_share"])
def test_chaos_quota_stop_says_so_on_stderr(scenario: str, sandboxes: Callable[..., Sandbox], tmp_path: Path) -> None:
    quota = 10_000
    sandbox = sandboxes(50, 24, sf_daily_quota=quota, latency_ms=1)
    config = write_config(sandbox, tmp_path / "config.toml")
    if scenario == "budget_share":
        sandbox.set_api_usage(quota - 10)
        result = run(config, tmp_path / "state.db")
    else:
        with when_called(sandbox, first_vitally_put, lambda: sandbox.set_api_usage(quota)):
            result = run(config, tmp_path / "state.db")
    assert result.returncode == 1
    assert re.search(r"quota|budget|REQUEST_LIMIT_EXCEEDED", result.stderr, re.IGNORECASE), result.stderr[-2000:]


# -- 3. partial failures in collections ------------------------------------------------------------


@dataclass
class Book:
    """A sandbox with a small book, its config and state file, and what a dry run plans."""

    sandbox: Sandbox
    config: Path
    state: Path
    audit: list[dict[str, Any]]

    @property
    def upserts(self) -> list[str]:
        return sorted(line["record"] for line in self.audit if line["op"] == "upsert_lead")

    @property
    def updates(self) -> list[str]:
        return sorted(line["record"] for line in self.audit if line["op"] == "update_lead")

    def wanted(self, record: str) -> dict[str, Any]:
        return dict(next(line["fields"] for line in self.audit if line["record"] == record))

    def lead(self, lead_id: str) -> dict[str, Any]:
        return next(lead for lead in self.sandbox.state()["salesforce"]["Lead"] if lead["Id"] == lead_id)

    def leads(self) -> int:
        return len(self.sandbox.state()["salesforce"]["Lead"])

    def parked(self) -> dict[str, dict[str, Any]]:
        """`failed --format json`, parsed: record → its row (id, system, op, record, rule, attempts, error)."""
        listing = cli(self.config, self.state, "failed", "--format", "json")
        assert listing.returncode == 0, listing.stderr
        if not listing.stdout:
            assert listing.stderr == "no parked writes\n"
            return {}
        rows = [json.loads(line) for line in listing.stdout.splitlines()]
        assert len({row["record"] for row in rows}) == len(rows), f"a write is parked twice: {listing.stdout}"
        return {row["record"]: row for row in rows}


@pytest.fixture
def book(sandboxes: Callable[..., Sandbox], tmp_path: Path) -> Book:
    sandbox = sandboxes(200, 31)
    config = write_config(sandbox, tmp_path / "config.toml")
    state = tmp_path / "state.db"
    audit = cli(config, state, "--dry-run", "--format", "json", "--now", NOW_TEXT)
    assert audit.returncode == 0, audit.stderr[-2000:]
    found = Book(sandbox, config, state, plan(audit))
    assert len(found.upserts) >= 3 and found.updates, "the book must plan new leads and lead updates"
    return found


def salesforce_posts(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [c for c in sandbox.calls() if c["system"] == "salesforce" and c["method"] == "POST"]


def test_chaos_record_errors_unable_to_lock_row_is_resent_and_applied(book: Book) -> None:
    locked = book.upserts[0]
    book.sandbox.add_record_errors("Lead", "UNABLE_TO_LOCK_ROW", count=2, match={"Sync_Key__c": locked})

    result = run(book.config, book.state)

    assert result.returncode == 0, result.stderr[-2000:]
    assert book.sandbox.record_errors() == []  # both injected locks were met
    # The first collection, then the locked record alone, twice more.
    assert statuses(book.sandbox, "salesforce")[("PATCH", UPSERT, 200)] == 3
    assert sorted(lead["Sync_Key__c"] for lead in our_leads(book.sandbox)) == book.upserts
    assert book.parked() == {} and pending(book.state) == 0


def test_chaos_record_errors_refusals_are_parked_listed_and_never_created(book: Book) -> None:
    duplicate, invalid = book.upserts[:2]
    converted = book.updates[0]
    book.sandbox.add_record_errors("Lead", "DUPLICATES_DETECTED", count=1, match={"Sync_Key__c": duplicate})
    book.sandbox.add_record_errors(
        "Lead",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        count=1,
        match={"Sync_Key__c": invalid},
        message="Routing reason must name the rule",
    )
    book.sandbox.add_record_errors("Lead", "CANNOT_UPDATE_CONVERTED_LEAD", count=1, match={"Id": converted})
    before = book.leads()

    result = run(book.config, book.state)

    assert result.returncode == 1, result.stderr[-2000:]
    assert "parked 3" in result.stderr
    assert book.sandbox.record_errors() == []
    assert {lead["Sync_Key__c"] for lead in our_leads(book.sandbox)} == set(book.upserts) - {duplicate, invalid}
    assert book.leads() == before + len(book.upserts) - 2  # no create instead of a refused upsert
    assert salesforce_posts(book.sandbox) == []
    assert not book.wanted(converted).items() <= book.lead(converted).items()
    parked = book.parked()
    assert set(parked) == {duplicate, invalid, converted}
    for record, op, code in (
        (duplicate, "upsert_lead", "DUPLICATES_DETECTED"),
        (invalid, "upsert_lead", "FIELD_CUSTOM_VALIDATION_EXCEPTION: Routing reason must name the rule"),
        (converted, "update_lead", "CANNOT_UPDATE_CONVERTED_LEAD"),
    ):
        row = parked[record]
        assert isinstance(row["id"], int) and row["system"] == "salesforce" and row["op"] == op
        assert row["record"] == record
        assert row["attempts"] == 1 and f"{record}: {code}" in row["error"]


def test_chaos_record_errors_retry_requeues_parked_writes_for_the_next_run(book: Book) -> None:
    duplicate = book.upserts[0]
    converted = book.updates[0]
    book.sandbox.add_record_errors("Lead", "DUPLICATES_DETECTED", count=1, match={"Sync_Key__c": duplicate})
    book.sandbox.add_record_errors("Lead", "CANNOT_UPDATE_CONVERTED_LEAD", count=1, match={"Id": converted})
    assert run(book.config, book.state).returncode == 1
    parked = book.parked()
    before = book.leads()

    one = cli(book.config, book.state, "retry", str(parked[duplicate]["id"]))
    assert one.returncode == 0 and one.stdout.startswith("1 parked write(s) queued again"), one.stdout
    assert set(book.parked()) == {converted}
    book.sandbox.reset()
    second = run(book.config, book.state)

    assert second.returncode == 0, second.stderr[-2000:]
    assert duplicate in {lead["Sync_Key__c"] for lead in our_leads(book.sandbox)}
    assert book.leads() == before + 1

    rest = cli(book.config, book.state, "retry")
    assert rest.returncode == 0, rest.stderr[-2000:]
    third = run(book.config, book.state)

    assert third.returncode == 0, third.stderr[-2000:]
    assert book.parked() == {} and pending(book.state) == 0
    assert sorted(lead["Sync_Key__c"] for lead in our_leads(book.sandbox)) == book.upserts  # each once
    assert book.wanted(converted).items() <= book.lead(converted).items()
    assert salesforce_posts(book.sandbox) == []


def test_chaos_record_errors_parked_write_waits_for_retry(book: Book) -> None:
    refused = book.upserts[0]
    book.sandbox.add_record_errors("Lead", "DUPLICATES_DETECTED", count=2, match={"Sync_Key__c": refused})
    assert run(book.config, book.state).returncode == 1

    second = run(book.config, book.state)  # no `retry`: the parked write must not go out again

    assert second.returncode == 0, second.stderr[-2000:]
    assert [rule["count"] for rule in book.sandbox.record_errors()] == [1]  # not sent again
    assert set(book.parked()) == {refused}  # listed once
    again = cli(book.config, book.state, "retry")
    assert again.returncode == 0 and again.stdout.startswith("1 parked write(s) queued again"), again.stderr
    assert run(book.config, book.state).returncode == 1  # sent, and refused a second time
    assert cli(book.config, book.state, "retry").returncode == 0
    assert run(book.config, book.state).returncode == 0
    assert [lead["Sync_Key__c"] for lead in our_leads(book.sandbox)].count(refused) == 1
