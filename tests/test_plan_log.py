"""The plan log (`state.PlanLog`): each planned write stored once as its printed plan line plus
what else makes the write, given back exactly, and printed without being decoded again."""

from __future__ import annotations

import io
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from state import PlanLog, PlannedWrite, StateDB
from state.writes import Owner
from sync.output import render_plan
from sync.safe import json_line

# Any text, lone surrogates, controls and bidirectional overrides included (service data may
# hold them; the stored line escapes them and must still give them back).
_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | _TEXT  # NaN and infinities too
_JSON = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=6
)
_MAPS = st.dictionaries(_TEXT, _JSON, max_size=4)


@st.composite
def _writes(draw: st.DrawFn) -> PlannedWrite:
    fields = draw(_MAPS)
    previous = draw(st.none() | _MAPS)
    # The factories in sync.planned_writes pass one mapping as both (fields and payload, previous
    # and expects); a segment change or a task passes two.
    payload = fields if draw(st.booleans()) else draw(_MAPS)
    expects = previous if draw(st.booleans()) else draw(st.none() | _MAPS)
    owner = draw(st.none() | st.builds(Owner, pool=_TEXT, user_id=st.none() | _TEXT, name=_TEXT))
    return PlannedWrite(
        system=draw(st.sampled_from(["vitally", "salesforce"])),
        op=draw(_TEXT),
        record=draw(_TEXT),
        fields=fields,
        rule=draw(_TEXT),
        reason=draw(_TEXT),
        payload=payload,
        account=draw(st.none() | _TEXT),
        previous=previous,
        owner=owner,
        expects=expects,
    )


def _exact(value: Any) -> str:
    """A value's repr: equal for equal JSON values of the same types and order (NaN included)."""
    return repr(value)


@settings(max_examples=300, deadline=None)
@given(writes=st.lists(_writes(), max_size=8), batch=st.integers(1, 4))
def test_a_plan_log_gives_back_every_write_exactly_and_prints_each_as_json_line_does(
    writes: list[PlannedWrite], batch: int
) -> None:
    state = StateDB.memory()
    plan = PlanLog(state, 1, "2026-12-04T00:00:00+00:00", queue=False, batch=batch)
    for write in writes:
        plan.append(write)  # some are flushed to the temporary table, the last ones may be buffered

    assert [_exact(write) for write in plan] == [_exact(write) for write in writes]
    assert list(plan.json_lines()) == [json_line(write.as_json()) for write in writes]
    printed, expected = io.StringIO(), io.StringIO()
    render_plan(plan, "json", printed)
    render_plan(list(writes), "json", expected)  # the generic path: every write encoded
    assert printed.getvalue() == expected.getvalue()


def test_a_write_holding_nan_is_printed_as_text_and_stored_as_the_number() -> None:
    """The printed line says "NaN" (valid JSON); the write the log gives back still holds NaN."""
    state = StateDB.memory()
    plan = PlanLog(state, 1, "2026-12-04T00:00:00+00:00", queue=False, batch=1)
    write = PlannedWrite("vitally", "set_traits", "acc-1", {"mrr": math.nan}, "rule", "why", {"mrr": math.nan})
    plan.append(write)
    plan.flush()

    assert list(plan.json_lines()) == [
        '{"system": "vitally", "op": "set_traits", "record": "acc-1", '
        '"fields": {"mrr": "NaN"}, "rule": "rule", "reason": "why"}'
    ]
    (back,) = list(plan)
    assert math.isnan(back.fields["mrr"]) and math.isnan(back.payload["mrr"])


def test_a_write_whose_payload_is_its_fields_is_stored_once() -> None:
    """`rest` holds only markers when the payload is the fields and the expectation the previous
    values (nearly every write a cycle plans): the fields are in the printed line alone."""
    state = StateDB.memory()
    plan = PlanLog(state, 1, "2026-12-04T00:00:00+00:00", queue=False, batch=1)
    fields, previous = {"Segment A": True}, {"Segment A": None}
    plan.append(
        PlannedWrite("vitally", "set_traits", "acc-1", fields, "r", "why", fields, "acc-1", previous, expects=previous)
    )
    plan.flush()

    (row,) = list(plan._rows())
    assert row[1] == "[0, 0]"
    (back,) = list(plan)
    assert back.payload == fields and back.expects == previous


def test_an_equal_but_other_payload_is_stored_as_its_own() -> None:
    """Only the very mapping counts as "the same": `{"x": 1}` equals `{"x": True}` in Python, and
    a write must send the one it was planned with."""
    state = StateDB.memory()
    plan = PlanLog(state, 1, "2026-12-04T00:00:00+00:00", queue=False, batch=1)
    plan.append(
        PlannedWrite(
            "vitally",
            "set_traits",
            "acc-1",
            {"x": True},
            "r",
            "why",
            {"x": 1},
            "acc-1",
            {"x": 1.0},
            expects={"x": False},
        )
    )
    plan.flush()

    (back,) = list(plan)
    assert [_exact(back.payload), _exact(back.expects)] == ["{'x': 1}", "{'x': False}"]
    assert [_exact(back.fields), _exact(back.previous)] == ["{'x': True}", "{'x': 1.0}"]


def test_a_reader_sees_the_writes_stored_when_it_started_while_the_log_goes_on() -> None:
    """The log is read by position: reading it while a cycle still appends neither moves where the
    next write is stored nor shows a write half stored."""
    state = StateDB.memory()
    plan = PlanLog(state, 1, "2026-12-05T00:00:00+00:00", queue=False, batch=2)
    fields = [{"n\t": f"line\n{i}"} for i in range(7)]  # a tab and a line break in the data
    writes = [PlannedWrite("vitally", "set_traits", f"acc-{i}", f, "r", "why", f) for i, f in enumerate(fields)]
    for write in writes[:3]:
        plan.append(write)  # two stored, one buffered
    reader = iter(plan)
    assert next(reader) == writes[0]
    for write in writes[3:]:
        plan.append(write)
    assert list(reader) == writes[1:3]  # what was there when it started, buffered write included
    assert list(plan) == writes
    assert list(plan.json_lines()) == [json_line(write.as_json()) for write in writes]
    assert plan[5] == writes[5] and plan[-1] == writes[-1] and len(plan) == 7
