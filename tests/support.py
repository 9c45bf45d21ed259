"""Helpers shared by the test modules: the real CLI in a subprocess, the example config pointed at
a sandbox, and what `responses` recorded of a request."""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import requests

from core.decoding import Unreadable
from rules import Decision
from rules.base import reason_gist
from sandbox.store import DEFAULT_OWNER_USER_ID
from state import StateDB
from state.events import inbox_path
from sync.app import make_salesforce, make_vitally
from sync.config import Config, example_against, load_config
from sync.cycle import run_cycle
from sync.vocabulary import CycleReport
from sync.wire import WRITTEN_TRAIT, read_written_trait

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_DEFAULT_URL = "http://127.0.0.1:8765"
HEALTH_DEFAULT = "health_port = 9465"
# The sandbox is a real org: web-to-lead leaves leads with the org's default lead owner, a user, and
# its operator lists that user in `unrouted_owners` (docs/salesforce-setup.md, section 5).
UNROUTED_DEFAULT = "unrouted_owners = []"
SANDBOX_ORG_UNROUTED = f'unrouted_owners = ["{DEFAULT_OWNER_USER_ID}"]'
# Credentials and settings the CLI would otherwise pick up from the developer's environment.
_OUTER_PREFIXES = ("VITALLY_", "SALESFORCE_", "CRM_SYNC_")


def _cli_environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment the CLI runs in: no credentials or crm-sync settings from the outer one,
    except those in `env`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(_OUTER_PREFIXES)}
    environment.update(env or {})
    return environment


def run_cli(
    config: Path, state: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m sync --config CONFIG --state STATE ARGS…`, with no credentials or crm-sync
    settings from the outer environment except those in `env`."""
    return subprocess.run(
        [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=_cli_environment(env),
    )


def start_cli(config: Path, state: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """`run_cli`, started and not waited for: the caller acts while it runs, then `communicate()`s."""
    return subprocess.Popen(
        [sys.executable, "-m", "sync", "--config", str(config), "--state", str(state), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_cli_environment(env),
    )


def example_config_for(url: str, path: Path, replacements: Mapping[str, str] | None = None) -> Path:
    """Write config.example.toml pointed at the sandbox at `url` (plus text replacements) to `path`."""
    text = (ROOT / "config.example.toml").read_text().replace(SANDBOX_DEFAULT_URL, url)
    replacements = dict(replacements or {})
    # No /healthz and /metrics unless a test asks for them: daemons of other tests (or one a
    # developer runs) may hold the default port.
    replacements.setdefault(HEALTH_DEFAULT, "health_port = 0")
    replacements.setdefault(UNROUTED_DEFAULT, SANDBOX_ORG_UNROUTED)
    for old, new in replacements.items():
        text = text.replace(old, new)
    path.write_text(text)
    return path


def sandbox_org_config(url: str) -> Config:
    """`example_against(url)` as the sandbox org's operator sets it up: the org's default lead owner
    is an unrouted owner (docs/salesforce-setup.md, section 5)."""
    config = example_against(url)
    routing = replace(config.policy.routing, unrouted_owners=(DEFAULT_OWNER_USER_ID,))
    return replace(config, policy=replace(config.policy, routing=routing))


def dry_cycle(config: Config, now: datetime) -> CycleReport:
    """One dry-run cycle of `config` against its services, on an empty in-memory state, at `now`."""
    return run_cycle(
        config,
        StateDB.memory(),
        make_vitally(config),
        make_salesforce(config),
        clock=lambda: now,
        now=now,
        dry_run=True,
    )


def with_fallback_queues(book: dict[str, Any], config: Path = ROOT / "config.example.toml") -> dict[str, Any]:
    """`book` with the queues `config`'s pools fall back to, as records of the org: a real org
    refuses a lead owned by a queue it does not have (the operator creates them:
    docs/salesforce-setup.md)."""
    pools = load_config(config).pools.values()
    queues = sorted({p.fallback_owner for p in pools if p.fallback_owner and p.fallback_owner.startswith("00G")})
    known = {group["Id"] for group in book["salesforce"].get("Group", [])}
    book["salesforce"].setdefault("Group", []).extend(
        {"Id": q, "Name": f"Fallback {i}", "DeveloperName": f"Fallback_{i}", "Type": "Queue"}
        for i, q in enumerate(queues)
        if q not in known
    )
    return book


def new_payer(country: str = "US") -> dict[str, Any]:
    """acc_0001 as a new payer in `country` (a first bill of 300 last month, a business email):
    `onboarding.lead` fires for it, and its specialist is drawn from the Onboarding pool of the
    country's region."""
    traits = {
        "country": country,
        "users_by_country": {country: 3},
        "business_email": True,
        "invoices": [{"month": "2026-10", "amount": 300}],
        "domain": "acc_0001.example.com",
    }
    return vitally_account(1, id="acc_0001", mrr=300, traits=traits)


def vitally_account(index: int, **fields: Any) -> dict[str, Any]:
    """Vitally account number `index` as the sandbox serves it (`acc_0007`, `org_7`): a US company
    with 300 MRR, updated 2026-11-20, no key roles and no segments; `fields` replace or add
    top-level fields."""
    return {
        "id": f"acc_{index:04d}",
        "externalId": f"org_{index}",
        "name": f"Company {index}",
        "createdAt": "2025-01-01T00:00:00.000Z",
        "updatedAt": "2026-11-20T09:00:00.000Z",
        "mrr": 300,
        "traits": {"country": "US", "users_by_country": {"US": 3}},
        "keyRoles": [],
        "segments": [],
        **fields,
    }


def band_account(account_id: str, name: str, domain: str) -> dict[str, Any]:
    """A self-serve account in the product-led MRR band (product_led.mrr_band fires), as Vitally's
    GET /resources/accounts returns one: MRR 900 for three months, 64 employees, 9 users in DE."""
    return {
        "id": account_id,
        "externalId": account_id.replace("acc_", "org_", 1),
        "name": name,
        "createdAt": "2025-10-01T10:00:00.000Z",
        "updatedAt": "2026-11-20T10:00:00.000Z",
        "mrr": 900,
        "traits": {
            "domain": domain,
            "invoices": [{"month": m, "amount": 900} for m in ("2026-08", "2026-09", "2026-10")],
            "paidProducts": ["product_analytics", "session_replay"],
            "product_spend": {"product_analytics": 600, "session_replay": 300},
            "employee_count": 64,
            "user_count": 9,
            "users_by_country": {"DE": 9},
            "country": "DE",
            "first_paid_at": "2026-01-05",
            "business_email": True,
        },
        "keyRoles": [],
        "segments": [],
        "accountOwnerId": None,
        "usersCount": 9,
        "churnedAt": None,
    }


def person_sets_lead(url: str, lead_id: str, **fields: Any) -> None:
    """A person's edit of a Lead through the sObject API of the sandbox at `url` (Salesforce
    stamps it with its own clock)."""
    person_sets_record(url, "Lead", lead_id, **fields)


def person_sets_record(url: str, sobject: str, record_id: str, **fields: Any) -> None:
    """A person's (or an org's Flow's) edit of any record through the sObject API of the sandbox
    at `url`: a Lead reassigned, a User deactivated (`IsActive` false; users are never deleted)."""
    requests.patch(
        f"{url}/services/data/v59.0/sobjects/{sobject}/{record_id}",
        json=fields,
        headers={"Authorization": "Bearer test"},
        timeout=5,
    ).raise_for_status()


def written_unstamped(traits: dict[str, Any]) -> dict[str, Any]:
    """An account's traits with the `crm_sync_written` trait as the values it names: without the
    time of the PUT that wrote it (its `@` key), which differs from one run to the next."""
    if WRITTEN_TRAIT not in traits:
        return traits
    return {**traits, WRITTEN_TRAIT: read_written_trait(traits[WRITTEN_TRAIT])}


def org_with_queue(users: list[dict[str, Any]], queue: str) -> dict[str, Any]:
    """A Salesforce org's seed for the sandbox: these users, no record yet, and the pools' fallback
    queue. The queue exists in the org: a real org refuses a lead owned by a queue it does not have
    (the operator creates it: docs/salesforce-setup.md)."""
    return {
        "User": users,
        "Lead": [],
        "Opportunity": [],
        "Account": [],
        "Group": [{"Id": queue, "Name": "Fallback", "DeveloperName": "Fallback", "Type": "Queue"}],
    }


def pool_users(config: Config) -> list[dict[str, Any]]:
    """The active Salesforce Users of every member of `config`'s pools, sorted by id."""
    users = sorted({m.user_id: m.name for pool in config.pools.values() for m in pool.members}.items())
    return [{"Id": u, "Name": name, "Email": f"{u}@example.com", "IsActive": True} for u, name in users]


def request_kwargs(request: requests.PreparedRequest) -> dict[str, Any]:
    """The keyword arguments a request was sent with (`timeout`…), as `responses` records them on
    the request it saw (`req_kwargs`, set at run time, so not part of requests' types)."""
    recorded: dict[str, Any] = vars(request)["req_kwargs"]
    return recorded


def sent_json(request: requests.PreparedRequest) -> Any:
    """The JSON body a request was sent with."""
    assert request.body is not None
    return json.loads(request.body)


def decoded(record: dict[str, Any] | Unreadable) -> dict[str, Any]:
    """A record a connector yielded, which the test expects to have decoded within the limits."""
    assert isinstance(record, dict), f"not decoded: {record}"
    return record


def all_decoded(records: Iterable[dict[str, Any] | Unreadable]) -> list[dict[str, Any]]:
    """The records of a read, every one of which must have been decoded."""
    out: list[dict[str, Any]] = []
    for record in records:
        assert not isinstance(record, Unreadable), record
        out.append(record)
    return out


def stored_events(state: Path) -> list[tuple[str, str, str]]:
    """(source, record, delivery) of every event in the event inbox of the state file `state`, in
    the order they were stored."""
    db = sqlite3.connect(inbox_path(state))
    try:
        return db.execute("SELECT source, record, delivery FROM events ORDER BY id").fetchall()
    finally:
        db.close()


def wait_until(predicate: Callable[[], bool], what: str, *, timeout: float = 60, poll: float = 0.01) -> None:
    """Return once `predicate()` holds, asking every `poll` seconds; fail the test naming `what`
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def state_rows(state: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows from the state file `state` (a connection of our own, closed at once; it waits up to
    30 s for a daemon's write lock)."""
    db = sqlite3.connect(state, timeout=30)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def run_bench(script: str, *args: str, timeout: float = 240) -> str:
    """What `python bench/<script> <args>` prints, run for real in a subprocess; it must succeed."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def bench_module(name: str) -> ModuleType:
    """The script `bench/<name>.py` imported as a module (the benches import each other by name, as
    `python bench/<name>.py` finds them beside it)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "bench"))


def back_to_schema(conn: sqlite3.Connection, version: int) -> None:
    """Undo, in a state file's connection, the schema of the migrations after `version` that the
    tests of an upgrade start before (13 changed no schema; 14 made `llm_calls`, 15 `lead_merges`,
    16 the column `converted_opp` in the index `sf_records_links`, and `lead_merges_master`, 17
    `account_merges`, 18 the indexes of the judgements and of the malformed accounts, 19 the
    companies' signups and their triggers, 20 `lead_status_notes` and `marks`), and set its version."""
    if version < 20:
        conn.execute("DROP TABLE lead_status_notes")
        conn.execute("DROP TABLE marks")
    if version < 19:
        for event in ("insert", "update", "delete"):
            conn.execute(f"DROP TRIGGER signups_on_{event}")
        for table in ("signups", "signups_stale", "signups_key"):
            conn.execute(f"DROP TABLE {table}")
    if version < 18:
        for index in ("account_inputs_until", "account_inputs_from", "account_inputs_manager", "accounts_malformed"):
            conn.execute(f"DROP INDEX {index}")
    if version < 17:
        conn.execute("DROP TABLE account_merges")
    if version < 16:
        conn.execute("DROP INDEX lead_merges_master")
        conn.execute("DROP INDEX sf_records_links")
        conn.execute("ALTER TABLE sf_records DROP COLUMN converted_opp")
        conn.execute(
            "CREATE INDEX sf_records_links ON sf_records (object, id, digest, vitally_id, account_id, status, "
            "company, sync_key) WHERE coalesce(error, '') = ''"
        )
    if version < 15:
        conn.execute("DROP TABLE lead_merges")
    if version < 14:
        conn.execute("DROP TABLE llm_calls")
    conn.execute("UPDATE schema_version SET version = ?", [version])


def _gists(decision: Decision) -> dict[str, object]:
    return {name: reason_gist(name, value) for name, value in decision.traits.items()}


def _new_lead(decision: Decision) -> object:
    """A routing winner's lead, but its reasons' texts: they are written once, on the lead a plan
    creates (an account that plans one is judged again next cycle, never held)."""
    lead = decision.lead
    return None if lead is None else replace(lead, routing_reason=None, qualification_reason=None)


def acted(decisions: list[Decision]) -> list[object]:
    """What a plan reads of an account's verdicts (`sync.plan`), for the tests of when the clock
    alone may change them (tests/test_incremental.py, tests/test_rules_clock.py): what each rule
    that fired writes (traits, a reason trait's rule and recommendation: `rules.base.reason_gist`;
    segments; a task's key: a task is created once per key), the team and lead it routes to, and
    which rules could not be evaluated (reported as errors)."""
    fired = [
        (d.rule, _gists(d), d.segments, d.manages, d.team, d.region, _new_lead(d), d.task.key if d.task else None)
        for d in decisions
        if d.fired
    ]
    return [*fired, *(d.rule for d in decisions if d.review)]
