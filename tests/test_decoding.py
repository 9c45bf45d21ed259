"""Decoding the services' answers under limits: a poison record becomes an `Unreadable` in its
place (id, timestamp, field, what is wrong); the rest of its page decodes as usual (issue #13)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.decoding import (
    MAX_DEPTH,
    MAX_RECORD_CHARS,
    JsonError,
    Record,
    Unreadable,
    decode_json,
    decode_page,
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
