"""The sandbox's Vitally lists keep their orderings current a record at a time (`_Collection`):
whatever the sequence of changes, a list reads the order a full sort would give."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.vitally import _Collection

_IDS = st.sampled_from([f"acc_{i}" for i in range(60)])
# Canonical stamps sort as strings; a malformed one (not a string) sorts first, as its "".
_STAMPS = st.one_of(st.sampled_from([f"2026-12-0{d}T10:00:00.000Z" for d in range(1, 6)]), st.none(), st.just(7))
_FIELDS = ("updatedAt", "createdAt")

_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), _IDS, _STAMPS, _STAMPS),
        st.tuples(st.just("edit"), _IDS, st.sampled_from(_FIELDS), _STAMPS),
        st.tuples(st.just("edit_all"), _IDS, st.sampled_from(_FIELDS), _STAMPS),
        st.tuples(st.just("remove"), _IDS),
        st.tuples(st.just("list"), st.sampled_from(_FIELDS)),
    ),
    max_size=60,
)


def _full_sort(coll: _Collection, sort_by: str) -> list[tuple[str, str]]:
    return sorted((r[sort_by] if isinstance(r.get(sort_by), str) else "", r["id"]) for r in coll.by_id.values())


def _step(coll: _Collection, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "put":
        coll.put({"id": step[1], "updatedAt": step[2], "createdAt": step[3]})
    elif kind in ("edit", "edit_all") and step[1] in coll.by_id:
        coll.by_id[step[1]][step[2]] = step[3]  # changed in place, as a PUT or a Playbook does
        coll.touched(step[1] if kind == "edit" else None)
    elif kind == "remove":
        coll.remove(step[1])
    elif kind == "list":
        assert coll.ascending(step[1]) == _full_sort(coll, step[1])


@settings(max_examples=300, deadline=None)
@given(_STEPS)
def test_a_list_after_any_changes_reads_the_order_a_full_sort_gives(steps: list[tuple[Any, ...]]) -> None:
    coll = _Collection()
    # 50 records first: a few changes between two lists then move records in place (many changed
    # at once rebuild the ordering instead), and both paths are taken.
    for i in range(50):
        coll.put({"id": f"acc_{i}", "updatedAt": f"2026-12-0{1 + i % 5}T10:00:00.000Z", "createdAt": None})
    for field in _FIELDS:
        coll.ascending(field)
    for step in steps:
        _step(coll, step)
    for field in _FIELDS:
        assert coll.ascending(field) == _full_sort(coll, field)


def test_a_change_to_one_record_of_many_moves_it_without_a_new_sort() -> None:
    coll = _Collection()
    for i in range(100):
        coll.put({"id": f"acc_{i:03}", "updatedAt": f"2026-12-01T10:00:{i % 60:02}.000Z", "createdAt": "2026"})
    first = coll.ascending("updatedAt")
    coll.by_id["acc_007"]["updatedAt"] = "2026-12-05T10:00:00.000Z"
    coll.touched("acc_007")
    again = coll.ascending("updatedAt")
    assert again is first  # the same list, moved in place (a rebuild would be a new one)
    assert again[-1] == ("2026-12-05T10:00:00.000Z", "acc_007")
    assert again == _full_sort(coll, "updatedAt")
