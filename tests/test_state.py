"""State: migrations, cursors that only move forward, an outbox that never duplicates."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from hypothesis import given
from hypothesis import strategies as st

from state import InstanceLockedError, PlannedWrite, StateDB, StateLock, StateUnusableError
from state.db import UNKNOWN_SYNC_KEYS_SQL
from state.migrations import MIGRATIONS
from state.writes import Owner
from sync.facts import SalesforceFacts


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


def test_an_account_trait_escaping_a_lone_surrogate_is_read_not_raised() -> None:
    """A review: `"\\ud800"` is valid JSON, which SQLite's `json_extract` gives back as no UTF-8;
    Python's sqlite3 then raised for the whole page of accounts about to be written (a person's odd
    edit of `crm_sync_written` would have stopped every cycle's writes)."""
    state = StateDB.memory()
    raws = {
        "acc_s": '{"traits": {"crm_sync_written": "odd \\ud800 text"}}',
        "acc_t": '{"traits": {"crm_sync_written": {"a": 1}}}',
        "acc_u": '{"traits": {}}',
        "acc_v": '{"traits": {"crm_sync_written": 3}}',
        "acc_w": '{"traits": {"crm_sync_written": 2.5}}',
    }
    state.upsert_accounts([{"id": i, "updated_at": "x", "raw": raw} for i, raw in raws.items()])
    expected = {"acc_s": "odd \ud800 text", "acc_t": '{"a":1}', "acc_v": 3, "acc_w": 2.5}
    assert state.account_traits(sorted(raws), "crm_sync_written") == expected
    # As the column gives them where no text is odd.
    assert state.account_traits(["acc_t", "acc_u", "acc_v", "acc_w"], "crm_sync_written") == {
        k: v for k, v in expected.items() if k != "acc_s"
    }


def test_state_cursor_only_moves_forward() -> None:
    state = StateDB.memory()
    state.set_cursor("vitally.accounts", "2026-11-20T10:00:00.000Z")
    state.set_cursor("vitally.accounts", "2026-11-19T10:00:00.000Z")
    assert state.cursor("vitally.accounts") == "2026-11-20T10:00:00.000Z"


def test_state_last_written_values_are_replaced_field_by_field_and_read_for_many_records_at_once() -> None:
    state = StateDB.memory()
    state.set_last_written("vitally", "acc_1", {"new_owner": "EU TAM", "segment": ["Leads"]}, 1, "t1")
    state.set_last_written("vitally", "acc_1", {"new_owner": "US TAM"}, 2, "t2")
    state.set_last_written("salesforce", "acc_1", {"OwnerId": "005X"}, 2, "t2")
    records = [f"acc_{i}" for i in range(1, 1202)]  # over two chunks of 500
    state.set_last_written("vitally", records[-1], {"new_owner": None}, 3, "t3")

    found, times = state.written_values_of("vitally", records)

    assert found == {"acc_1": {"new_owner": "US TAM", "segment": ["Leads"]}, "acc_1201": {"new_owner": None}}
    assert times == {"acc_1": {"new_owner": "t2", "segment": "t1"}, "acc_1201": {"new_owner": "t3"}}
    assert found["acc_1"] == state.written_values("vitally", "acc_1")
    run_ids = state.db.execute(
        "SELECT field, run_id, written_at FROM last_written WHERE record = 'acc_1' "
        "AND system = 'vitally' ORDER BY field"
    ).fetchall()
    assert run_ids == [("new_owner", 2, "t2"), ("segment", 1, "t1")]


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


def test_state_planning_a_pending_write_again_confirms_it_with_this_cycles_expectation() -> None:
    state = StateDB.memory()
    state.enqueue([write("EU TAM")], 1, "t")
    seen_now = PlannedWrite(
        **{**write("EU TAM").__dict__, "previous": {"new_owner": "x"}, "expects": {"new_owner": "x"}}
    )

    assert state.enqueue([seen_now], 2, "t") == 0  # not a second row...
    [row] = state.outbox("pending")
    assert row.write.expects == {"new_owner": "x"} and row.write.previous == {"new_owner": "x"}  # ...the newer read
    assert list(state.unconfirmed(2)) == []
    assert [r.id for r in state.unconfirmed(3)] == [row.id]  # a later plan that did not want it again


def test_state_superseded_write_keeps_the_reason_and_is_never_pending_again() -> None:
    state = StateDB.memory()
    state.enqueue([write("EU TAM")], 1, "t")
    [row] = state.outbox("pending")
    state.supersede([row.id], "a person changed new_owner since it was planned", "t")
    assert [r.last_error for r in state.outbox("superseded")] == ["a person changed new_owner since it was planned"]
    assert state.pending_count() == 0


def test_state_migration_4_keeps_pending_writes_and_their_expectation(tmp_path: Path) -> None:
    """A state written before writes carried `expects` (schema 3) is upgraded in place: its pending
    trait writes expect what they showed as `previous`, confirmed by the run that queued them."""
    path = tmp_path / "s.db"
    db = sqlite_utils.Database(sqlite3.connect(path))
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for step in MIGRATIONS[:3]:
        step(db)
    db.execute("INSERT INTO schema_version (version) VALUES (3)")
    owner, empty = '{"new_owner": "EU TAM"}', '{"new_owner": null}'
    db.table("outbox").insert(
        {
            **dict.fromkeys(("key", "target", "rule", "reason", "created_at", "updated_at"), "x"),
            **{"run_id": 7, "system": "vitally", "op": "set_traits", "record": "acc_1", "account": "acc_1"},
            **{"fields": owner, "previous": empty, "payload": owner, "status": "pending", "attempts": 1},
        }
    )
    db.conn.commit()
    db.close()

    state = StateDB.open(path)
    [row] = state.outbox("pending")
    assert row.write.expects == {"new_owner": None} and row.attempts == 1
    assert [r.id for r in state.unconfirmed(8)] == [row.id] and list(state.unconfirmed(7)) == []
    assert state.open_conflicts() == {}
    state.close()


def test_state_knows_whether_it_has_any_history() -> None:
    state = StateDB.memory()
    assert not state.has_history()
    state.set_last_written("vitally", "acc_1", {"new_owner": "EU TAM"}, 1, "t")
    assert state.has_history()


def test_marked_accounts_counts_the_trait_itself_not_its_name_elsewhere() -> None:
    """Only the trait itself is a mark: its name in a value, outside `traits`, as part of another
    trait's name, or the trait set to null is none."""
    state = StateDB.memory()
    texts = {
        "acc_1": '{"id": "acc_1", "traits": {"crm_sync_written": "{}"}}',
        "acc_2": '{"id": "acc_2", "traits": {"note": "see crm_sync_written"}}',
        "acc_3": '{"id": "acc_3", "traits": {"crm_sync_written": null}}',
        "acc_4": '{"id": "acc_4", "crm_sync_written": "{}", "traits": {}}',
        "acc_5": '{"id": "acc_5", "traits": {"crm_sync_written_before": "{}"}}',
        "acc_6": '{"id": "acc_6", "traits": {"crm_sync_written": {"new_owner": "EU TAM"}}}',
    }
    state.upsert_accounts([{"id": key, "updated_at": "t", "raw": raw} for key, raw in texts.items()])
    assert state.marked_accounts("crm_sync_written") == 2


def test_state_queries_over_the_mirror_skip_a_record_sqlite_cannot_read() -> None:
    # A record decoded with `1e400` holds a float infinity, which json.dumps writes as `Infinity`:
    # SQLite's JSON functions refuse that text ("malformed JSON"). The record parser reports the
    # record; the queries over the mirror must go on for every other one (the poison chaos test
    # failed on marked_accounts).
    state = StateDB.memory()
    marked = '{"id": "acc_1", "traits": {"crm_sync_written": "{}"}}'
    poison = '{"id": "acc_2", "traits": {"crm_sync_written": "{}", "employee_count": Infinity}}'
    state.upsert_accounts(
        [{"id": "acc_1", "updated_at": "t", "raw": marked}, {"id": "acc_2", "updated_at": "t", "raw": poison}]
    )
    lead = '{"Id": "00Q1", "Sync_Key__c": "crm-sync:lead:acc_1"}'
    bad_lead = '{"Id": "00Q2", "Sync_Key__c": "crm-sync:lead:acc_2", "AnnualRevenue": Infinity}'
    state.upsert_sf(
        [
            {"object": "Lead", "id": "00Q1", "modstamp": "t", "raw": lead},
            {"object": "Lead", "id": "00Q2", "modstamp": "t", "raw": bad_lead},
        ]
    )

    assert state.marked_accounts("crm_sync_written") == 1
    assert state.unknown_sync_keys("crm-sync:lead:") == ["crm-sync:lead:acc_1"]
    assert state.lead_by_sync_key("crm-sync:lead:acc_1") == {"Id": "00Q1", "Sync_Key__c": "crm-sync:lead:acc_1"}
    assert state.lead_by_sync_key("crm-sync:lead:acc_2") is None


def test_a_lead_whose_upsert_is_in_the_outbox_is_not_unknown_to_the_state() -> None:
    """A lead crm-sync queued (sent, then killed before the answer was recorded: no last_written
    row yet) that the next read mirrors is crm-sync's own, not a sign of a lost state. (The query
    once compared the outbox's `record` with its own `key` column, so this lead was "unknown".)"""
    state = StateDB.memory()
    run_id = state.begin_run("2026-11-22T09:00:00Z", "run", "2026-11-22T09:00:00Z")
    upsert = PlannedWrite(
        system="salesforce",
        op="upsert_lead",
        record="crm-sync:lead:acc_1",
        fields={"LastName": "Doe"},
        rule="product_led.am_referral",
        reason="AM referral",
        payload={"LastName": "Doe"},
        account="acc_1",
    )
    state.enqueue([upsert], run_id, "2026-11-22T09:00:00Z")
    rows = [
        {"object": "Lead", "id": f"00Q{i}", "modstamp": "t", "raw": json.dumps({"Id": f"00Q{i}", "Sync_Key__c": key})}
        for i, key in enumerate(["crm-sync:lead:acc_1", "crm-sync:lead:acc_2"])
    ]
    state.upsert_sf(rows)

    assert state.unknown_sync_keys("crm-sync:lead:") == ["crm-sync:lead:acc_2"]


def test_the_check_for_unknown_sync_keys_reads_the_index_not_every_leads_json() -> None:
    """Every cycle asks for leads under crm-sync's keys that the state does not know (issue #17: an
    idle cycle's CPU). SQLite answers from the index on the leads' `Sync_Key__c` (migration 11),
    whose expression the query must spell exactly as the index does; the answer is the same for a
    key that changes, a lead that leaves the mirror and one whose JSON SQLite cannot read."""
    state = StateDB.memory()
    rows = [
        {"object": "Lead", "id": f"00Q{i}", "modstamp": "t", "raw": json.dumps({"Id": f"00Q{i}", "Sync_Key__c": key})}
        for i, key in enumerate(["crm-sync:lead:acc_1", "crm-sync:lead:acc_2", "someone-else"])
    ]
    state.upsert_sf(rows)
    assert state.unknown_sync_keys("crm-sync:lead:") == ["crm-sync:lead:acc_1", "crm-sync:lead:acc_2"]
    moved = '{"Id": "00Q0", "Sync_Key__c": "crm-sync:lead:acc_9"}'
    unreadable = '{"Id": "00Q1", "Sync_Key__c": "crm-sync:lead:acc_2", "AnnualRevenue": Infinity}'
    state.upsert_sf(
        [
            {"object": "Lead", "id": "00Q0", "modstamp": "u", "raw": moved},
            {"object": "Lead", "id": "00Q1", "modstamp": "u", "raw": unreadable},
        ]
    )
    assert state.unknown_sync_keys("crm-sync:lead:") == ["crm-sync:lead:acc_9"]

    used = [row[-1] for row in state.db.execute("EXPLAIN QUERY PLAN " + UNKNOWN_SYNC_KEYS_SQL, ["crm-sync%"])]
    assert "SEARCH sf_records USING INDEX sf_records_sync_key (object=?)" in used, used


def _state_before(path: Path, migration: str) -> sqlite_utils.Database:
    """A state file at `path` at the schema just before the migration whose docstring says
    `migration` (found by its docstring, not its number: other branches add migrations too)."""
    upto = next(i for i, step in enumerate(MIGRATIONS) if migration in (step.__doc__ or ""))
    db = sqlite_utils.Database(sqlite3.connect(path))
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for step in MIGRATIONS[:upto]:
        step(db)
    db.execute("INSERT INTO schema_version (version) VALUES (?)", [upto])
    return db


def test_state_migration_of_malformed_records_keeps_what_earlier_runs_reported(tmp_path: Path) -> None:
    """A state from before malformed records were kept is upgraded in place: each record an earlier
    run reported malformed is listed once, with its latest finding and its first and last runs."""
    path = tmp_path / "s.db"
    db = _state_before(path, "Malformed records kept")
    for run, started in (
        (1, "2026-11-01T09:00:00.000Z"),
        (2, "2026-11-02T09:00:00.000Z"),
        (3, "2026-11-03T09:00:00.000Z"),
    ):
        db.table("runs").insert({"id": run, "started_at": started, "mode": "run", "status": "ok"})
    findings = [  # the latest finding not last in the table: the migration must pick it by run
        (3, "acc_bad", "traits.country", "expected text, got 5"),
        (1, "acc_bad", "traits.employee_count", "expected a number, got 'many'"),
        (2, "acc_bad", "traits.employee_count", "expected a number, got 'many'"),
        (2, "acc_odd", "mrr", "expected a number, got 'lots'"),
    ]
    for run, record, field, message in findings:
        db.table("record_errors").insert(
            {"run_id": run, "system": "vitally", "record": record, "field": field, "message": message, "seen": "x"}
        )
    db.conn.commit()
    db.close()

    state = StateDB.open(path)
    kept = {(row["record"]): row for row in state.malformed()}
    state.close()

    assert set(kept) == {"acc_bad", "acc_odd"}
    bad = kept["acc_bad"]
    assert (bad["field"], bad["message"]) == ("traits.country", "expected text, got 5")  # the latest finding
    assert (bad["first_run"], bad["last_run"]) == (1, 3)
    assert (bad["first_seen"], bad["last_seen"]) == ("2026-11-01T09:00:00.000Z", "2026-11-03T09:00:00.000Z")
    assert (kept["acc_odd"]["first_run"], kept["acc_odd"]["last_run"]) == (2, 2)


# -- the integrity check: every page unless the file is as crm-sync closed it ------------------------


def _pages_checked(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record, for each state file checked, whether every page was read (`PRAGMA quick_check`)."""
    import state.db as db_module

    seen: list[bool] = []
    verify = db_module._verify

    def spy(conn: sqlite3.Connection, path: Path, *, pages: bool = True) -> None:
        seen.append(pages)
        verify(conn, path, pages=pages)

    monkeypatch.setattr(db_module, "_verify", spy)
    return seen


def _filled(path: Path) -> None:
    state = StateDB.open(path)
    with state.atomic():
        state.upsert_accounts({"id": f"acc_{i:04}", "updated_at": "t", "raw": "{}" + " " * 400} for i in range(400))
    state.close()


def test_state_a_file_closed_cleanly_is_opened_without_reading_every_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"
    checked = _pages_checked(monkeypatch)
    _filled(path)  # created: checked in full
    mark = Path(f"{path}.closed")
    assert mark.exists() and mark.stat().st_mode & 0o777 == 0o600

    state = StateDB.open(path)
    assert not mark.exists()  # a crash from here on leaves no mark
    assert state.account_count() == 400
    state.close()
    assert mark.exists()
    assert checked == [True, False]


def test_state_a_file_left_open_or_by_a_crash_is_checked_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"
    _filled(path)
    checked = _pages_checked(monkeypatch)
    first = StateDB.open(path)
    with first.atomic():
        first.set_cursor("x", "1")
    second = StateDB.open(path)  # the first's -wal and -shm are there, as after a kill -9
    second.close()
    first.close()
    assert checked == [False, True]


def test_state_a_file_changed_after_a_clean_close_is_checked_and_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _filled(path)
    closed_at = path.stat().st_mtime_ns
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8192] = b"\xa5" * 8192  # two pages overwritten in place: same inode, same size
    with path.open("r+b") as file:
        file.write(data)
    if path.stat().st_mtime_ns == closed_at:  # within one tick of the file system's clock: let time pass
        os.utime(path, ns=(closed_at + 10**7, closed_at + 10**7))

    with pytest.raises(StateUnusableError, match="damaged"):
        StateDB.open(path)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@given(value=_JSON, text=st.text())
def test_state_reads_stored_json_values_as_json_loads_does(value: object, text: str) -> None:
    """`written_field` reads a value as `json.loads` would (a plain string through a shortcut)."""
    from state.db import _json_value

    assert _json_value(json.dumps(value)) == value
    for candidate in (text, json.dumps(text), f'"{text}"'):
        try:
            expected = json.loads(candidate)
        except ValueError:
            with pytest.raises(ValueError):
                _json_value(candidate)
        else:
            # Compared by repr: `NaN` is text json.loads reads (as nan, which equals nothing).
            assert repr(_json_value(candidate)) == repr(expected)


@given(st.text(), st.none() | st.text(), st.text())
def test_an_owners_plan_line_is_every_field_in_order(pool: str, user_id: str | None, name: str) -> None:
    """`Owner.as_json` spells out `asdict` (speed): a field added to `Owner` must be added there."""
    owner = Owner(pool=pool, user_id=user_id, name=name)
    assert owner.as_json() == asdict(owner)
    assert list(owner.as_json()) == [f.name for f in fields(Owner)]
    assert Owner.from_json(owner.as_json()) == owner


# -- the fields Salesforce facts are found by, stored with each mirrored record (migration 12) ---------

_STAMP = {"SystemModstamp": "2026-11-20T10:00:00.000+0000"}
_LINKED = {"Id": "00Q1", **_STAMP, "Vitally_Account_Id__c": "a1", "Sync_Key__c": "crm-sync:lead:a1", "Status": "Open"}
_SF_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("Lead", _LINKED),
    ("Lead", {"Id": "00Q2", **_STAMP, "Status": "Disqualified", "Company": "Zürich Größe AG"}),  # UTF-8, not ASCII
    ("Lead", {"Id": "00Q3", **_STAMP, "Vitally_Account_Id__c": 5, "Status": None, "Company": ["x"]}),  # not text
    ("Lead", {"Id": "00Q4", **_STAMP, "Vitally_Account_Id__c": "a1", "AnnualRevenue": float("inf")}),  # unreadable
    ("Account", {"Id": "001", **_STAMP, "Vitally_Account_Id__c": "a1"}),
    ("Opportunity", {"Id": "006", **_STAMP, "AccountId": "001", "StageName": "Prospecting"}),
]


def _stored_links(db: sqlite_utils.Database) -> dict[str, tuple[Any, ...]]:
    rows = db.execute("SELECT id, digest, vitally_id, account_id, status, company, sync_key FROM sf_records")
    return {str(row[0]): tuple(row[1:]) for row in rows}


def test_state_stores_each_salesforce_records_digest_and_the_fields_its_facts_are_found_by() -> None:
    """`upsert_sf` stores beside each record the BLAKE2b digest of its raw JSON (as UTF-8) and the
    fields the Salesforce facts are found by, each when it is text (issue #17: an idle cycle found
    the linked leads by parsing every lead's JSON in SQLite and digesting each linked one in Python);
    a record written again has them written again."""
    state = StateDB.memory()
    raws = {r["Id"]: json.dumps(r, ensure_ascii=False) for _, r in _SF_ROWS}
    state.upsert_sf({"object": o, "id": r["Id"], "modstamp": "t", "raw": raws[r["Id"]]} for o, r in _SF_ROWS)
    stored = _stored_links(state.db)
    for record_id, raw in raws.items():
        assert stored[record_id][0] == hashlib.blake2b(raw.encode("utf-8"), digest_size=16).digest()
    assert stored["00Q1"][1:] == ("a1", None, "Open", None, "crm-sync:lead:a1")
    assert stored["00Q2"][1:] == (None, None, "Disqualified", "Zürich Größe AG", None)
    assert stored["00Q3"][1:] == stored["00Q4"][1:] == (None,) * 5
    assert stored["001"][1:] == ("a1", None, None, None, None)
    assert stored["006"][1:] == (None, "001", None, None, None)

    moved = json.dumps({**_LINKED, "Vitally_Account_Id__c": "a9", "Status": "Unqualified"})
    state.upsert_sf([{"object": "Lead", "id": "00Q1", "modstamp": "u", "raw": moved}])
    assert _stored_links(state.db)["00Q1"] == (
        hashlib.blake2b(moved.encode(), digest_size=16).digest(),
        "a9",
        None,
        "Unqualified",
        None,
        "crm-sync:lead:a1",
    )
    state.set_last_written("salesforce", "crm-sync:lead:a1", {"OwnerId": "005X"}, 1, "2026-11-22T09:00:00Z")
    links = list(state.iter_lead_links(("Disqualified", "Unqualified")))
    # 00Q4 is not listed: SQLite cannot read its JSON, so neither can it read its Vitally account.
    assert [(row[0], row[2], row[3], row[4], row[5]) for row in links] == [
        # the owner crm-sync wrote under its Sync_Key__c; its JSON copied out: it is disqualified
        ("00Q1", "a9", "005X", None, moved.encode()),
        ("00Q2", None, None, "Zürich Größe AG", raws["00Q2"].encode()),
    ]


def test_state_migration_12_fills_the_digests_and_fields_of_the_records_already_mirrored(tmp_path: Path) -> None:
    """A state from before migration 12 is upgraded in place: each mirrored record gets the digest and
    fields a fresh write stores, so the first cycle after the upgrade finds the same facts."""
    path = tmp_path / "s.db"
    db = _state_before(path, "BLAKE2b, 16 bytes")
    rows = [
        {"object": o, "id": r["Id"], "modstamp": "t", "raw": json.dumps(r, ensure_ascii=False), "error": None}
        for o, r in _SF_ROWS
    ]
    db.table("sf_records").insert_all(rows)
    db.conn.commit()
    db.close()

    upgraded = StateDB.open(path)
    fresh = StateDB.memory()
    fresh.upsert_sf(rows)
    assert _stored_links(upgraded.db) == _stored_links(fresh.db)
    assert all(digest is not None for digest, *_ in _stored_links(upgraded.db).values())
    assert SalesforceFacts.load(upgraded, lazy=True).fingerprint("a1") == SalesforceFacts.load(fresh).fingerprint("a1")
    upgraded.close()


def test_finding_the_salesforce_facts_reads_the_index_not_the_records_rows() -> None:
    """Every cycle finds the linked leads, Salesforce Accounts and opportunities: SQLite answers from
    the index `sf_records_links` (migration 12) without reading any record's row (its JSON), but
    for the disqualified leads' JSON it copies out."""
    state = StateDB.memory()
    state.upsert_sf({"object": o, "id": r["Id"], "modstamp": "t", "raw": json.dumps(r)} for o, r in _SF_ROWS)
    executed: list[str] = []
    state.db.conn.set_trace_callback(executed.append)
    list(state.iter_lead_links(("Disqualified", "Unqualified")))
    list(state.iter_sf_links("Account"))
    state.db.conn.set_trace_callback(None)
    assert len(executed) == 2
    for sql in executed:
        plan = [row[-1] for row in state.db.execute("EXPLAIN QUERY PLAN " + sql)]
        assert any("USING INDEX sf_records_links" in step for step in plan), plan
        assert not any(step.startswith("SCAN s ") or step == "SCAN sf_records" for step in plan), plan
