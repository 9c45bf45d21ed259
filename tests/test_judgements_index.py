"""Which accounts an incremental cycle judges, found through indexes (state migration 18).

`StateDB.accounts_to_judge` and `StateDB.accounts_holding` answer from the indexes of the stored
judgements and a count of the malformed accounts, not by evaluating every judgement: these tests
hold them to the definition (`sync.incremental`), computed here in Python from the tables' plain
rows, over random sequences of mirror writes, judgements, pending writes and clock moves."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_state import _state_before

from state import PlannedWrite, StateDB
from state.migrations import MIGRATIONS

IDS = [f"acc_{i}" for i in range(8)]
RULES = ["r1", "r2"]
MANAGERS = [None, "", "tam1@example.com", "tam2@example.com"]

_ACCOUNT = st.tuples(st.just("account"), st.sampled_from(IDS), st.booleans(), st.integers(0, 3))
_REMOVE = st.tuples(st.just("remove"), st.sampled_from(IDS))
_JUDGE = st.tuples(
    st.just("judge"),
    st.sampled_from(IDS),
    st.sampled_from(RULES),
    st.integers(0, 6),
    st.integers(0, 6),
    st.sampled_from(MANAGERS),
    st.sampled_from(["", "f1", "f2"]),
)
_FORGET = st.tuples(st.just("forget"), st.sampled_from(IDS))
_PENDING = st.tuples(st.just("pending"), st.sampled_from(IDS))
_DONE = st.tuples(st.just("done"))
STEPS = st.lists(st.one_of(_ACCOUNT, _REMOVE, _JUDGE, _FORGET, _PENDING, _DONE), max_size=30)


def _apply(state: StateDB, step: tuple[Any, ...], serial: list[int]) -> None:
    kind = step[0]
    if kind == "account":
        _, record_id, malformed, version = step
        error = '{"field": "name", "message": "not text"}' if malformed else None
        state.upsert_accounts(
            [{"id": record_id, "updated_at": f"v{version}", "raw": f'{{"v": {version}}}', "error": error}]
        )
    elif kind == "remove":
        state.remove_accounts([str(step[1])], "deleted in Vitally", "2026-12-06T00:00:00Z")
    elif kind == "judge":
        _, record_id, rules, start, length, manager, facts = step
        # As a cycle stores them: only for an account the mirror holds, well-formed (`sync.incremental.Book`).
        if state.db.execute("SELECT 1 FROM accounts WHERE id = ? AND coalesce(error, '') = ''", [record_id]).fetchone():
            state.save_account_inputs(
                [(str(record_id), str(facts), str(rules), float(start), float(start + length), manager)]
            )
    elif kind == "forget":
        state.forget_account_inputs([str(step[1])])
    elif kind == "pending":
        serial[0] += 1
        write = PlannedWrite(
            "vitally",
            "update_traits",
            str(step[1]),
            {"x": serial[0]},
            "r",
            "why",
            {"x": serial[0]},
            account=str(step[1]),
        )
        state.enqueue([write], 1, "2026-12-06T00:00:00Z")
    else:
        rows = [row for (row,) in state.db.execute("SELECT id FROM outbox WHERE status = 'pending'")]
        state.mark_done(rows, "2026-12-06T00:00:00Z")


def _expected(state: StateDB, rules: str, at: float, changed: set[str]) -> tuple[list[str], int, Counter[str]]:
    """The definition, from the tables' rows: an account is judged unless it is well-formed and its
    stored judgement was made under `rules`, `at` is inside its window, no write of it is pending and
    its facts did not change; the holding ones' managers are counted."""
    pending = {a for (a,) in state.db.execute("SELECT account FROM outbox WHERE status = 'pending'") if a}
    inputs = {
        row[0]: row[1:]
        for row in state.db.execute("SELECT id, rules, valid_from, valid_until, manager FROM account_inputs")
    }
    judge: list[str] = []
    holding = 0
    managers: Counter[str] = Counter()
    for record_id, error in state.db.execute("SELECT id, error FROM accounts ORDER BY rowid"):
        if error:
            continue
        stored = inputs.get(record_id)
        holds = (
            stored is not None
            and stored[0] == rules
            and stored[1] <= at < stored[2]
            and record_id not in pending
            and record_id not in changed
        )
        if not holds:
            judge.append(record_id)
            continue
        holding += 1
        if stored and stored[3]:
            managers[stored[3]] += 1
    return judge, holding, managers


@settings(max_examples=300, deadline=None)
@given(
    steps=STEPS,
    rules=st.sampled_from(RULES),
    at=st.integers(-1, 12).map(float),
    changed=st.sets(st.sampled_from([*IDS, "not_mirrored"]), max_size=3),
)
def test_the_accounts_to_judge_and_those_holding_are_the_definitions(
    steps: list[tuple[Any, ...]], rules: str, at: float, changed: set[str]
) -> None:
    state = StateDB.memory()
    serial = [0]
    for step in steps:
        _apply(state, step, serial)
    judge, holding, managers = _expected(state, rules, at, changed)
    assert [row[0] for row in state.accounts_to_judge(rules, at, sorted(changed))] == judge
    assert state.accounts_holding(rules, at, sorted(changed)) == (holding, managers)
    state.close()


def test_an_idle_book_is_found_without_scanning_the_judgements_or_the_accounts() -> None:
    """Every account judged and holding (an idle cycle): the queries search index ranges only."""
    state = StateDB.memory()
    state.upsert_accounts({"id": i, "updated_at": "t", "raw": "{}"} for i in IDS)
    state.upsert_accounts([{"id": "acc_bad", "updated_at": "t", "raw": "{", "error": "not JSON"}])
    state.save_account_inputs((i, "", "r1", 0.0, 10.0, "tam1@example.com") for i in IDS)
    executed: list[str] = []
    state.db.conn.set_trace_callback(executed.append)
    assert list(state.accounts_to_judge("r1", 5.0, [])) == []
    assert state.accounts_holding("r1", 5.0, []) == (len(IDS), Counter({"tam1@example.com": len(IDS)}))
    state.db.conn.set_trace_callback(None)
    scans = []
    for sql in executed:
        if sql.lstrip().upper().startswith("SELECT") and ("account_inputs" in sql or "accounts" in sql):
            scans += [row[-1] for row in state.db.execute("EXPLAIN QUERY PLAN " + sql) if row[-1].startswith("SCAN")]
    # Counting an index is a scan SQLite makes without reading a row (and the three counts are of
    # indexes); nothing else is scanned but the temporary table of changed facts.
    allowed = ("COVERING INDEX", "temp.facts_changed", "accounts USING INDEX accounts_malformed")
    assert all(any(part in scan for part in allowed) for scan in scans), scans
    state.close()


def test_state_migration_18_drops_judgements_without_a_well_formed_account(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = _state_before(path, "found through indexes")
    db.execute("INSERT INTO accounts (id, updated_at, raw, error) VALUES ('acc_1', 't', '{}', NULL)")
    db.execute("INSERT INTO accounts (id, updated_at, raw, error) VALUES ('acc_2', 't', '{', 'not JSON')")
    for record_id in ("acc_1", "acc_2", "acc_gone"):
        db.execute("INSERT INTO account_inputs VALUES (?, '', 'r1', 0, 10, NULL)", [record_id])
    db.conn.commit()
    db.conn.close()
    state = StateDB.open(path)
    assert [row[0] for row in state.db.execute("SELECT id FROM account_inputs")] == ["acc_1"]
    assert state.accounts_holding("r1", 5.0, []) == (1, Counter())
    assert list(state.accounts_to_judge("r1", 5.0, [])) == []
    state.close()
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]
