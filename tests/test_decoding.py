"""Decoding the services' answers under limits: a poison record becomes an `Unreadable` in its
place (id, timestamp, field, what is wrong); the rest of its page decodes as usual (issue #13)."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.decoding import (
    MAX_DEPTH,
    MAX_RECORD_CHARS,
    JsonError,
    PendingRecords,
    Record,
    Unreadable,
    _standard_page,
    decode_json,
    decode_page,
    decode_page_deferred,
    decode_stored,
    json_text,
)

DEEP = "[" * 1500 + "]" * 1500  # the issue's trait: RecursionError in the standard decoder
HEAD = '{"id":"acc_p","updatedAt":"T",'


def _page(*records: str, key: str = "results") -> str:
    return '{"' + key + '":[' + ",".join(records) + '],"next":"cursor-2"}'


def _vitally(text: str | bytes) -> Any:
    return decode_page(text, records_key="results", id_key="id", stamp_key="updatedAt")


def _good(n: int) -> str:
    return json.dumps({"id": f"acc_{n}", "updatedAt": f"2026-11-2{n}T00:00:00Z", "traits": {"n": n}})


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        (HEAD + '"traits":{"ok":1,"deep":' + DEEP + "}}", "traits.deep", "levels deep"),
        (HEAD + '"mrr":1' + "0" * 5000 + "}", "mrr", "4,300 digits"),
        ('{"id":"acc_p","updatedAt":"T","traits":{"x":NaN}}', "traits.x", "NaN"),
        ('{"id":"acc_p","updatedAt":"T","traits":{"x":-Infinity}}', "traits.x", "Infinity"),
        (HEAD + '"traits":{"x":' + "[" * 40 + "]" * 40 + "}}", "traits.x", "32 levels"),
        (HEAD + '"traits":{"x":"' + "a" * MAX_RECORD_CHARS + '"}}', "traits.x", "characters"),
        ('{"id":"acc_p","updatedAt":"T","traits":{"x": tru}}', "traits.x", "not valid JSON"),
    ],
)
def test_decode_page_poison_record_is_unreadable_and_its_neighbours_decode(
    record: str, field: str, message: str
) -> None:
    page = _vitally(_page(_good(1), record, _good(2)))
    first, poison, last = page["results"]
    assert first == json.loads(_good(1)) and last == json.loads(_good(2))
    assert isinstance(poison, Unreadable)
    assert (poison.record_id, poison.stamp, poison.field) == ("acc_p", "T", field)
    assert message in poison.message
    assert page["next"] == "cursor-2"


def test_decode_page_record_at_the_depth_limit_is_kept() -> None:
    nested: Any = 1
    for _ in range(MAX_DEPTH - 2):  # the record and its traits are two levels
        nested = [nested]
    record = {"id": "acc_1", "traits": {"x": nested}}
    assert _vitally(_page(json.dumps(record)))["results"] == [record]


def test_decode_page_salesforce_records_and_bytes_that_are_not_utf8() -> None:
    body = (
        b'{"totalSize":2,"done":true,"records":[{"Id":"00Q1","Company":"\xff"},{"Id":"00Q2","SystemModstamp":"S","X":['
        + b"[" * 40
        + b"]" * 40
        + b"]}]}"
    )
    page = decode_page(body, records_key="records", id_key="Id", stamp_key="SystemModstamp")
    assert page["records"][0] == {"Id": "00Q1", "Company": "\udcff"}  # the parser reports it as invalid text
    assert page["records"][1] == Unreadable("00Q2", "S", "X", f"nested more than {MAX_DEPTH} levels deep")
    assert page["done"] is True


def test_decode_page_without_a_readable_id_still_isolates_the_record() -> None:
    page = _vitally(_page('{"traits":' + DEEP + ',"id":5}', _good(1)))
    assert page["results"][0] == Unreadable(None, None, "traits", f"nested more than {MAX_DEPTH} levels deep")
    assert page["results"][1]["id"] == "acc_1"


@pytest.mark.parametrize(
    "text",
    [
        '{"results":[{"id":"a"}',  # cut off
        '{"results":[{"id":"a"},,]}',
        '{"results":[{"id":"a"}]} trailing',
        '{"results":[{"id":"a"}],"next":' + DEEP + "}",  # outside any record
        "not json",
    ],
)
def test_decode_page_damage_outside_a_record_is_a_json_error(text: str) -> None:
    with pytest.raises(JsonError):
        _vitally(text)


def test_decode_page_whitespace_and_empty_lists() -> None:
    assert _vitally(' { "results" : [ ] , "next" : null } ') == {"results": [], "next": None}
    assert _vitally('{"results":[ {"id":"a"} ,\n {"id":"b"} ]}')["results"] == [{"id": "a"}, {"id": "b"}]
    assert _vitally("[1, 2]") == [1, 2]  # not a page: one document


def test_decode_json_one_document_within_the_limits() -> None:
    assert decode_json(b'{"id":"acc_1","traits":{"a":[1]}}') == {"id": "acc_1", "traits": {"a": [1]}}
    for text in (DEEP, "[" * 40 + "]" * 40, "[NaN]", "1" * 5000, "{} {}"):
        with pytest.raises(JsonError):
            decode_json(text)


# -- a record keeps the JSON text it was decoded from (issue #17: the mirror stores it as it came) ---


def test_decode_page_of_utf8_bytes_keeps_each_records_own_text() -> None:
    """Each record of a UTF-8 page is a `Record` whose text is its own slice of the page (spacing
    and escapes as sent) and decodes to the same dict; a poison neighbour is still an Unreadable."""
    records = ['{"id": "acc_1", "name": "Caf\\u00e9 \u00e9", "n": 1e3}', HEAD + '"x":NaN}', '{"id":"acc_2"}']
    page = _vitally(('{"results": [ ' + " ,\n ".join(records) + ' ], "next": null}').encode())
    first, poison, last = page["results"]
    assert type(first) is Record and first == {"id": "acc_1", "name": "Café é", "n": 1000.0}
    assert first.text == records[0] and json.loads(first.text) == first
    assert isinstance(poison, Unreadable) and poison.record_id == "acc_p"
    assert type(last) is Record and last.text == '{"id":"acc_2"}'
    assert json_text(first) == records[0]


@pytest.mark.parametrize(
    "data",
    [
        '{"results":[{"id":"acc_1","name":"ok"}],"next":null}',  # text: it may hold lone surrogates
        b'{"results":[{"id":"acc_1","name":"caf\xe9"}],"next":null}',  # not UTF-8: surrogates inside
    ],
)
def test_decode_page_keeps_no_text_unless_the_page_was_valid_utf8(data: str | bytes) -> None:
    (record,) = _vitally(data)["results"]
    assert type(record) is dict
    assert json.loads(json_text(record)) == {"id": "acc_1", "name": record["name"]}
    json_text(record).encode("utf-8")  # storable: json.dumps escapes a lone surrogate


def test_decode_page_keeps_no_text_for_a_record_that_is_not_an_object() -> None:
    assert _vitally(b'{"results":[[1],"a",null],"next":null}')["results"] == [[1], "a", None]


# -- the fast path (msgspec, from the bytes) answers as the standard decoder does (issue #17) --------


def _same(fast: Any, standard: Any) -> bool:
    """Equal with the same types all the way down (1 and 1.0 and True differ), the same `Record`
    texts, the same `Unreadable`s."""
    if type(fast) is not type(standard):
        return False
    if isinstance(fast, Record) and fast.text != standard.text:
        return False
    if isinstance(fast, dict):
        return list(fast) == list(standard) and all(_same(fast[k], standard[k]) for k in fast)
    if isinstance(fast, list):
        return len(fast) == len(standard) and all(_same(a, b) for a, b in zip(fast, standard, strict=True))
    if isinstance(fast, float) and fast != fast:  # NaN is not equal to itself
        return bool(standard != standard)
    return bool(fast == standard)


def _deferred(data: bytes, records_key: str = "results", id_key: str = "id", stamp_key: str = "updatedAt") -> Any:
    """`decode_page_deferred`'s page with its pending records read (in their place)."""
    page = decode_page_deferred(data, records_key=records_key, id_key=id_key, stamp_key=stamp_key)
    if isinstance(page, dict) and isinstance(page.get(records_key), PendingRecords):
        return {key: list(value) if key == records_key else value for key, value in page.items()}
    return page


def _both(data: bytes, records_key: str = "results", id_key: str = "id", stamp_key: str = "updatedAt") -> Any:
    """The fast path's page, checked against the standard path's; the deferred page too."""
    fast = decode_page(data, records_key=records_key, id_key=id_key, stamp_key=stamp_key)
    standard = _standard_page(data, records_key, id_key, stamp_key)
    assert _same(fast, standard), (fast, standard)
    deferred = _deferred(data, records_key, id_key, stamp_key)
    assert _same(deferred, standard), (deferred, standard)
    return fast


def test_decode_page_fast_path_takes_an_ordinary_page() -> None:
    """A page msgspec reads is answered without the standard decoder (it would raise here)."""
    data = _page(_good(1), _good(2)).encode()
    with mock.patch("core.decoding._standard_page", side_effect=AssertionError("standard path")):
        page = decode_page(data, records_key="results", id_key="id", stamp_key="updatedAt")
    assert [type(r) for r in page["results"]] == [Record, Record] and page["results"][0].text == _good(1)


_HOSTILE = [
    HEAD + '"traits":{"ok":1,"deep":' + DEEP + "}}",
    HEAD + '"mrr":1' + "0" * 5000 + "}",
    HEAD + '"mrr":1' + "0" * 4299 + "}",  # 4,300 digits: a Python int, by either path
    '{"id":"acc_p","updatedAt":"T","traits":{"x":NaN}}',
    '{"id":"acc_p","updatedAt":"T","traits":{"x":-Infinity}}',
    HEAD + '"mrr":1e400}',  # the standard decoder's inf (the parser then refuses it); msgspec refuses
    HEAD + '"name":"\\ud800"}',  # a lone surrogate escape: the standard decoder keeps it
    HEAD + '"traits":{"x":' + "[" * 40 + "]" * 40 + "}}",
    HEAD + '"traits":{"x":' + "[" * 29 + "]" * 29 + "}}",  # 32 levels: kept
    HEAD + '"traits":{"x":"' + "[{" * 20 + '"}}',  # brackets inside a text are no nesting
    HEAD + '"traits":{"x":"' + "a" * MAX_RECORD_CHARS + '"}}',
    HEAD + '"traits":{"x":"' + "é" * (MAX_RECORD_CHARS // 2 - 60) + '"}}',  # more bytes than characters
    '{"id":"acc_p","updatedAt":"T","traits":{"x": tru}}',
    '{"id":"acc_p","id":"acc_q","updatedAt":"T"}',  # a name twice: the last one, by either path
    "[1, 2]",
    '"text"',
    "12345678901234567890123",
    "null",
]


@pytest.mark.parametrize("record", _HOSTILE, ids=range(len(_HOSTILE)))
def test_decode_page_fast_path_answers_each_hostile_record_as_the_standard_path(record: str) -> None:
    page = _both(_page(_good(1), record, _good(2)).encode())
    assert type(page["results"][0]) is Record and page["results"][0].text == _good(1)
    assert type(page["results"][2]) is Record and page["results"][2].text == _good(2)


@pytest.mark.parametrize(
    "data",
    [
        b'{"results":[{"id":"a","name":"caf\xe9"}],"next":null}',  # not UTF-8 inside a record
        b'{"results":[{"id":"a"}],"next":"caf\xe9"}',  # not UTF-8 outside the records
        b'{"records":[{"Id":"00Q1"}],"done":true,"totalSize":1}',  # no `results`: a plain member
        b'{"results":{"id":"a"},"next":null}',  # `results` not a list
        b' { "results" : [ {"id":"a"} , {"id":"b"} ] , "next" : null } ',
        b'{"results":[],"next":null}',
        b"{}",
        b'{"results":[{"id":"a"}],"next":1e400}',
    ],
)
def test_decode_page_fast_path_answers_each_page_as_the_standard_path(data: bytes) -> None:
    _both(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"results":[{"id":"a"}',
        b'{"results":[{"id":"a"}],"next":' + DEEP.encode() + b"}",
        b'{"results":[{"id":"a"}]} trailing',
        b'{"results":[{"id":"a"}],"next":NaN}',
        b'{"results":[{"id":"a"}],"n":' + b"9" * 4301 + b"}",
        b"not json",
    ],
)
def test_decode_page_fast_path_leaves_a_damaged_page_to_the_standard_path(data: bytes) -> None:
    with pytest.raises(JsonError) as fast:
        _vitally(data)
    with pytest.raises(JsonError) as standard:
        _standard_page(data, "results", "id", "updatedAt")
    with pytest.raises(JsonError) as deferred:  # at once, not when a record is read
        decode_page_deferred(data, records_key="results", id_key="id", stamp_key="updatedAt")
    assert str(fast.value) == str(standard.value) == str(deferred.value)


def test_decode_page_deferred_decodes_each_record_when_it_is_read() -> None:
    """An ordinary page's records are split, not decoded, until read; each read gives the record
    `decode_page` gives (a `Record` with its own text, an `Unreadable` for a poison one)."""
    poison = HEAD + '"traits":{"x":' + "[" * 40 + "]" * 40 + "}}"  # msgspec splits it; too deep
    data = _page(_good(1), poison, _good(2)).encode()
    with mock.patch("core.decoding._fast_record", side_effect=AssertionError("decoded early")):
        page = decode_page_deferred(data, records_key="results", id_key="id", stamp_key="updatedAt")
    records = page["results"]
    assert isinstance(records, PendingRecords) and len(records) == 3 and page["next"] == "cursor-2"
    assert type(records[0]) is Record and records[0].text == _good(1)
    assert records[1] == Unreadable("acc_p", "T", "traits.x", "nested more than 32 levels deep")
    assert [r.text for r in records[::2]] == [_good(1), _good(2)]
    assert _same(list(records), _vitally(data)["results"])


@pytest.mark.parametrize(
    "data",
    [
        b'{"results":[{"id":"a","name":"caf\xe9"}],"next":null}',  # not UTF-8
        b'{"results":[{"id":"a"}, 5],"next":null}',  # a record that is not an object
        b'{"results":{"id":"a"},"next":null}',  # not a list
        b'{"results":[{"id":"a"}],"next":1e400}',  # another member msgspec refuses
        b'{"records":[{"Id":"00Q1"}],"done":true}',  # no records under that name
    ],
)
def test_decode_page_deferred_decodes_at_once_a_page_whose_records_could_fail(data: bytes) -> None:
    page = decode_page_deferred(data, records_key="results", id_key="id", stamp_key="updatedAt")
    assert not isinstance(page.get("results"), PendingRecords)
    assert _same(page, _standard_page(data, "results", "id", "updatedAt"))


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(records=st.lists(st.dictionaries(st.text(max_size=6), _VALUES, max_size=6), max_size=5), compact=st.booleans())
def test_decode_page_fast_path_equals_the_standard_path_on_random_pages(
    records: list[dict[str, Any]], compact: bool
) -> None:
    separators = (",", ":") if compact else (", ", ": ")
    data = json.dumps({"results": records, "next": None}, separators=separators, ensure_ascii=compact).encode()
    assert _both(data)["results"] == records


@settings(max_examples=200, deadline=None)
@given(value=_VALUES)
def test_decode_stored_equals_the_standard_decoder(value: Any) -> None:
    text = json.dumps(value)
    assert _same(decode_stored(text), json.loads(text))


@pytest.mark.parametrize("text", ['{"name":"\\ud800"}', '{"mrr":1e400}', '{"n":' + "9" * 4300 + "}"])
def test_decode_stored_reads_what_msgspec_refuses_as_the_standard_decoder(text: str) -> None:
    assert _same(decode_stored(text), json.loads(text))
