"""JSON lines that are safe to print, in `core` so that the state's plan log stores each planned
write's line as `sync.output` prints it (`sync.safe` re-exports `json_line`; its module docstring
says what is escaped and why).

- `json_line(value)`: always valid JSON: a non-finite number is written as the string `"NaN"`,
  `"Infinity"` or `"-Infinity"`, and every control character (C0, DEL, C1), bidirectional
  override or isolate, zero-width character and lone surrogate as a JSON escape (`\\u202e`).
- `finite_json_line(value)`: the same line, or None when `value` holds a non-finite number (the
  line would not give the value back exactly).
- `json_encoder(...)`: `json.dumps(value, ...)`'s text, from an encoder made once (the module's own
  lines, and the state's stored records, are encoded by it).
"""

from __future__ import annotations

import json
import json.encoder
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["finite_json_line", "json_encoder", "json_line"]

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]"
)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def json_encoder(*, ensure_ascii: bool = True, allow_nan: bool = True, sort_keys: bool = False) -> Callable[[Any], str]:
    """`json.dumps(value, ensure_ascii=..., allow_nan=..., sort_keys=..., check_circular=False)`: the
    same text (or the same ValueError for a non-finite number when `allow_nan` is false, the same
    TypeError for what JSON cannot hold), for values that are trees (no container inside itself:
    what is decoded from JSON, or built from it).

    `JSONEncoder.encode` makes its C encoder (`json.encoder.c_make_encoder`, with the
    separators, the string escaper and the options) again on every call; this one is made once
    and called directly: 2.7 against 5.1 µs for a plan line of ~330 bytes (a cold dry run stores
    166,000 of them at 100,000 accounts). Where CPython has no C encoder, `JSONEncoder.encode`."""
    encoder = json.JSONEncoder(
        ensure_ascii=ensure_ascii, allow_nan=allow_nan, sort_keys=sort_keys, check_circular=False
    )
    # `_json.make_encoder`, which typeshed does not declare.
    make: Callable[..., Callable[[Any, int], list[str]]] | None = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always builds the _json accelerator
        return encoder.encode
    strings = json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    # The arguments `JSONEncoder.iterencode` gives it: no markers (check_circular=False), no
    # indent, its separators (", " and ": "), no skipkeys.
    iterencode = make(None, encoder.default, strings, None, ": ", ", ", sort_keys, False, allow_nan)

    def encode(value: Any) -> str:
        return "".join(iterencode(value, 0))

    return encode


# `json.dumps(value, ensure_ascii=False, allow_nan=False, sort_keys=...)`'s text (a cold dry run
# prints 166,000 plan lines at 100,000 accounts).
_ENCODERS = {sort: json_encoder(ensure_ascii=False, allow_nan=False, sort_keys=sort) for sort in (False, True)}


def json_line(value: Any, *, sort_keys: bool = False) -> str:
    """`value` as one line of valid JSON (see the module docstring), without the line break. The
    characters `sync.safe.printable` escapes are written as JSON escapes (`\\u202e`): the data
    stays exact, and the line is safe to print."""
    encode = _ENCODERS[sort_keys]
    try:
        text = encode(value)
    except ValueError:  # NaN or Infinity somewhere
        text = encode(_finite(value))
    return _escaped(text)


def finite_json_line(value: Any) -> str | None:
    """`json_line(value)` when every number in `value` is finite (decoding the line gives `value`
    back), else None."""
    try:
        return _escaped(_ENCODERS[False](value))
    except ValueError:  # NaN or Infinity somewhere
        return None


def _escaped(text: str) -> str:
    if text.isprintable():
        # Nearly every line: `str.isprintable` (C, twice as fast as the pattern's scan) is false
        # for every character `_UNSAFE` matches (tests/test_safe.py checks each code point).
        return text
    # Outside strings JSON holds only ASCII structure: every match is inside a string.
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
