"""The event inbox in the state file (issue 17): stored before acknowledged, once per delivery,
grouped by record for the mini-cycle, and never in the way of a cycle's transaction."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from state import StateDB
from state.events import Event, EventInbox, EventNotQueuedError

AT = "2026-11-22T10:00:00.000Z"


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    StateDB.open(path).close()
    return path


def _events(path: Path) -> list[tuple[str, str, str, str]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT delivery, source, record, status FROM events ORDER BY id").fetchall()
    finally:
        db.close()


def test_put_is_on_disk_when_it_returns_and_a_repeated_delivery_is_stored_once(state_path: Path) -> None:
    inbox = EventInbox(state_path, wait_seconds=5)
    try:
        added = inbox.put([Event("04l1", "salesforce", "00Q1"), Event("04l2", "salesforce", "00Q2")], AT)
        again = inbox.put([Event("04l1", "salesforce", "00Q1")], AT)
    finally:
        inbox.close()
    assert (added, again) == (2, 0)
    # Another connection (another process would do the same) sees both: committed, not cached.
    assert _events(state_path) == [
        ("04l1", "salesforce", "00Q1", "pending"),
        ("04l2", "salesforce", "00Q2", "pending"),
    ]


def test_pending_events_group_by_record_and_finishing_keeps_those_that_arrived_since(state_path: Path) -> None:
    inbox = EventInbox(state_path, wait_seconds=5)
    state = StateDB.open(state_path)
    try:
        inbox.put([Event("v1", "vitally", "acc_1"), Event("s1", "salesforce", "00Q1")], AT)
        inbox.put([Event("v2", "vitally", "acc_1")], "2026-11-22T10:00:01.000Z")
        queued = state.pending_events(10)
        assert [(q.source, q.record, q.count, q.first_received) for q in queued] == [
            ("vitally", "acc_1", 2, AT),
            ("salesforce", "00Q1", 1, AT),
        ]
        inbox.put([Event("v3", "vitally", "acc_1")], AT)  # arrives while the first two are processed
        with state.atomic():
            state.finish_events(queued, "done", 7, AT, None)
        left = state.pending_events(10)
        assert [(q.record, q.count) for q in left] == [("acc_1", 1)]
        assert state.event_counts() == {"done": 3, "pending": 1}
        with state.atomic():
            state.retry_events(left, "vitally: unreachable")
        assert state.pending_events(10)[0].attempts == 1
    finally:
        state.close()
        inbox.close()


def test_purge_forgets_finished_events_only(state_path: Path) -> None:
    inbox = EventInbox(state_path, wait_seconds=5)
    state = StateDB.open(state_path)
    try:
        inbox.put([Event("a", "vitally", "acc_1"), Event("b", "vitally", "acc_2")], AT)
        with state.atomic():
            state.finish_events(state.pending_events(1), "done", 1, AT)
            assert state.purge_events("2026-11-23T00:00:00.000Z") == 1
        assert [row[0] for row in _events(state_path)] == ["b"]
    finally:
        state.close()
        inbox.close()


def test_put_waits_for_a_cycles_transaction_then_stores(state_path: Path) -> None:
    state = StateDB.open(state_path)
    inbox = EventInbox(state_path, wait_seconds=10)
    stored_at: list[float] = []

    def insert() -> None:
        assert inbox.put([Event("x", "vitally", "acc_1")], AT) == 1
        stored_at.append(time.monotonic())

    try:
        with state.atomic():
            state.set_cursor("vitally.accounts", AT)
            worker = threading.Thread(target=insert)
            worker.start()
            time.sleep(0.3)
            assert not stored_at, "the insert must wait for the cycle's commit"
            committed = time.monotonic()
        worker.join(timeout=10)
        assert stored_at and stored_at[0] >= committed
    finally:
        inbox.close()
        state.close()
    assert _events(state_path) == [("x", "vitally", "acc_1", "pending")]


def test_put_gives_up_after_its_wait_and_stores_nothing(state_path: Path) -> None:
    state = StateDB.open(state_path)
    inbox = EventInbox(state_path, wait_seconds=0.3)
    try:
        with state.atomic():
            state.set_cursor("vitally.accounts", AT)
            with pytest.raises(EventNotQueuedError):
                inbox.put([Event("x", "vitally", "acc_1")], AT)
    finally:
        inbox.close()
        state.close()
    assert _events(state_path) == []


def test_a_transaction_that_reads_first_is_not_broken_by_an_insert_in_between(state_path: Path) -> None:
    """Without BEGIN IMMEDIATE, a transaction that read before the receiver committed and wrote
    after fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT)."""
    state = StateDB.open(state_path)
    inbox = EventInbox(state_path, wait_seconds=10)
    try:
        done = threading.Event()

        def insert() -> None:
            inbox.put([Event("x", "vitally", "acc_1")], AT)
            done.set()

        with state.atomic():
            assert state.cursor("vitally.accounts") is None  # reads first
            worker = threading.Thread(target=insert)
            worker.start()
            time.sleep(0.2)
            state.set_cursor("vitally.accounts", AT)  # then writes: must not fail
        worker.join(timeout=10)
        assert done.is_set()
        assert state.cursor("vitally.accounts") == AT
    finally:
        inbox.close()
        state.close()


def test_member_load_is_replaced_whole(state_path: Path) -> None:
    state = StateDB.open(state_path)
    try:
        with state.atomic():
            state.save_member_load({"a@x.io": 3, "b@x.io": 1})
            state.save_member_load({"a@x.io": 4})
        assert state.member_load() == {"a@x.io": 4}
    finally:
        state.close()
