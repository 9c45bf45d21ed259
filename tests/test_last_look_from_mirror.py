"""The last look at the accounts an event's mini-cycle planned from the mirror, at the unit level:
whose value it takes for crm-sync's (as `sync.ownership.ours_in` does, never a stale
`crm_sync_written` trait), and the reads before a task (`LastLook.may_create_task`) and a PUT: an
error or a gone account keeps the task pending and unsent, uncounted; an active account costs one
read; a malformed answer holds that account's writes alone, reported once. From
a review's reproductions (2026-12-07), with a stand-in for the Vitally connector (its calls counted)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from connectors.base import VitallyPort
from core.errors import ContractError, RetriableError
from state import StateDB
from state.writes import PlannedWrite
from sync.apply import Applier
from sync.freshness import LastLook
from sync.ownership import ours_in
from sync.vocabulary import CycleReport, Hooks, iso
from sync.wire import WRITTEN_TRAIT, read_written_trait, written_trait, written_trait_at

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
ACC = "acc_1"


def _state(tmp_path: Path) -> tuple[StateDB, int]:
    state = StateDB.open(tmp_path / "state.db")
    with state.atomic():
        run = state.begin_run(iso(NOW), "event", iso(NOW))
    return state, run


def _row(state: StateDB, run: int, write: PlannedWrite) -> Any:
    with state.atomic():
        state.enqueue([write], run, iso(NOW))
    [rows] = state.pending_records(write.system, "", 10)
    return rows[0]


def _stage(value: str, expects: str) -> PlannedWrite:
    return PlannedWrite(
        system="vitally",
        op="set_traits",
        record=ACC,
        fields={"lifecycle_stage": value},
        rule="lifecycle.stage",
        reason="r",
        payload={"lifecycle_stage": value},
        expects={"lifecycle_stage": expects},
    )


def test_a_stale_trait_adopts_a_persons_value_that_ours_in_calls_theirs(tmp_path: Path) -> None:
    """crm-sync PUT stage X (the trait names X, t0). Later its state recorded Y for the field
    without a PUT (a value found already there by a look: the trait is not rewritten). A person
    then sets X again. A whole cycle's `ours_in` says crm-sync's is Y (the person's X is a
    conflict), and so does the event's last look (it took the trait's X for crm-sync's)."""
    state, run = _state(tmp_path)
    t0 = iso(NOW - timedelta(days=2))
    t1 = iso(NOW - timedelta(days=1))
    with state.atomic():
        state.set_last_written("vitally", ACC, {"lifecycle_stage": "X"}, run, t0)
        state.set_last_written("vitally", ACC, {"lifecycle_stage": "Y"}, run, t1)  # found there, no PUT
    mark = written_trait({"lifecycle_stage": "X"}, at={"lifecycle_stage": t0})
    current = {"lifecycle_stage": "X", WRITTEN_TRAIT: mark}  # the person's X; the trait as the PUT left it

    last = {(ACC, "lifecycle_stage"): "Y"}
    at = {ACC: {"lifecycle_stage": t1}}
    whole = ours_in(
        last, ACC, "lifecycle_stage", read_written_trait(mark), written_trait_at(mark), lambda r, f: at[r][f]
    )
    assert whole == ["Y"]  # a whole cycle: X is the person's

    row = _row(state, run, _stage("X", expects="Y"))  # planned from the mirror (Y)
    look = LastLook(
        state,
        cast(VitallyPort, None),  # not asked: `_sent` reads no service
        None,
        CycleReport(run_id=run, dry_run=False, now=NOW),
        lambda: NOW,
        read_account=lambda _: None,
        from_mirror={ACC},
    )
    assert look._sent(row, current) is False, "the person's X is recorded as crm-sync's (stale trait)"


class _Vitally:
    def __init__(self, error: Exception | None, account: dict[str, Any] | None) -> None:
        self.error, self.account, self.reads = error, account, 0
        self.tasks: list[dict[str, Any]] = []

    def get_account(self, _: str) -> dict[str, Any] | None:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.account

    def iter_account_tasks(self, _: str) -> list[Any]:
        return []

    def upsert_task(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.tasks.append(payload)
        return payload


def _task(state: StateDB, run: int) -> Any:
    return _row(state, run, _task_write())


def _task_write() -> PlannedWrite:
    return PlannedWrite(
        system="vitally",
        op="create_task",
        record="task-ext-1",
        fields={},
        rule="nurture",
        reason="r",
        payload={"externalId": "task-ext-1", "accountId": ACC, "name": "t"},
        account=ACC,
    )


def _apply_task(tmp_path: Path, vitally: _Vitally) -> tuple[StateDB, Any, CycleReport]:
    state, run = _state(tmp_path)
    row = _task(state, run)
    report = CycleReport(run_id=run, dry_run=False, now=NOW)
    port = cast(VitallyPort, vitally)
    look = LastLook(
        state,
        port,
        None,
        report,
        lambda: NOW,
        read_account=vitally.get_account,
        from_mirror={ACC},
    )
    applier = Applier(state, port, None, report, clock=lambda: NOW, look=look, write_workers=1, hooks=Hooks())
    applier._send_task(row)
    [after] = state.db.execute("SELECT status, attempts FROM outbox WHERE id = ?", [row.id]).fetchall()
    return state, after, report


def test_a_transient_read_error_keeps_the_task_pending_without_counting_a_send(tmp_path: Path) -> None:
    vitally = _Vitally(RetriableError("503"), None)
    _, (status, attempts), _ = _apply_task(tmp_path, vitally)
    assert vitally.tasks == []
    assert status == "pending"
    assert attempts == 0, "a failed GET of the account is counted as an attempt of the task's send"


def test_a_malformed_account_read_does_not_park_the_task(tmp_path: Path) -> None:
    vitally = _Vitally(ContractError("GET /resources/accounts/:id: not an object"), None)
    _, (status, _), report = _apply_task(tmp_path, vitally)
    assert vitally.tasks == []
    assert status == "pending", f"the task is {status} by a read of its account"
    assert [(e.record_id, e.field) for e in report.record_errors] == [(ACC, "(body)")]


def test_a_gone_account_gets_no_task(tmp_path: Path) -> None:
    """A trait write to an account the look finds gone (404) is held; so is its task."""
    vitally = _Vitally(None, None)
    _, (status, attempts), _ = _apply_task(tmp_path, vitally)
    assert vitally.tasks == [] and (status, attempts) == ("pending", 0)


def test_an_active_account_costs_one_read(tmp_path: Path) -> None:
    vitally = _Vitally(None, {"id": ACC, "churnedAt": None, "traits": {}})
    _, (status, _), _ = _apply_task(tmp_path, vitally)
    assert vitally.reads == 1 and status == "done" and len(vitally.tasks) == 1


class _Accounts(_Vitally):
    """Accounts by id: one whose GET answers a malformed body (`ContractError`), the others read;
    every PUT recorded."""

    def __init__(self, malformed: str) -> None:
        super().__init__(None, None)
        self.malformed = malformed
        self.puts: list[str] = []
        self.asked: list[str] = []

    def get_account(self, account_id: str) -> dict[str, Any] | None:
        self.asked.append(account_id)
        if account_id == self.malformed:
            raise ContractError(f"GET /resources/accounts/{account_id}: not an object")
        return {"id": account_id, "churnedAt": None, "traits": {"lifecycle_stage": "Y"}}

    def put_traits_many(self, items: Any, *, workers: int | None = None) -> Any:
        for record, traits in items:
            self.puts.append(record)
            yield record, {"id": record, "updatedAt": iso(NOW), "traits": dict(traits)}


@pytest.mark.parametrize("planned_from_mirror", [True, False], ids=["from-the-mirror", "read-by-its-event"])
def test_a_malformed_account_read_before_a_put_holds_that_account_s_writes_alone(
    tmp_path: Path, planned_from_mirror: bool
) -> None:
    """The last look before a PUT reads each account an event planned from the mirror; one answer
    is malformed. That account's trait write and its task stay pending, reported once with its id
    (as the look before a task reports it); the other account is written. The same for accounts
    the events named themselves (read by the mini-cycle, not planned from the mirror): the look
    read them, and the task waits with its account's traits. Reviews' findings: the look before a
    PUT raised the `ContractError`, and the event's mini-cycle failed as a whole; then such an
    account's task was sent while its traits waited."""
    state, run = _state(tmp_path)
    other = "acc_2"
    writes = [replace(_stage("X", expects="Y"), record=account) for account in (ACC, other)]
    with state.atomic():
        state.enqueue([*writes, _task_write()], run, iso(NOW))
    vitally = _Accounts(malformed=ACC)
    report = CycleReport(run_id=run, dry_run=False, now=NOW)
    port = cast(VitallyPort, vitally)
    from_mirror = {ACC, other} if planned_from_mirror else set()
    look = LastLook(state, port, None, report, lambda: NOW, read_account=vitally.get_account, from_mirror=from_mirror)
    applier = Applier(state, port, None, report, clock=lambda: NOW, look=look, write_workers=1, hooks=Hooks())

    applier._apply_vitally()

    assert vitally.puts == [other]
    rows = state.db.execute("SELECT record, op, status, attempts FROM outbox ORDER BY id").fetchall()
    assert rows == [
        (ACC, "set_traits", "pending", 0),
        (other, "set_traits", "done", 1),
        ("task-ext-1", "create_task", "pending", 0),
    ]
    assert [(e.record_id, e.field) for e in report.record_errors] == [(ACC, "(body)")]
    assert vitally.asked == [ACC, other], "the account was read again before its task"


def test_an_account_the_look_read_with_a_version_sqlite_cannot_store_stops_no_step(tmp_path: Path) -> None:
    """The last look finds acc_1's stage already there, and reads its `updatedAt` with a lone
    surrogate (JSON may escape one). Showing the mirror that account (as a PUT's answer is shown)
    would store text SQLite refuses: it is left to the next read, which reports it with its id and
    field. The other account is written. A review found the step failing as a whole
    (`UnicodeEncodeError`)."""
    state, run = _state(tmp_path)
    other = "acc_2"
    held = {"updatedAt": "2026-12-01T00:00:00.000Z", "traits": {"lifecycle_stage": "Y"}}
    with state.atomic():
        state.upsert_accounts(
            [{"id": a, "updated_at": held["updatedAt"], "raw": json.dumps({"id": a, **held})} for a in (ACC, other)]
        )
        state.enqueue([replace(_stage("X", expects="Y"), record=a) for a in (ACC, other)], run, iso(NOW))
    vitally = _Accounts(malformed="")
    hostile = {"id": ACC, "updatedAt": iso(NOW) + "\ud800", "churnedAt": None, "traits": {"lifecycle_stage": "X"}}
    read = vitally.get_account
    vitally.get_account = lambda account_id: hostile if account_id == ACC else read(account_id)  # type: ignore[method-assign]
    report = CycleReport(run_id=run, dry_run=False, now=NOW)
    port = cast(VitallyPort, vitally)
    look = LastLook(state, port, None, report, lambda: NOW, read_account=vitally.get_account, from_mirror={ACC, other})
    applier = Applier(state, port, None, report, clock=lambda: NOW, look=look, write_workers=1, hooks=Hooks())

    applier._apply_vitally()

    assert vitally.puts == [other]
    assert state.db.execute("SELECT record, status FROM outbox ORDER BY id").fetchall() == [
        (ACC, "done"),
        (other, "done"),
    ]
    assert (state.account_raw(ACC) or {}).get("updatedAt") == held["updatedAt"]  # the mirror: as read
