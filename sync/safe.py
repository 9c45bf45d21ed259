"""Service data, printed safely: what a record holds is shown, never obeyed.

Names, reasons and error messages come from Vitally and Salesforce, where anyone with a login can
type them. Printed as they are, they could drive the terminal (`\\x1b[2J` clears it, an OSC 8
sequence plants a link), hide text (a right-to-left override), be taken for rich markup
(`[white on white]` hides an audit row, `[/bold]` crashed the plan table), run as a formula in a
spreadsheet (`=HYPERLINK(…)`, `+cmd|…`), or make JSON output invalid (a bare `NaN`). Issue #13.

- `printable(text)`: every control character (C0, DEL, C1), bidirectional override or isolate,
  zero-width character and lone surrogate written as a visible escape (`\\x1b`, `\\u202e`);
  `keep_lines=True` keeps line breaks and tabs (text laid out in lines of our own).
- `cell(value)` for rich tables: a `Text`, never markup, printable.
- `csv_cell(value)`: printable with its line breaks, and a cell a spreadsheet would read as a
  formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return, or their full-width
  forms) gets a leading `'`, the usual neutraliser; plain numbers (`-5`, `+1.5e3`) are left as
  they are.
- `json_line(value)`: always valid JSON: a non-finite number is written as the string `"NaN"`,
  `"Infinity"` or `"-Infinity"`, and the characters above (a lone surrogate too) as JSON escapes.
- `SafeWriter(stream)`: a text stream that writes everything through `printable(…, keep_lines=True)`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, TextIO, cast

if TYPE_CHECKING:  # rich is imported where a table is drawn: a JSON run never loads it
    from rich.text import Text

from core.safe_json import _UNSAFE, json_line

__all__ = ["SafeWriter", "cell", "csv_cell", "json_line", "printable", "safe_stream"]

_LINES = frozenset("\n\t")
_FORMULA_START = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_lines: bool = False) -> str:
    """`text` with every character that could act on a terminal or hide text made visible."""
    if text.isprintable():  # most text: none of `_UNSAFE` is printable (tests/test_safe.py)
        return text
    if not keep_lines:
        return _UNSAFE.sub(_escape, text)
    return _UNSAFE.sub(lambda m: m.group() if m.group() in _LINES else _escape(m), text)


def cell(value: object) -> Text:
    """A table cell: the value as plain, printable text (rich never reads it as markup)."""
    from rich.text import Text

    return Text(printable("" if value is None else str(value)))


def csv_cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows and never executes."""
    text = printable("" if value is None else str(value), keep_lines=True)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


class SafeWriter:
    """Wraps a text stream: everything written goes through `printable(…, keep_lines=True)`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(printable(text, keep_lines=True))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()


def safe_stream(stream: TextIO) -> TextIO:
    """`stream`, writing through `SafeWriter`."""
    return cast(TextIO, SafeWriter(stream))
