"""Decode the services' JSON answers under limits, one record at a time.

A service can send a record that the standard decoder cannot hold: nested 1,500 levels deep
(`RecursionError`), an integer of more than 4,300 digits (`ValueError`), `NaN` (not JSON). Decoded
as one document, such a record breaks the whole page it arrives in, and with it every cycle
(issue #13). Here a page of records (Vitally's `{"results": [...]}`, Salesforce's
`{"records": [...]}`) is decoded record by record, each with the C decoder
(`JSONDecoder.raw_decode` from the record's offset), and each checked against the limits:

- depth: a record nests at most `MAX_DEPTH` levels of objects and lists;
- size: a record's JSON text is at most `MAX_RECORD_CHARS` characters;
- numbers: every number is one a Python int or float holds (at most 4,300 digits), never
  `NaN` or `Infinity` (the record parsers then check the range of the fields they read).

A record that fails takes its place in the list as an `Unreadable` naming its id, its timestamp
(`updatedAt`, `SystemModstamp`) when they can be read, the field at fault and what is wrong: the
caller reports it and skips it, and the page's other records are decoded as usual. Finding that
field costs something only for the failing record: an iterative scan (no recursion, whatever the
depth) finds where the record ends and where each member starts.

Anything wrong outside the records (a page that is not JSON, a record that never ends) raises
`JsonError`, a `ValueError`: the answer as a whole cannot be understood.

A record of a page that arrived as valid UTF-8 bytes comes as a `Record`: a dict that also keeps
the JSON text it was decoded from, so that whoever stores it (the mirror, `sync.ingest`) need not
encode it again.

A page that arrives as bytes takes a fast path first (`msgspec`, C, straight from the bytes): the
page is split into its members and each record's JSON text without decoding them, then each record
is decoded on its own. msgspec accepts a subset of what the standard decoder accepts and, for what
it accepts, gives the same values (the same Python ints, however many digits up to 4,300; the same
correctly rounded floats); anything it refuses (a number out of a float's range, a lone surrogate
escape, invalid UTF-8, a record too deep or too large for the cheap checks) goes through the
standard path above, record by record or for the whole page, so every verdict, `Unreadable` and
`JsonError` is the one the standard path gives. `decode_stored` reads the text crm-sync stored
the same way.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from json.scanner import make_scanner
from typing import Any, overload

import msgspec

__all__ = [
    "MAX_DEPTH",
    "MAX_RECORD_CHARS",
    "JsonError",
    "PendingRecords",
    "Record",
    "Unreadable",
    "decode_json",
    "decode_page",
    "decode_page_deferred",
    "decode_stored",
    "json_text",
]

MAX_DEPTH = 32
"""Levels of objects and lists a record may nest (`{"traits": {"a": [1]}}` has 3)."""

MAX_RECORD_CHARS = 8_000_000
"""Characters of one record's JSON text, escapes included (Salesforce's long text fields hold 131,072
characters each, up to 12 characters of JSON apiece when escaped: several of them fit)."""

_WHITESPACE = re.compile(r"[ \t\n\r]*")
# A JSON string, escapes included (an unrolled loop: linear, with no backtracking).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STRUCTURE = re.compile(r'["\[\]{}]')
_SCALAR = re.compile(r"[^,:\[\]{}\s\"]+")
_SPACE = frozenset(" \t\n\r")


class JsonError(ValueError):
    """An answer that is not JSON, or not JSON within the limits, outside any one record."""


@dataclass(frozen=True)
class Unreadable:
    """A record of a page that could not be decoded within the limits, in the place it had.

    `record_id` and `stamp` (its `updatedAt` or `SystemModstamp`) are None when they could not be
    read either; `field` is the member at fault (`traits.deep`), or `(record)` when the record as a
    whole is.
    """

    record_id: str | None
    stamp: str | None
    field: str
    message: str


class Record(dict[str, Any]):
    """A decoded record (a JSON object) with `text`, the JSON text it was decoded from: valid JSON,
    within the limits, free of lone surrogates (it came as valid UTF-8), that decodes to this dict.
    Only `decode_page` makes them; a Record changed after decoding no longer matches its text, so
    whoever changes one makes a plain dict of it."""

    __slots__ = ("text",)
    text: str


def json_text(record: Mapping[str, Any]) -> str:
    """A record as JSON text: the text it was decoded from when it is a `Record`, else encoded."""
    return record.text if type(record) is Record else json.dumps(record)


def _no_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON number")


# `parse_constant` is only called for NaN and Infinity literals: the C decoder keeps its speed.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)
# What `raw_decode` calls, without its frame: (text, offset) -> (value, end).
_SCAN: Callable[[str, int], tuple[Any, int]] = make_scanner(_DECODER)  # type: ignore[arg-type]


def _text(data: bytes | str) -> str:
    return _utf8(data)[0]


def _utf8(data: bytes | str) -> tuple[str, bool]:
    """(the text, whether it came as valid UTF-8 bytes: then it holds no lone surrogate)."""
    if isinstance(data, str):
        return data, False
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError:
        # Not UTF-8 somewhere: the bytes at fault become lone surrogates, which the record parsers
        # report as invalid text in the field that holds them; the rest of the page is unaffected.
        return data.decode("utf-8", "surrogateescape"), False


def _skip_space(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return pos if match is None else match.end()


def _depth(value: object, limit: int) -> int:
    """How many levels of objects and lists `value` nests; stops counting past `limit`."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _within(text: str, start: int, end: int, value: object, depth: int) -> str | None:
    """What is wrong with the decoded `value` of `text[start:end]` (None: nothing). Counting the
    brackets is a C-speed scan that rules out a too deep value for nearly every record; only a
    record with that many brackets is walked."""
    if end - start > MAX_RECORD_CHARS:
        return f"{end - start:,} characters of JSON, more than {MAX_RECORD_CHARS:,}"
    if text.count("{", start, end) + text.count("[", start, end) > depth and _depth(value, depth) > depth:
        return f"nested more than {depth} levels deep"
    return None


def _decode_at(text: str, pos: int) -> tuple[Any, int]:
    """The value at `pos` and where it ends, or the decoder's error as a `JsonError`."""
    try:
        return _DECODER.raw_decode(text, pos)
    except RecursionError:
        raise JsonError(f"nested more than {MAX_DEPTH} levels deep") from None
    except JsonError:
        raise
    except ValueError as error:  # JSONDecodeError, and an integer of more than 4,300 digits
        raise JsonError(_reason(error)) from None


def _reason(error: ValueError) -> str:
    message = str(error)
    if "integer string conversion" in message:
        return "a number of more than 4,300 digits"
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON ({error.msg})"
    return message


def decode_json(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """One JSON document (an account, a write's answer) within `max_depth` levels; `JsonError`
    otherwise."""
    text = _text(data)
    start = _skip_space(text, 0)
    value, end = _decode_at(text, start)
    if _skip_space(text, end) != len(text):
        raise JsonError("not valid JSON (extra data after the document)")
    if text.count("{") + text.count("[") > max_depth and _depth(value, max_depth) > max_depth:
        raise JsonError(f"nested more than {max_depth} levels deep")
    return value


def decode_page(data: bytes | str, *, records_key: str, id_key: str, stamp_key: str) -> Any:
    """A page of records: a JSON object whose `records_key` member is a list of records. Each
    record is decoded on its own within the limits; one that is not becomes an `Unreadable` in
    its place. Every other member is decoded within `MAX_DEPTH`. Anything that is not such an
    object is decoded as one document (`decode_json`). When `data` is valid UTF-8 bytes, each
    record that is a JSON object comes as a `Record` (keeping its JSON text)."""
    if isinstance(data, bytes):
        page = _fast_page(data, records_key, id_key, stamp_key)
        if page is not None:
            return page
    return _standard_page(data, records_key, id_key, stamp_key)


def _standard_page(data: bytes | str, records_key: str, id_key: str, stamp_key: str) -> Any:
    """`decode_page` by the standard decoder alone: the reference the fast path answers as."""
    text, keep_text = _utf8(data)
    pos = _skip_space(text, 0)
    if not text.startswith("{", pos):
        return decode_json(text)
    page: dict[str, Any] = {}

    def member(key: str, start: int) -> int:
        if key == records_key and text.startswith("[", start):
            page[key], end = _records(text, start, id_key, stamp_key, keep_text)
            return end
        page[key], end = _decode_at(text, start)
        problem = _within(text, start, end, page[key], MAX_DEPTH)
        if problem is not None:
            raise JsonError(f"{key}: {problem}")
        return end

    end = _object(text, pos, member)
    if _skip_space(text, end) != len(text):
        raise JsonError("not valid JSON (extra data after the page)")
    return page


# -- the fast path: msgspec, from the bytes --------------------------------------------------------

# A page's members and a list's elements as their JSON text (`msgspec.Raw`), found without decoding them.
_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])
_ANY = msgspec.json.Decoder()
# What msgspec refuses (then the standard path decides): not JSON to it, a value out of its range
# (a number beyond a float's, an integer beyond 4,300 digits), a nesting beyond its own limit.
_REFUSED = (msgspec.DecodeError, RecursionError)
_NOT_FAST = object()  # `_fast_value`'s answer for a value the standard path must decide


def _fast_page(data: bytes, records_key: str, id_key: str, stamp_key: str) -> dict[str, Any] | None:
    """`decode_page`'s answer for a page msgspec reads, else None (the standard path decides)."""
    try:
        members = _MEMBERS.decode(data)
    except _REFUSED:
        return None
    page: dict[str, Any] = {}
    for key, raw in members.items():
        member = bytes(raw)
        if key == records_key and member.startswith(b"["):
            try:
                elements = _ELEMENTS.decode(member)
            except _REFUSED:
                return None
            try:
                page[key] = [_fast_record(bytes(element), id_key, stamp_key) for element in elements]
            except UnicodeDecodeError:
                return None  # not UTF-8 (msgspec skips a member without checking): no Records here
            continue
        value = _fast_value(member)
        if value is _NOT_FAST:
            return None  # the standard path raises the `JsonError` or decodes what msgspec would not
        page[key] = value
    return page


def _fast_value(member: bytes) -> Any:
    """The value of `member` when msgspec decodes it and it passes the cheap checks (size and
    brackets, as `_element` makes them), else `_NOT_FAST`."""
    if len(member) > MAX_RECORD_CHARS or member.count(b"{") + member.count(b"[") > MAX_DEPTH:
        return _NOT_FAST  # a byte count above the character limit may still be within it: decide there
    try:
        return _ANY.decode(member)
    except _REFUSED:
        return _NOT_FAST


def _fast_record(element: bytes, id_key: str, stamp_key: str) -> Any:
    """One record of a page read by msgspec: the value (a `Record` when it is an object) or its
    `Unreadable`, as `_records` would give it."""
    text = element.decode("utf-8")  # UnicodeDecodeError: the caller turns to the standard path
    value = _fast_value(element)
    if value is _NOT_FAST:
        value, _ = _record(text, 0, id_key, stamp_key)
    if type(value) is dict:
        record = Record(value)
        record.text = text
        return record
    return value


class PendingRecords(Sequence[Any]):
    """The records of a page read by `decode_page_deferred`, decoded when they are read (each
    once, as `_fast_record`: a `Record`, or the `Unreadable` the standard path gives). The page
    was checked as it arrived: valid UTF-8, msgspec splits it, every record is a JSON object; so
    reading a record never raises, and each is the value `decode_page` gives in its place."""

    __slots__ = ("_elements", "_id_key", "_stamp_key")

    def __init__(self, elements: list[msgspec.Raw], id_key: str, stamp_key: str) -> None:
        self._elements = elements
        self._id_key = id_key
        self._stamp_key = stamp_key

    def __len__(self) -> int:
        return len(self._elements)

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._record(element) for element in self._elements[index]]
        return self._record(self._elements[index])

    def __iter__(self) -> Iterator[Any]:
        for element in self._elements:
            yield self._record(element)

    def _record(self, element: msgspec.Raw) -> Any:
        return _fast_record(bytes(element), self._id_key, self._stamp_key)


def decode_page_deferred(data: bytes, *, records_key: str, id_key: str, stamp_key: str) -> Any:
    """`decode_page`'s answer with the records left to decode as they are read (`PendingRecords`),
    for a page whose records can only decode to `Record`s or `Unreadable`s: valid UTF-8, split by
    msgspec, its records member a list of JSON objects, every other member within the limits.
    Any other page is decoded at once by `decode_page` (the same values, or the same `JsonError`).
    A page of a full read, whose next cursor is wanted before its records are decoded."""
    try:
        data.decode("utf-8")
        members = _MEMBERS.decode(data)
        records = members.get(records_key)
        elements = None if records is None else _ELEMENTS.decode(records)
    except (UnicodeDecodeError, *_REFUSED):
        elements = None
    if elements is None or not all(bytes(element).startswith(b"{") for element in elements):
        return decode_page(data, records_key=records_key, id_key=id_key, stamp_key=stamp_key)
    page: dict[str, Any] = {}
    for key, raw in members.items():
        if key == records_key:
            page[key] = PendingRecords(elements, id_key, stamp_key)
            continue
        value = _fast_value(bytes(raw))
        if value is _NOT_FAST:
            return decode_page(data, records_key=records_key, id_key=id_key, stamp_key=stamp_key)
        page[key] = value
    return page


def decode_stored(text: str) -> Any:
    """JSON text crm-sync stored itself (a mirrored record: a `Record`'s text or what `json.dumps`
    wrote; a planned write's line), decoded: by msgspec when it can, else by the standard decoder
    (a lone surrogate escape, `NaN`, a number beyond a float's range), with the same value either
    way. No limits are checked: the text was within them when it was stored."""
    try:
        return _ANY.decode(text)
    except _REFUSED:
        return json.loads(text)


def _object(text: str, pos: int, member: Callable[[str, int], int]) -> int:
    """Walk the members of the object at `pos`: `member(key, value_start)` decodes or skips each
    value and returns where it ends. Returns where the object ends."""
    pos = _skip_space(text, pos + 1)
    if text.startswith("}", pos):
        return pos + 1
    while True:
        key, pos = _key(text, pos)
        if not text.startswith(":", pos):
            raise JsonError("not valid JSON (expected ':')")
        pos = _skip_space(text, member(key, _skip_space(text, pos + 1)))
        if text.startswith(",", pos):
            pos = _skip_space(text, pos + 1)
        elif text.startswith("}", pos):
            return pos + 1
        else:
            raise JsonError("not valid JSON (expected ',' or '}')")


def _key(text: str, pos: int) -> tuple[str, int]:
    match = _STRING.match(text, pos)
    if match is None:
        raise JsonError("not valid JSON (expected a member name)")
    try:
        key = json.loads(match.group())
    except ValueError:
        raise JsonError("not valid JSON (a member name)") from None
    return str(key), _skip_space(text, match.end())


def _records(text: str, pos: int, id_key: str, stamp_key: str, keep_text: bool = False) -> tuple[list[Any], int]:
    """The list at `pos`, each element decoded on its own, and where it ends. The loop is the hot
    path of a cold read (100,000 records): the C scanner is called directly, the separators are
    read without a regex when the service writes compact JSON, and only a record that fails a
    check goes through `_record`. With `keep_text`, a record that is an object comes as a `Record`."""
    records: list[Any] = []
    pos = _skip_space(text, pos + 1)
    if text.startswith("]", pos):
        return records, pos + 1
    while True:
        record, end = _element(text, pos, id_key, stamp_key)
        if keep_text and type(record) is dict:
            record = Record(record)
            record.text = text[pos:end]
        records.append(record)
        separator = text[end : end + 1]
        if separator not in (",", "]"):
            end = _skip_space(text, end)
            separator = text[end : end + 1]
        if separator == "]":
            return records, end + 1
        if separator != ",":
            raise JsonError("not valid JSON (expected ',' or ']')")
        pos = end + 1
        if text[pos : pos + 1] in _SPACE:
            pos = _skip_space(text, pos)


def _element(text: str, pos: int, id_key: str, stamp_key: str) -> tuple[Any, int]:
    """The record at `pos` and where it ends: the C scanner's value when it passes the cheap
    checks, else `_record`'s verdict."""
    try:
        record, end = _SCAN(text, pos)
    except (StopIteration, ValueError, RecursionError):
        return _record(text, pos, id_key, stamp_key)
    if end - pos > MAX_RECORD_CHARS or text.count("{", pos, end) + text.count("[", pos, end) > MAX_DEPTH:
        return _record(text, pos, id_key, stamp_key)
    return record, end


def _record(text: str, start: int, id_key: str, stamp_key: str) -> tuple[Any, int]:
    """The record at `start`, decoded and checked (or its `Unreadable`), and where it ends."""
    try:
        value, end = _decode_at(text, start)
    except JsonError as error:
        end = _skip(text, start)
        return _unreadable(text, start, str(error), id_key, stamp_key), end
    problem = _within(text, start, end, value, MAX_DEPTH)
    if problem is None:
        return value, end
    return _unreadable(text, start, problem, id_key, stamp_key), end


def _skip(text: str, pos: int) -> int:
    """Where the value at `pos` ends, found without decoding it: strings are skipped whole and
    brackets counted, iteratively (any depth). `JsonError` when it never ends."""
    if text.startswith('"', pos):
        match = _STRING.match(text, pos)
        if match is None:
            raise JsonError("not valid JSON (a text that never ends)")
        return match.end()
    if not text.startswith(("{", "["), pos):
        scalar = _SCALAR.match(text, pos)
        if scalar is None:
            raise JsonError("not valid JSON (expected a value)")
        return scalar.end()
    depth = 0
    while True:
        found = _STRUCTURE.search(text, pos)
        if found is None:
            raise JsonError("not valid JSON (a record that never ends)")
        pos = found.start()
        if found.group() == '"':
            pos = _skip(text, pos)
            continue
        depth += 1 if found.group() in "[{" else -1
        pos += 1
        if depth == 0:
            return pos


# -- naming what is wrong with an unreadable record (only ever runs for one) ------------------------


def _unreadable(text: str, start: int, message: str, id_key: str, stamp_key: str) -> Unreadable:
    spans = _spans(text, start)
    field = _culprit(text, spans, MAX_DEPTH - 1) or _largest(text, spans) or "(record)"
    return Unreadable(_plain_text(text, spans.get(id_key)), _plain_text(text, spans.get(stamp_key)), field, message)


def _spans(text: str, start: int) -> dict[str, tuple[int, int]]:
    """Member name → where its value starts and ends, for the object at `start` (as far as it can
    be read; {} for anything else)."""
    spans: dict[str, tuple[int, int]] = {}
    if not text.startswith("{", start):
        return spans

    def member(key: str, value_start: int) -> int:
        end = _skip(text, value_start)
        spans[key] = (value_start, end)
        return end

    with contextlib.suppress(JsonError):  # keep the members read before the fault
        _object(text, start, member)
    return spans


def _fails(text: str, start: int, end: int, depth: int) -> bool:
    try:
        value, _ = _decode_at(text, start)
    except JsonError:
        return True
    return _within(text, start, end, value, depth) is not None


def _culprit(text: str, spans: dict[str, tuple[int, int]], depth: int, levels: int = 2) -> str | None:
    """The first member that fails on its own (within `depth`), as `key` or `key.inner`."""
    for key, (start, end) in spans.items():
        if not _fails(text, start, end, depth):
            continue
        inner = _culprit(text, _spans(text, start), depth - 1, levels - 1) if levels > 1 else None
        return key if inner is None else f"{key}.{inner}"
    return None


def _largest(text: str, spans: dict[str, tuple[int, int]], levels: int = 2) -> str | None:
    """The largest member (`key.inner` within an object): where a record too large is large."""
    if not spans:
        return None
    key = max(spans, key=lambda name: spans[name][1] - spans[name][0])
    inner = _largest(text, _spans(text, spans[key][0]), levels - 1) if levels > 1 else None
    return key if inner is None else f"{key}.{inner}"


def _plain_text(text: str, span: tuple[int, int] | None) -> str | None:
    """A member's value when it is a JSON string, else None."""
    if span is None or not text.startswith('"', span[0]):
        return None
    try:
        value = json.loads(text[span[0] : span[1]])
    except ValueError:
        return None
    return value if isinstance(value, str) else None
