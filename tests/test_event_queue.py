"""The event inbox beside the state file (issue 17): stored before acknowledged, once per
delivery, grouped by record for the mini-cycle, never waiting for a cycle's transaction and never
in its way."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlite_utils

from state import StateDB
from state.events import Event, EventInbox, EventNotQueuedError, inbox_path
from state.migrations import MIGRATIONS

AT = "2026-11-22T10:00:00.000Z"


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    StateDB.open(path).close()
    return path


def _events(path: Path) -> list[tuple[str, str, str, str]]:
    db = sqlite3.connect(inbox_path(path))
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


def test_put_does_not_wait_for_a_cycles_transaction(state_path: Path) -> None:
    """A cycle holds the state's write lock for its whole read-and-plan transaction; an event is
    stored (on disk, seen by another connection) while it is still open."""
    state = StateDB.open(state_path)
    inbox = EventInbox(state_path, wait_seconds=10)
    try:
        with state.atomic():
            state.set_cursor("vitally.accounts", AT)
            started = time.monotonic()
            assert inbox.put([Event("x", "vitally", "acc_1")], AT) == 1
            assert time.monotonic() - started < 1.0
            assert _events(state_path) == [("x", "vitally", "acc_1", "pending")]
            assert state.db.conn.in_transaction
    finally:
        inbox.close()
        state.close()


def test_put_gives_up_after_its_wait_and_stores_nothing(state_path: Path) -> None:
    """Only another writer of the inbox itself (here one that never lets go) can hold an insert up."""
    blocker = sqlite3.connect(inbox_path(state_path), isolation_level=None)
    inbox = EventInbox(state_path, wait_seconds=0.3)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(EventNotQueuedError):
            inbox.put([Event("x", "vitally", "acc_1")], AT)
        blocker.execute("ROLLBACK")
    finally:
        inbox.close()
        blocker.close()
    assert _events(state_path) == []


def test_the_inbox_is_a_file_of_its_own_beside_the_state_readable_by_its_owner_only(state_path: Path) -> None:
    events = inbox_path(state_path)
    assert events == state_path.with_name("state.db.events")
    assert events.stat().st_mode & 0o777 == 0o600
    link = state_path.with_name("linked.db")
    link.symlink_to(state_path)
    assert inbox_path(link) == events  # a symlinked --state finds the same inbox


def test_events_of_a_schema_6_state_are_carried_into_the_inbox(tmp_path: Path) -> None:
    """A state file written while the events were a table of the state keeps them, pending and
    processed (a processed Salesforce delivery must still be recognised as a repeat)."""
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    for step in MIGRATIONS[:6]:
        step(old)
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    old.execute("INSERT INTO schema_version (version) VALUES (6)")
    old.execute("INSERT INTO events (delivery, source, record, received_at) VALUES ('v1', 'vitally', 'acc_1', ?)", [AT])
    old.execute(
        "INSERT INTO events (delivery, source, record, received_at, status, run_id, processed_at) "
        "VALUES ('salesforce:04l1', 'salesforce', '00Q1', ?, 'done', 3, ?)",
        [AT, AT],
    )
    old.conn.commit()
    old.close()
    state = StateDB.open(path)
    try:
        assert not state.db["events"].exists()
        assert [(q.source, q.record) for q in state.pending_events(10)] == [("vitally", "acc_1")]
        assert state.event_counts() == {"done": 1, "pending": 1}
    finally:
        state.close()
    inbox = EventInbox(path, wait_seconds=5)
    try:
        assert inbox.put([Event("salesforce:04l1", "salesforce", "00Q1")], AT) == 0
    finally:
        inbox.close()


def test_a_snapshot_sees_the_inbox_and_leaves_it_as_it_was(state_path: Path) -> None:
    inbox = EventInbox(state_path, wait_seconds=5)
    try:
        inbox.put([Event("v1", "vitally", "acc_1")], AT)
    finally:
        inbox.close()
    before = inbox_path(state_path).read_bytes()
    copy = StateDB.snapshot(state_path)
    try:
        assert copy.event_counts() == {"pending": 1}
        copy.finish_events(copy.pending_events(10), "done", 1, AT)
    finally:
        copy.close()
    assert inbox_path(state_path).read_bytes() == before
    assert _events(state_path) == [("v1", "vitally", "acc_1", "pending")]


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


def test_a_second_connection_in_the_process_keeps_the_inbox_wal_for_the_first(state_path: Path) -> None:
    """The daemon opens the inbox twice (its state, then the receiver); another process reading it
    must not delete the WAL under them (a file descriptor opened and closed on it would drop this
    process's SQLite locks), so what the main thread finishes stays finished."""
    state = StateDB.open(state_path)
    inbox = EventInbox(state_path, wait_seconds=5)
    try:
        inbox.put([Event("v1", "vitally", "acc_1")], AT)
        # Another process reads it and closes (as the bench and the end-to-end tests do).
        read = "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM events').fetchall()"
        subprocess.run([sys.executable, "-c", read, str(inbox_path(state_path))], check=True, timeout=30)
        state.finish_events(state.pending_events(10), "done", 1, AT)
        assert Path(f"{inbox_path(state_path)}-wal").exists()
        assert _events(state_path) == [("v1", "vitally", "acc_1", "done")]
    finally:
        inbox.close()
        state.close()
