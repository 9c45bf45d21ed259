"""State: migrations, cursors that only move forward, an outbox that never duplicates."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from state import InstanceLockedError, PlannedWrite, StateDB, StateLock
from state.migrations import MIGRATIONS


def write(value: str, record: str = "acc_1") -> PlannedWrite:
    return PlannedWrite(
        system="vitally",
        op="set_traits",
        record=record,
        account=record,
        fields={"new_owner": value},
        previous={"new_owner": None},
        rule="allocation.new_owner",
        reason="because",
        payload={"new_owner": value},
    )


def test_state_migrations_are_applied_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    StateDB.open(path).close()
    StateDB.open(path).close()
    version = sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchall()
    assert version == [(len(MIGRATIONS),)]


def test_state_cursor_only_moves_forward() -> None:
    state = StateDB.memory()
    state.set_cursor("vitally.accounts", "2026-11-20T10:00:00.000Z")
    state.set_cursor("vitally.accounts", "2026-11-19T10:00:00.000Z")
    assert state.cursor("vitally.accounts") == "2026-11-20T10:00:00.000Z"


def test_state_enqueue_same_write_twice_keeps_one_pending() -> None:
    state = StateDB.memory()
    assert state.enqueue([write("EU TAM")], 1, "t") == 1
    assert state.enqueue([write("EU TAM")], 2, "t") == 0
    assert len(state.outbox("pending")) == 1


def test_state_newer_write_to_same_target_supersedes_the_pending_one() -> None:
    state = StateDB.memory()
    state.enqueue([write("EU TAM")], 1, "t")
    state.enqueue([write("US TAM")], 2, "t")
    pending = state.outbox("pending")
    assert [row.write.fields for row in pending] == [{"new_owner": "US TAM"}]
    assert len(state.outbox("superseded")) == 1


def test_state_done_write_can_be_planned_again_later() -> None:
    state = StateDB.memory()
    state.enqueue([write("EU TAM")], 1, "t")
    state.mark_done([state.outbox("pending")[0].id], "t")
    assert state.enqueue([write("EU TAM")], 3, "t") == 1


def test_state_parked_write_is_listed_and_retried() -> None:
    state = StateDB.memory()
    state.enqueue([write("EU TAM")], 1, "t")
    row = state.outbox("pending")[0]
    state.mark_failed([row.id], "DUPLICATES_DETECTED", "t", park=True)
    assert [r.last_error for r in state.outbox("parked")] == ["DUPLICATES_DETECTED"]
    assert state.unpark(None, "t") == 1
    assert state.outbox("pending")[0].attempts == 1


def test_state_snapshot_never_touches_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    real = StateDB.open(path)
    real.set_cursor("x", "1")
    real.db.conn.commit()
    real.close()
    before = path.read_bytes()
    copy = StateDB.snapshot(path)
    assert copy.cursor("x") == "1"
    with copy.atomic():
        copy.set_cursor("x", "2")
    assert path.read_bytes() == before


def test_state_lock_second_holder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with StateLock(path), pytest.raises(InstanceLockedError, match="another crm-sync instance"):
        StateLock(path).acquire()
    with StateLock(path):
        pass  # released: a new holder gets it at once
