"""An account deleted in Vitally leaves the mirror, and its pending writes are dropped.

Vitally "permanently deletes an Account [...] and all data that exclusively belongs to that
Account (e.g., notes, tasks, traits)" (its "Delete an Account" endpoint, W-delete in
tests/fixtures/real/SOURCES.md), and its lists keep no tombstone: an incremental read by
`updatedAt` can never see a deletion. Before, a deleted account stayed in the mirror for good: its
writes were refused one by one (404, parked), and the rules kept judging it (a date-driven trigger
or `run --full` could still plan a Salesforce lead for a customer no longer in Vitally). Now every
`[vitally] reconcile_hours` (24) the ids of every account are listed (sorted by `createdAt`, which
"will ensure you return a full list every time": docs.vitally.io, REST API overview) and a mirrored
account no longer listed is forgotten, with the same guard as Salesforce's comparison of Ids.
Found by an audit of the connectors against the services' documentation (2026-12-05).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from support import vitally_account

from connectors.vitally import VitallyClient
from sandbox import Sandbox, generate_book
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import Config, example_against
from sync.cycle import run_cycle
from sync.vocabulary import CycleReport

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
DAY = 86_400


def _delete(sandbox: Sandbox, account_id: str) -> requests.Response:
    return requests.delete(f"{sandbox.url}/resources/accounts/{account_id}", auth=("a-person", ""), timeout=5)


def test_the_sandbox_deletes_an_account_for_good() -> None:
    seed: dict[str, Any] = {"vitally": {"accounts": [vitally_account(i) for i in range(3)]}}
    with Sandbox(seed, now=NOW) as sandbox:
        requests.post(
            f"{sandbox.url}/resources/tasks",
            json={"externalId": "t1", "accountId": "acc_0001", "name": "Call back"},
            auth=("k", ""),
            timeout=5,
        ).raise_for_status()
        answer = _delete(sandbox, "acc_0001")
        assert (answer.status_code, answer.json()) == (200, {})
        listed = requests.get(f"{sandbox.url}/resources/accounts", auth=("k", ""), timeout=5).json()["results"]
        assert sorted(a["id"] for a in listed) == ["acc_0000", "acc_0002"]
        assert requests.get(f"{sandbox.url}/resources/accounts/acc_0001", auth=("k", ""), timeout=5).status_code == 404
        put = requests.put(f"{sandbox.url}/resources/accounts/acc_0001", json={"traits": {}}, auth=("k", ""), timeout=5)
        assert put.status_code == 404
        assert sandbox.state()["vitally"]["tasks"] == []  # its data goes with it
        assert _delete(sandbox, "acc_0001").status_code == 404


class World:
    def __init__(self, sandbox: Sandbox, config: Config, state: StateDB) -> None:
        self.sandbox, self.config, self.state = sandbox, config, state

    def cycle(self) -> CycleReport:
        now = self.sandbox.now()
        vitally, salesforce = make_vitally(self.config, sleep=lambda _: None), make_salesforce(self.config)
        return run_cycle(self.config, self.state, vitally, salesforce, clock=lambda: now, now=now)

    def advance(self, seconds: float) -> None:
        self.sandbox.set_clock(advance_seconds=seconds)

    def mirrored(self) -> list[str]:
        return [str(i) for (i,) in self.state.db.execute("SELECT id FROM accounts ORDER BY id")]

    def account_lists(self) -> int:
        return sum(1 for c in self.sandbox.calls() if c["method"] == "GET" and c["path"] == "/resources/accounts")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    seed = generate_book(0, now=NOW)  # the example pools' sales team, no accounts
    del seed["_cases"]
    seed["vitally"]["accounts"] = [vitally_account(i) for i in range(30)]
    with Sandbox(seed, now=NOW) as sandbox:
        sandbox.configure(vitally_rate_limit=10**6)
        config = example_against(sandbox.url)
        config = replace(config, vitally=replace(config.vitally, max_attempts=1))
        state = StateDB.open(tmp_path / "state.db")
        try:
            yield World(sandbox, config, state)
        finally:
            state.close()


def _pending_write_to_acc_0007(world: World) -> str:
    """A first cycle whose PUT to acc_0007 fails (503): its write stays pending."""
    world.sandbox.add_fault("status", status=503, method="PUT", path_prefix="/resources/accounts/acc_0007", count=10)
    first = world.cycle()
    assert "acc_0007" in world.mirrored() and len(world.mirrored()) == 30
    pending = "SELECT count(*) FROM outbox WHERE status = 'pending' AND record = 'acc_0007'"
    assert world.state.db.execute(pending).fetchone()[0] >= 1, first.counts
    world.sandbox.clear_faults()
    assert _delete(world.sandbox, "acc_0007").status_code == 200  # a person deletes it in Vitally
    return "SELECT DISTINCT status, last_error FROM outbox WHERE record = 'acc_0007'"


def test_an_account_deleted_in_vitally_leaves_the_mirror_with_its_pending_writes(world: World) -> None:
    writes = _pending_write_to_acc_0007(world)
    world.advance(DAY)
    world.sandbox.reset()
    report = world.cycle()
    assert "acc_0007" not in world.mirrored() and len(world.mirrored()) == 29
    assert report.counts["accounts_deleted"] == 1 and report.counts["dropped"] >= 1
    [(status, reason)] = world.state.db.execute(writes).fetchall()
    assert status == "superseded" and reason.startswith("the account was deleted in Vitally")
    assert not any(c["path"] == "/resources/accounts/acc_0007" for c in world.sandbox.calls())  # no PUT to it
    again = world.cycle()  # nothing left to judge or write for it
    assert again.counts["accounts_deleted"] == 0 and "acc_0007" not in world.mirrored()


def test_a_write_refused_since_the_deletion_is_dropped_too(world: World) -> None:
    writes = _pending_write_to_acc_0007(world)
    world.advance(3600)  # within the day: no comparison yet, the PUT is refused (404) and parked
    world.cycle()
    assert "acc_0007" in world.mirrored()
    assert [status for status, _ in world.state.db.execute(writes).fetchall()] == ["parked"]
    world.advance(DAY)
    world.cycle()
    [(status, reason)] = world.state.db.execute(writes).fetchall()
    assert status == "superseded" and reason.startswith("the account was deleted in Vitally")
    assert "acc_0007" not in world.mirrored()


def test_more_vanished_accounts_than_the_share_are_reported_not_removed(world: World) -> None:
    world.cycle()
    for i in range(12):  # 12 of 30 (40 %): more than 0.2 of them, and more than 10
        assert _delete(world.sandbox, f"acc_{i:04d}").status_code == 200
    world.advance(DAY + 60)
    report = world.cycle()
    assert len(world.mirrored()) == 30
    assert report.counts["accounts_deleted"] == 0
    assert any("12 of the 30 mirrored accounts are no longer listed" in notice for notice in report.notices)


def test_the_first_cycle_only_starts_the_clock(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    listed: list[int] = []
    original = VitallyClient.iter_account_ids

    def counted(self: VitallyClient) -> Iterator[str | None]:
        listed.append(1)
        yield from original(self)

    monkeypatch.setattr(VitallyClient, "iter_account_ids", counted)
    world.cycle()
    assert listed == []  # no list of every id on the first cycle
    assert world.state.cursor("vitally.accounts.reconciled_at") == "2026-11-22T09:00:00.000Z"
    world.advance(DAY - 60)
    world.cycle()
    assert listed == []
    world.advance(120)
    world.cycle()
    assert listed == [1]
    assert world.state.cursor("vitally.accounts.reconciled_at") == "2026-11-23T09:01:00.000Z"


def test_forgetting_an_account_drops_only_the_writes_that_would_undo_nothing() -> None:
    """What `remove_accounts` drops (found by a review): the account's trait writes and tasks and a
    new lead never sent; not a lead upsert already sent once (it may have created the lead: the
    plan settles it against Salesforce), nor the announcement of a lead already written."""
    from state.writes import PlannedWrite

    state = StateDB.memory()
    run = state.begin_run("2026-11-22T09:00:00.000Z", "run", "2026-11-22T09:00:00.000Z")
    writes = [
        PlannedWrite("vitally", "set_traits", "acc_1", {"a": 1}, "r", "why", {"a": 1}),
        PlannedWrite("vitally", "create_task", "crm-sync:t:acc_1", {"n": 1}, "r", "why", {"n": 1}, account="acc_1"),
        PlannedWrite("salesforce", "upsert_lead", "crm-sync-acc_1-1", {"L": 1}, "r", "why", {"L": 1}, account="acc_1"),
        PlannedWrite("salesforce", "upsert_lead", "crm-sync-acc_1-2", {"L": 2}, "r", "why", {"L": 2}, account="acc_1"),
        PlannedWrite("slack", "announce", "00QA", {"text": "x"}, "r", "why", {"text": "x"}, account="acc_1"),
        PlannedWrite("vitally", "set_traits", "acc_2", {"a": 1}, "r", "why", {"a": 1}),
    ]
    state.enqueue(writes, run, "2026-11-22T09:00:00.000Z")
    state.db.execute("UPDATE outbox SET attempts = 1 WHERE record = 'crm-sync-acc_1-2'")
    dropped = state.remove_accounts(["acc_1"], "the account was deleted in Vitally", "2026-11-23T09:00:00.000Z")
    statuses = dict(state.db.execute("SELECT record, status FROM outbox").fetchall())
    assert dropped == 3
    assert statuses == {
        "acc_1": "superseded",
        "crm-sync:t:acc_1": "superseded",
        "crm-sync-acc_1-1": "superseded",
        "crm-sync-acc_1-2": "pending",  # sent once: settled by the plan, not dropped blind
        "00QA": "pending",  # the lead exists: its owner is still told
        "acc_2": "pending",
    }
