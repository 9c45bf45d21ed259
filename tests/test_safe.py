"""Printing service data safely (issue #13, item 6): shown, never obeyed."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.safe_json import json_encoder
from state import PlannedWrite
from sync.output import render_plan
from sync.safe import SafeWriter, cell, csv_cell, json_line, printable


def test_printable_escapes_what_could_act_on_a_terminal_or_hide_text() -> None:
    assert printable("a\x1b[2Jb\x07c\x9bd") == "a\\x1b[2Jb\\x07c\\x9bd"
    assert printable("Evil \u202eCorp\u200b\ud800") == "Evil \\u202eCorp\\u200b\\ud800"
    assert printable("line\nnext\ttab") == "line\\x0anext\\x09tab"
    assert printable("line\nnext\ttab", keep_lines=True) == "line\nnext\ttab"
    assert printable("Zürich 東京 😀 [bold]") == "Zürich 東京 😀 [bold]"  # ordinary text is untouched


def test_every_character_printable_escapes_is_one_python_calls_unprintable() -> None:
    """`printable` and `json_line` return text that `str.isprintable` accepts as it is, without
    scanning it with `_UNSAFE`: safe only while no character `_UNSAFE` matches is printable."""
    import sys

    from core.safe_json import _UNSAFE  # the one pattern both use (sync.safe imports it)

    matched = [chr(code) for code in range(sys.maxunicode + 1) if _UNSAFE.match(chr(code))]
    assert len(matched) > 2048 + 64  # the surrogates, C0, DEL and C1, the format characters
    assert [c for c in matched if c.isprintable()] == []
    # And the shortcut is taken for them all: each alone, and inside printable text.
    for char in matched[::7]:
        assert printable(f"ok {char} ok") != f"ok {char} ok"
        assert char not in json_line({"t": f"ok {char}"})


def test_cell_is_never_rich_markup() -> None:
    assert cell("[/bold]").plain == "[/bold]"
    assert cell("[red]x[/red]").spans == []
    assert cell(None).plain == ""


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("-5", "-5"),
        ("+1.5e3", "+1.5e3"),
        ("Acme", "Acme"),
        (None, ""),
        ("a\x1bb", "a\\x1bb"),
    ],
)
def test_csv_cell_neutralises_formulas_and_keeps_numbers(value: object, shown: str) -> None:
    assert csv_cell(value) == shown


def test_json_line_is_always_valid_json_and_keeps_the_data() -> None:
    value = {"n": float("nan"), "i": [float("inf"), -float("inf")], "t": "a\u202eb\ud800\x1b\x7f"}
    line = json_line(value)

    def refuse(name: str) -> object:
        raise AssertionError(name)

    assert json.loads(line, parse_constant=refuse) == {
        "n": "NaN",
        "i": ["Infinity", "-Infinity"],
        "t": "a\u202eb\ud800\x1b\x7f",
    }
    assert line.isascii() or all(ord(c) < 0xD800 for c in line)
    line.encode("utf-8")  # printable to any UTF-8 stream


def test_render_plan_json_with_a_nan_previous_is_valid_json() -> None:
    fields = {"new_owner": "EU CSM"}
    write = PlannedWrite("vitally", "set_traits", "acc_1", fields, "r", "why", fields, previous={"x": float("nan")})
    out = io.StringIO()
    render_plan([write], "json", out)
    assert json.loads(out.getvalue())["previous"] == {"x": "NaN"}


def test_safe_writer_keeps_lines_and_escapes_the_rest() -> None:
    out = io.StringIO()
    SafeWriter(out).write("record acc_1: \x1b]8;;http://x\x07name\n")
    assert out.getvalue() == "record acc_1: \\x1b]8;;http://x\\x07name\n"


def test_render_plan_json_writes_every_line_in_order_a_few_hundred_a_write() -> None:
    """One line per planned write, in order, each what `json_line` makes of it; written in
    batches, not one system call a line on a stream that writes through (PYTHONUNBUFFERED)."""
    plan = [
        PlannedWrite("vitally", "set_traits", f"acc_{i}", {"t": f"v{i}\u202e"}, "r", f"why {i}", {"t": f"v{i}"})
        for i in range(600)
    ]

    class Counting(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            self.writes += 1
            return super().write(text)

    out = Counting()
    render_plan(plan, "json", out)
    assert out.getvalue() == "".join(json_line(write.as_json()) + "\n" for write in plan)
    assert out.writes == 3  # 256 + 256 + 88 lines
    empty = Counting()
    render_plan([], "json", empty)
    assert (empty.getvalue(), empty.writes) == ("", 0)


# JSON values as services and rules give them, with what `json.dumps` treats specially: every
# float (NaN and the infinities), text outside ASCII (lone surrogates, escapes, emoji), ints
# beyond 64 bits, keys that are not text, tuples.
_KEYS = st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.none())
_JSON_LIKE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(_KEYS, inner, max_size=4),
    ),
    max_leaves=12,
)


def _dumped(value: object, *, ensure_ascii: bool, allow_nan: bool, sort_keys: bool) -> str | type[BaseException]:
    try:
        return json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=allow_nan, sort_keys=sort_keys)
    except (ValueError, TypeError) as error:
        return type(error)


@settings(max_examples=300, deadline=None)
@given(value=_JSON_LIKE, ensure_ascii=st.booleans(), allow_nan=st.booleans(), sort_keys=st.booleans())
def test_json_encoder_writes_what_json_dumps_writes(
    value: object, ensure_ascii: bool, allow_nan: bool, sort_keys: bool
) -> None:
    """The encoder made once (`core.safe_json.json_encoder`: the plan log's lines and the mirror's
    records) writes `json.dumps`'s very text, and refuses what it refuses with the same error."""
    encode = json_encoder(ensure_ascii=ensure_ascii, allow_nan=allow_nan, sort_keys=sort_keys)
    try:
        got: str | type[BaseException] = encode(value)
    except (ValueError, TypeError) as error:
        got = type(error)
    assert got == _dumped(value, ensure_ascii=ensure_ascii, allow_nan=allow_nan, sort_keys=sort_keys)


def test_json_encoder_refuses_what_json_cannot_hold_and_goes_on() -> None:
    encode = json_encoder(allow_nan=False)
    with pytest.raises(ValueError, match="Out of range float"):
        encode({"score": [1.0, float("nan")]})
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode({"when": object()})
    # A refusal leaves nothing behind: the next value is written as usual.
    assert encode({"score": [1.0, 2.5], "x": None}) == '{"score": [1.0, 2.5], "x": null}'
