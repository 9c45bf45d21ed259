"""JSON lines that are safe to print, in `core` so that the state's plan log stores each planned
write's line as `sync.output` prints it (`sync.safe` re-exports `json_line`; its module docstring
says what is escaped and why).

- `json_line(value)`: always valid JSON: a non-finite number is written as the string `"NaN"`,
  `"Infinity"` or `"-Infinity"`, and every control character (C0, DEL, C1), bidirectional
  override or isolate, zero-width character and lone surrogate as a JSON escape (`\\u202e`).
- `finite_json_line(value)`: the same line, or None when `value` holds a non-finite number (the
  line would not give the value back exactly).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["finite_json_line", "json_line"]

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


# `json.dumps(value, ensure_ascii=False, allow_nan=False, sort_keys=...)`'s text, without making an
# encoder on every call (a cold dry run prints 166,000 plan lines at 100,000 accounts).
_ENCODERS = {
    sort: json.JSONEncoder(ensure_ascii=False, allow_nan=False, sort_keys=sort).encode for sort in (False, True)
}


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
