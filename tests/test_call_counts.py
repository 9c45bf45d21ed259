"""Call counts of the real CLI against the sandbox: each cycle makes the fewest requests its work
needs (sync/budget.py), never more.

Every expectation is computed from the sandbox's own state before and after the run (which
accounts changed, whose traits changed, which leads were created or updated), never from what the
product says it did. Every assertion is about counts, none about time.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import ceil
from pathlib import Path
from typing import Any

import pytest
from support import example_config_for, run_cli

from sandbox import Sandbox, SandboxConfig, generate_book
from sandbox.store import vitally_timestamp
from sync.budget import (
    RECHECK_EVERY,
    SF_COLLECTION_SIZE,
    Kind,
    Workload,
    batches,
    by_kind,
    incremental_accounts_read,
    minimum,
    pages,
)
from sync.ingest import SF_OBJECTS

pytestmark = pytest.mark.e2e

ACCOUNTS = 800
# The book is dated from the moment the module loads, so the sandbox's real clock (which stamps
# every write) runs after every generated timestamp, as it would in production.
NOW = datetime.now(UTC).replace(microsecond=0)
UPSERT_LEADS = "PATCH /services/data/v59.0/composite/sobjects/Lead/Sync_Key__c"
SILENT: Mapping[Kind, int] = {"vitally_write": 0, "vitally_task": 0, "sf_write": 0, "auth": 0, "other": 0}

State = dict[str, Any]


@dataclass(frozen=True)
class Cycle:
    """One CLI run: the sandbox state it started from and left, and the requests it made."""

    result: subprocess.CompletedProcess[str]
    before: State
    after: State
    counters: dict[str, dict[str, int]]
    calls: list[dict[str, Any]]

    @property
    def kinds(self) -> dict[Kind, int]:
        return by_kind(self.counters)

    def reads(self) -> dict[Kind, int]:
        kinds = self.kinds
        return {"vitally_read": kinds["vitally_read"], "sf_read": kinds["sf_read"]}

    def put_accounts(self) -> list[str]:
        """The account of every `PUT /resources/accounts/:id`, one entry per request."""
        return [c["path"].rsplit("/", 1)[1] for c in self.calls if c["method"] == "PUT"]


@pytest.fixture(scope="module")
def book() -> dict[str, Any]:
    return generate_book(ACCOUNTS, seed=5, now=NOW)


@pytest.fixture
def sandbox(book: dict[str, Any]) -> Iterator[Sandbox]:
    # The real 1,000 requests a minute would only add waiting to a cold run; counts are the same.
    with Sandbox(book, config=SandboxConfig(vitally_rate_limit=1_000_000)) as sb:
        yield sb


@pytest.fixture
def config(tmp_path: Path, sandbox: Sandbox) -> Path:
    return example_config_for(sandbox.url, tmp_path / "config.toml")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def cycle(sandbox: Sandbox, config: Path, state: Path, *args: str) -> Cycle:
    """`run ARGS` through the real CLI, with the sandbox's counters reset just before."""
    before = sandbox.state()
    sandbox.reset()
    result = run_cli(config, state, "run", *args, "--format", "json", "--now", NOW.isoformat(), timeout=120)
    return Cycle(result, before, sandbox.state(), sandbox.counters(), sandbox.calls())


def assert_exited_cleanly(*cycles: Cycle) -> None:
    """Every run exited 0. Checked last, so that a run that failed still shows its requests first."""
    for run in cycles:
        assert run.result.returncode == 0, run.result.stderr[-2000:]


# -- what the sandbox says changed ------------------------------------------------------------------


def accounts(state: State) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in state["vitally"]["accounts"]}


def listed(state: State) -> int:
    """Accounts `GET /resources/accounts` lists (active ones, its default)."""
    return sum(1 for a in state["vitally"]["accounts"] if a.get("churnedAt") is None)


def accounts_changed_since(read: State, now: State) -> int:
    """Accounts new or with a new `updatedAt` since the state a cycle last read."""
    seen = {i: a["updatedAt"] for i, a in accounts(read).items()}
    return sum(1 for i, a in accounts(now).items() if seen.get(i) != a["updatedAt"])


def sf_rows(state: State, sobject: str) -> dict[str, dict[str, Any]]:
    return {r["Id"]: r for r in state["salesforce"].get(sobject, [])}


def sf_changed_since(read: State, now: State) -> dict[str, int]:
    """Per polled object, records new or with a new `SystemModstamp` since `read`."""
    changed = {}
    for sobject in SF_OBJECTS:
        seen = {i: r.get("SystemModstamp") for i, r in sf_rows(read, sobject).items()}
        changed[sobject] = sum(1 for i, r in sf_rows(now, sobject).items() if seen.get(i) != r.get("SystemModstamp"))
    return changed


def traits_changed(before: State, after: State) -> set[str]:
    """Accounts whose traits differ after the run: exactly those that needed a PUT."""
    old = accounts(before)
    return {i for i, a in accounts(after).items() if i in old and a.get("traits") != old[i].get("traits")}


def tasks_written(before: State, after: State) -> int:
    old = {t.get("externalId"): t for t in before["vitally"]["tasks"]}
    return sum(1 for t in after["vitally"]["tasks"] if old.get(t.get("externalId")) != t)


_SYSTEM_FIELDS = frozenset({"SystemModstamp", "LastModifiedDate", "LastModifiedById"})


def leads_written(before: State, after: State) -> tuple[int, int]:
    """(leads created, leads whose fields changed) between the two states."""
    old = sf_rows(before, "Lead")
    created = updated = 0
    for lead_id, lead in sf_rows(after, "Lead").items():
        previous = old.get(lead_id)
        if previous is None:
            created += 1
        elif {k: v for k, v in lead.items() if k not in _SYSTEM_FIELDS} != {
            k: v for k, v in previous.items() if k not in _SYSTEM_FIELDS
        }:
            updated += 1
    return created, updated


def expected(run: Cycle, last_read: State | None) -> dict[Kind, int]:
    """The minimum for `run`: reads of what changed since the state the previous cycle read
    (`None`: no previous cycle, read everything), writes of what the run really changed."""
    if last_read is None:
        accounts_read = listed(run.before)
        sf_read = {sobject: len(sf_rows(run.before, sobject)) for sobject in SF_OBJECTS}
    else:
        accounts_read = incremental_accounts_read(accounts_changed_since(last_read, run.before), listed(run.before))
        sf_read = sf_changed_since(last_read, run.before)
    created, updated = leads_written(run.before, run.after)
    return minimum(
        Workload(
            accounts_read=accounts_read,
            sf_read=sf_read,
            accounts_changed=len(traits_changed(run.before, run.after)),
            tasks=tasks_written(run.before, run.after),
            sf_upserts=created,
            sf_updates=updated,
        )
    )


def synced(sandbox: Sandbox, config: Path, state: Path) -> tuple[Cycle, Cycle]:
    """A cold applied run, then a second run that reads the echo of the first one's writes."""
    cold = cycle(sandbox, config, state)
    return cold, cycle(sandbox, config, state)


def stamp(sandbox: Sandbox, offset_ms: int = 0) -> str:
    """A Vitally `updatedAt` at the sandbox's now, as its billing sync would write it."""
    return vitally_timestamp(sandbox.now() + timedelta(milliseconds=offset_ms))


# -- the tests ------------------------------------------------------------------------------------------


def test_cold_dry_run_reads_every_page_once_and_writes_nothing(sandbox: Sandbox, config: Path, state: Path) -> None:
    run = cycle(sandbox, config, state, "--dry-run")

    assert run.kinds == expected(run, None)
    assert run.kinds["vitally_read"] == ceil(ACCOUNTS / 100)
    assert {k: run.kinds[k] for k in SILENT} == SILENT
    assert_exited_cleanly(run)


def test_cold_run_makes_the_minimum_reads_and_writes(sandbox: Sandbox, config: Path, state: Path) -> None:
    run = cycle(sandbox, config, state)

    want = expected(run, None)
    assert run.reads() == {"vitally_read": want["vitally_read"], "sf_read": want["sf_read"]}
    assert run.kinds["vitally_write"] > 0  # a first run has work to do: the test can fail
    assert sorted(run.put_accounts()) == sorted(traits_changed(run.before, run.after))
    assert run.kinds == want
    assert_exited_cleanly(run)


def test_second_identical_run_writes_nothing(sandbox: Sandbox, config: Path, state: Path) -> None:
    cold, second = synced(sandbox, config, state)

    assert cold.kinds["vitally_write"] > 0
    assert {k: second.kinds[k] for k in SILENT} == SILENT
    # It reads the echo of the first run's writes (they bumped updatedAt) and nothing more.
    assert second.kinds == expected(second, cold.before)
    assert_exited_cleanly(cold, second)


def test_second_run_writes_nothing_after_the_first_disqualified_an_accounts_only_lead(
    book: dict[str, Any], tmp_path: Path
) -> None:
    # The first run classifies the lead as spam and disqualifies it; the account's stage must be
    # the one it has once that write is done, or the second run has to correct it.
    malformed = set(book["_cases"]["malformed"])
    linked = {r.get("Vitally_Account_Id__c") for sobject in ("Lead", "Account") for r in book["salesforce"][sobject]}
    account = next(
        a
        for a in book["vitally"]["accounts"]
        if a["id"] not in linked | malformed and not a["keyRoles"] and not a["segments"]
    )
    spam = {
        "LastName": "Vance",
        "Company": account["name"],
        "Email": f"vance@{account['traits'].get('domain', 'example.com')}",
        "LeadSource": "Demo request",
        "Status": "Working",
        "IsConverted": False,
        "OwnerId": book["salesforce"]["User"][0]["Id"],
        "Form_Text__c": "Buy Instagram followers and crypto signals, limited offer today only.",
        "Vitally_Account_Id__c": account["id"],
    }
    seed = {**book, "salesforce": {**book["salesforce"], "Lead": [*book["salesforce"]["Lead"], spam]}}
    with Sandbox(seed, config=SandboxConfig(vitally_rate_limit=1_000_000)) as sandbox:
        config = example_config_for(sandbox.url, tmp_path / "config.toml")
        cold, second = synced(sandbox, config, tmp_path / "state.db")

    lead = next(r for r in cold.after["salesforce"]["Lead"] if r.get("Form_Text__c") == spam["Form_Text__c"])
    assert lead["Status"] == "Disqualified"
    assert {k: second.kinds[k] for k in SILENT} == SILENT, second.put_accounts()
    assert_exited_cleanly(cold, second)


def test_idle_cycle_is_one_vitally_page_and_one_query_per_object(sandbox: Sandbox, config: Path, state: Path) -> None:
    cold, second = synced(sandbox, config, state)

    idle = cycle(sandbox, config, state)

    assert idle.counters == {
        "vitally": {"GET /resources/accounts": 1},
        "salesforce": {"GET /services/data/v59.0/queryAll": len(SF_OBJECTS)},
    }
    assert idle.kinds == minimum(Workload(accounts_read=1, sf_read=dict.fromkeys(SF_OBJECTS, 0)))
    assert idle.kinds == expected(idle, second.before)
    assert_exited_cleanly(cold, second, idle)


def test_idle_cycle_stops_rereading_a_burst_of_lead_writes_once_the_look_back_has_passed(
    book: dict[str, Any], tmp_path: Path
) -> None:
    # Small Salesforce pages make the cold run's lead writes span several of them. Within
    # `lookback_seconds` (300) of a read, the next read looks back over them on purpose (late
    # commits); a read that started more than that after them never reads them again, even
    # though no newer change moved the cursor.
    with Sandbox(book, config=SandboxConfig(vitally_rate_limit=1_000_000, sf_page_size=50)) as sandbox:
        config = example_config_for(sandbox.url, tmp_path / "config.toml")
        cold, second = synced(sandbox, config, tmp_path / "state.db")
        sandbox.set_clock(advance_seconds=301)
        within = cycle(sandbox, config, tmp_path / "state.db")  # started 301 s after the writes
        idle = cycle(sandbox, config, tmp_path / "state.db")

    assert sum(leads_written(cold.before, cold.after)) > 50
    # The look-back's later pages: a QueryAll's nextRecordsUrl says `query` ("QueryAll More Results").
    assert within.counters["salesforce"]["GET /services/data/v59.0/query/:locator"] > 0
    assert idle.counters == {
        "vitally": {"GET /resources/accounts": 1},
        "salesforce": {"GET /services/data/v59.0/queryAll": len(SF_OBJECTS)},
    }
    assert_exited_cleanly(cold, second, within, idle)


def test_incremental_cycle_reads_the_changes_and_puts_once_per_changed_account(
    sandbox: Sandbox, config: Path, state: Path, book: dict[str, Any]
) -> None:
    cold, second = synced(sandbox, config, state)
    malformed = set(book["_cases"]["malformed"])
    plain = sorted(
        (
            a
            for a in sandbox.state()["vitally"]["accounts"]
            if a["id"] not in malformed and not a["keyRoles"] and isinstance(a["mrr"], int | float)
        ),
        key=lambda a: a["id"],
    )
    # About 1 %: four accounts grow to $2,400 MRR (account review, a new owner: traits change),
    # four others move by a dollar (read, but most likely nothing to write).
    grown = [{**a, "mrr": 2400, "updatedAt": stamp(sandbox, k)} for k, a in enumerate(plain[:4])]
    nudged = [{**a, "mrr": a["mrr"] + 1, "updatedAt": stamp(sandbox, 10 + k)} for k, a in enumerate(plain[-4:])]
    sandbox.load({"vitally": {"accounts": grown + nudged}})

    run = cycle(sandbox, config, state)

    changed = traits_changed(run.before, run.after)
    assert {a["id"] for a in grown} <= changed
    assert run.reads() == {
        # The cycle's read, then one last look at the accounts list before the PUTs (sync.freshness).
        "vitally_read": pages(incremental_accounts_read(8, listed(run.before)), 100)
        + batches(len(changed), RECHECK_EVERY),
        "sf_read": len(SF_OBJECTS),
    }
    assert sorted(run.put_accounts()) == sorted(changed)  # one PUT per changed account, none to the others
    assert run.kinds == expected(run, second.before)
    assert_exited_cleanly(cold, second, run)


def test_routing_burst_upserts_the_new_leads_in_collections_of_200(
    sandbox: Sandbox, config: Path, state: Path, book: dict[str, Any]
) -> None:
    cold, second = synced(sandbox, config, state)
    template = next(
        a for a in book["vitally"]["accounts"] if book["_cases"]["accounts"].get(a["id"]) == ["product_led.mrr_band"]
    )
    burst = 450
    signups = [
        {**copy.deepcopy(template), "id": f"acc_burst_{k}", "externalId": f"org_burst_{k}", "updatedAt": stamp(sandbox)}
        for k in range(burst)
    ]
    sandbox.load({"vitally": {"accounts": signups}})

    run = cycle(sandbox, config, state)

    created, updated = leads_written(run.before, run.after)
    assert created == burst  # every new product-led account became a lead
    assert run.counters["salesforce"].get(UPSERT_LEADS) == batches(created, SF_COLLECTION_SIZE) == 3
    assert run.kinds["sf_write"] == batches(created, SF_COLLECTION_SIZE) + batches(updated, SF_COLLECTION_SIZE)
    assert run.kinds == expected(run, second.before)
    assert_exited_cleanly(cold, second, run)


# -- the budget itself ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "route", "kind"),
    [
        ("vitally", "GET /resources/accounts", "vitally_read"),
        ("vitally", "PUT /resources/accounts/:id", "vitally_write"),
        ("vitally", "POST /resources/tasks", "vitally_task"),
        ("vitally", "GET /resources/accounts/:id", "other"),
        ("salesforce", "GET /services/data/v59.0/query", "sf_read"),
        ("salesforce", "GET /services/data/v59.0/query/:locator", "sf_read"),
        ("salesforce", "GET /services/data/v59.0/queryAll", "sf_read"),
        ("salesforce", "GET /services/data/v59.0/queryAll/:locator", "sf_read"),
        ("salesforce", "PATCH /services/data/v59.0/composite/sobjects", "sf_write"),
        ("salesforce", UPSERT_LEADS, "sf_write"),
        ("salesforce", "POST /services/oauth2/token", "auth"),
        ("salesforce", "PATCH /services/data/v59.0/sobjects/Lead/:id", "other"),
        ("salesforce", "GET /services/data/v59.0/limits", "other"),
    ],
)
def test_budget_classifies_each_counter_route(system: str, route: str, kind: Kind) -> None:
    assert by_kind({system: {route: 3}})[kind] == 3


def test_budget_minimum_counts_pages_and_batches_per_endpoint() -> None:
    work = Workload(
        accounts_read=10_001,
        sf_read={"Lead": 4_001, "User": 0},
        accounts_changed=7,
        tasks=2,
        sf_upserts=201,
        sf_updates=1,
        login=True,
        posts=4,
        tickets=3,
    )

    assert minimum(work) == {
        "vitally_read": 101 + 1,  # + one last look before the 7 PUTs
        "vitally_write": 7,
        "vitally_task": 2,
        "sf_read": 3 + 1 + 1,  # an object with no change still costs the query that says so; + one last look
        "sf_write": 2 + 1,
        "auth": 1,
        "slack_post": 4,  # one per lead announced
        "slack_read": 0,  # the channel is read back only after a post whose answer was lost
        "zendesk_ticket": 3,  # one per support request
        "zendesk_read": 0,  # a ticket is looked up only after a create whose answer was lost
        "other": 0,
    }
    assert pages(0, 100) == 1 and batches(0, 200) == 0
    # The last looks before writing (sync/freshness.py): a page per started 50 PUTs, a query per
    # collection of lead updates; none when nothing is written.
    looks = minimum(Workload(accounts_read=1, accounts_changed=101, sf_updates=401))
    assert looks["vitally_read"] == 1 + 3 and looks["sf_read"] == 3
    # Tasks with no trait write: one look before them (a task on an account churned since is not
    # created); with trait writes, the looks before the PUTs come first and cover them.
    assert minimum(Workload(accounts_read=1, tasks=3))["vitally_read"] == 1 + 1
    assert minimum(Workload(accounts_read=1, accounts_changed=1, tasks=3))["vitally_read"] == 1 + 1
    assert minimum(Workload(accounts_read=1))["vitally_read"] == 1
    assert minimum(Workload(accounts_read=1))["vitally_read"] == 1
    assert incremental_accounts_read(0, 5) == 1 and incremental_accounts_read(9, 5) == 5
