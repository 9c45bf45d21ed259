"""The SOQL subset the sandbox understands: tokenizer, recursive-descent parser, evaluator.

Accepted grammar (keywords and field names are case-insensitive)::

    query      := SELECT (COUNT '(' ')' | field (',' field)*) FROM sobject
                  [WHERE condition]
                  [ORDER BY field [ASC | DESC] [NULLS (FIRST | LAST)] (',' ...)*]
                  [LIMIT integer] [OFFSET integer]
    condition  := NOT unit
                | unit ((AND unit)* | (OR unit)*)
    unit       := '(' condition ')' | predicate
    predicate  := field ('=' | '!=' | '<>' | '<' | '<=' | '>' | '>=') literal
                | field [NOT] IN '(' literal (',' literal)* ')'
                | field LIKE string
    literal    := string | number | true | false | null
                | date | datetime | TODAY | YESTERDAY | TOMORROW
                | LAST_N_DAYS:n | NEXT_N_DAYS:n

Salesforce's rules that the sandbox enforces, because the daemon must not depend on
anything the real API would refuse or answer differently:

* AND and OR cannot be mixed at one level without parentheses, and NOT negates exactly
  one unit at the start of a condition (``a AND NOT b`` is refused; write
  ``a AND (NOT b)``).
* String comparisons (``=``, ``!=``, ``IN``, ``LIKE``, ``<``..., ORDER BY) ignore case,
  character by character; ``LIKE`` knows ``%`` and ``_``, and ``\\%``/``\\_`` (valid only
  in a LIKE pattern) stand for themselves.
* Null is a value: ``Name != 'x'`` and ``Name NOT IN (...)`` match records whose Name is
  null, ``<``/``<=``/``>``/``>=``/``LIKE`` never match a null, and boolean fields treat
  null as false (``IsConverted = null`` is ``IsConverted = false``).
* A date literal (``2026-11-22``) compares only with date values, a datetime literal only
  with datetime values; ``TODAY`` and friends are day ranges that work with both.
  Comparing a literal with a value of another type raises
  ``INVALID_QUERY_FILTER_OPERATOR`` when the first such record is met.
* ``OFFSET`` is at most 2,000 (``NUMBER_OUTSIDE_VALID_RANGE``).

Everything that ``simple_salesforce.format_soql`` 1.12.10 produces for str, int, float,
bool, None, date, datetime and lists, and with the ``:like`` spec, is accepted and means
the value it was given, except what Salesforce itself refuses: ``inf``/``nan`` floats
and the empty list ``()``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal, TypeAlias

__all__ = ["OrderBy", "Query", "SoqlError", "count", "execute", "field_names", "parse"]

# Salesforce refuses larger offsets; the daemon pages with nextRecordsUrl instead.
MAX_OFFSET = 2000


class SoqlError(Exception):
    """A query the sandbox refuses, with the Salesforce error code it answers with.

    ``position`` is the 0-based character offset in the query text of the offending
    token (or of the literal, for errors found while filtering records).
    """

    def __init__(self, message: str, position: int = 0, *, code: str = "MALFORMED_QUERY") -> None:
        self.message = message
        self.position = position
        self.code = code
        super().__init__(f"{code} at {position}: {message}")


# --------------------------------------------------------------------------- literals


@dataclass(frozen=True, slots=True)
class _String:
    value: str
    # Indexes in `value` of the % and _ that were written \% and \_ (literal in LIKE).
    escaped: frozenset[int]
    # Source offset of the first \% or \_, to refuse them outside LIKE.
    escape_pos: int | None
    pos: int


@dataclass(frozen=True, slots=True)
class _Number:
    value: int | float
    pos: int


@dataclass(frozen=True, slots=True)
class _Bool:
    value: bool
    pos: int


@dataclass(frozen=True, slots=True)
class _Null:
    pos: int


@dataclass(frozen=True, slots=True)
class _Date:
    value: date
    pos: int


@dataclass(frozen=True, slots=True)
class _DateTime:
    value: datetime  # always timezone-aware
    pos: int


@dataclass(frozen=True, slots=True)
class _RelativeDate:
    name: Literal["TODAY", "YESTERDAY", "TOMORROW", "LAST_N_DAYS", "NEXT_N_DAYS"]
    n: int
    pos: int


_Literal: TypeAlias = _String | _Number | _Bool | _Null | _Date | _DateTime | _RelativeDate

# --------------------------------------------------------------------------- where tree

_Op: TypeAlias = Literal["=", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True, slots=True)
class _Compare:
    field: str
    op: _Op
    value: _Literal


@dataclass(frozen=True, slots=True)
class _In:
    field: str
    values: tuple[_Literal, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class _Like:
    field: str
    pattern: _String


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Condition


@dataclass(frozen=True, slots=True)
class _And:
    operands: tuple[_Condition, ...]


@dataclass(frozen=True, slots=True)
class _Or:
    operands: tuple[_Condition, ...]


_Condition: TypeAlias = _Compare | _In | _Like | _Not | _And | _Or


@dataclass(frozen=True, slots=True)
class OrderBy:
    """One ORDER BY item; ``nulls_first`` is already resolved from Salesforce's default
    (nulls first for ascending, last for descending)."""

    field: str
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class Query:
    """A parsed query. ``fields`` keeps the query's spelling and is empty for COUNT();
    ``where`` is an opaque condition tree (None without WHERE)."""

    sobject: str
    fields: list[str]
    is_count: bool
    where: _Condition | None = None
    order_by: tuple[OrderBy, ...] = ()
    limit: int | None = None
    offset: int | None = None


# --------------------------------------------------------------------------- tokenizer

_TokenKind: TypeAlias = Literal["ident", "literal", "op", "(", ")", ",", "end"]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _TokenKind
    text: str
    pos: int
    literal: _Literal | None = None


_WHITESPACE = re.compile(r"\s+")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
# A trailing ":n" belongs to LAST_N_DAYS:n; dots make a relationship path.
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?::\d+)?")
_OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">")
_STRING_RUN = re.compile(r"[^'\\]+")
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_ESCAPES = {
    "'": "'",
    '"': '"',
    "\\": "\\",
    "n": "\n",
    "N": "\n",
    "r": "\r",
    "R": "\r",
    "t": "\t",
    "T": "\t",
    # The SOQL docs call \b "bell", but format_soql writes the backspace character as \b,
    # and round-tripping what the daemon sends is what matters here.
    "b": "\b",
    "B": "\b",
    "f": "\f",
    "F": "\f",
}


def _tokenize(src: str) -> Iterator[_Token]:
    """Yield tokens lazily, so that the first error in reading order is the one reported."""
    i = 0
    n = len(src)
    while True:
        m = _WHITESPACE.match(src, i)
        if m:
            i = m.end()
        if i >= n:
            yield _Token("end", "", n)
            return
        token = _token_at(src, i)
        yield token
        i = token.pos + len(token.text)


def _token_at(src: str, i: int) -> _Token:
    """The token that starts at `i` (not whitespace, not the end)."""
    ch = src[i]
    if ch == "'":
        lit, end = _read_string(src, i)
        return _Token("literal", src[lit.pos : end], lit.pos, lit)
    if ch in "(),":
        return _Token(ch, ch, i)  # type: ignore[arg-type]  # ch is one of the three
    if (m := _DATETIME.match(src, i)) is not None:
        return _Token("literal", m.group(), i, _read_datetime(m.group(), m.group(1), i))
    if (m := _DATE.match(src, i)) is not None:
        return _Token("literal", m.group(), i, _read_date(m.group(), i))
    if (m := _NUMBER.match(src, i)) is not None:
        text = m.group()
        number: int | float = int(text) if text.lstrip("+-").isdigit() else float(text)
        return _Token("literal", text, i, _Number(number, i))
    if (m := _IDENT.match(src, i)) is not None:
        return _Token("ident", m.group(), i)
    for op in _OPERATORS:
        if src.startswith(op, i):
            return _Token("op", op, i)
    raise SoqlError(f"unexpected character {ch!r}", i)


def _read_date(text: str, pos: int) -> _Date:
    try:
        return _Date(date.fromisoformat(text), pos)
    except ValueError:
        raise SoqlError(f"invalid date literal '{text}'", pos) from None


def _read_datetime(text: str, zone: str | None, pos: int) -> _DateTime:
    if zone is None:
        raise SoqlError(f"datetime literal '{text}' needs a time zone (Z or +hh:mm)", pos)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise SoqlError(f"invalid datetime literal '{text}'", pos) from None
    return _DateTime(value, pos)


def _read_string(src: str, start: int) -> tuple[_String, int]:
    """Decode the quoted string at `start`; return it and the offset after its closing quote."""
    out: list[str] = []
    length = 0
    escaped: list[int] = []
    escape_pos: int | None = None
    i = start + 1
    n = len(src)
    while True:
        m = _STRING_RUN.match(src, i)
        if m:
            out.append(m.group())
            length += m.end() - i
            i = m.end()
        if i >= n:
            raise SoqlError("unterminated string literal", start)
        if src[i] == "'":
            value = "".join(out)
            return _String(value, frozenset(escaped), escape_pos, start), i + 1
        # a backslash
        if i + 1 >= n:
            raise SoqlError("unterminated string literal", start)
        code = src[i + 1]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            length += 1
            i += 2
        elif code in "%_":
            if escape_pos is None:
                escape_pos = i
            escaped.append(length)
            out.append(code)
            length += 1
            i += 2
        elif code == "u":
            length += _read_unicode_escape(src, i, out)
            i += 6
        else:
            raise SoqlError(f"invalid escape sequence '\\{code}'", i)


def _read_unicode_escape(src: str, i: int, out: list[str]) -> int:
    """Append the character of the `\\uXXXX` escape at `i` to `out`; returns how many characters
    the string grew by (0 when the escape completes a surrogate pair already counted)."""
    hexdigits = _HEX4.match(src, i + 2)
    if hexdigits is None:
        raise SoqlError("invalid escape sequence: \\u needs four hex digits", i)
    unit = int(hexdigits.group(), 16)
    # \uD83D\uDE00 is one character (Java strings are UTF-16).
    if 0xDC00 <= unit <= 0xDFFF and out and len(out[-1]) == 1 and 0xD800 <= ord(out[-1]) <= 0xDBFF:
        high = ord(out.pop())
        out.append(chr(0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00)))
        return 0
    out.append(chr(unit))
    return 1


# --------------------------------------------------------------------------- parser

# Salesforce's reserved words: never a field or object name.
_RESERVED = frozenset(
    {
        "AND",
        "ASC",
        "DESC",
        "EXCLUDES",
        "FIRST",
        "FROM",
        "GROUP",
        "HAVING",
        "IN",
        "INCLUDES",
        "LAST",
        "LIKE",
        "LIMIT",
        "NOT",
        "NULL",
        "NULLS",
        "OR",
        "SELECT",
        "WHERE",
        "WITH",
        "TRUE",
        "FALSE",
    }
)
_RELATIVE = re.compile(r"(LAST|NEXT)_N_DAYS:(\d+)\Z")
_OTHER_DATE_LITERAL = re.compile(r"(THIS|LAST|NEXT)_[A-Z_]+(:\d+)?\Z|[A-Z_]+_N_[A-Z_]+(:\d+)?\Z")
_OP_NAMES: dict[str, _Op] = {"=": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class _Parser:
    def __init__(self, src: str) -> None:
        self._tokens = _tokenize(src)
        self._ahead: _Token | None = None

    def peek(self) -> _Token:
        if self._ahead is None:
            self._ahead = next(self._tokens)
        return self._ahead

    def take(self) -> _Token:
        tok = self.peek()
        self._ahead = None
        return tok

    @staticmethod
    def is_keyword(tok: _Token, *words: str) -> bool:
        return tok.kind == "ident" and tok.text.upper() in words

    @staticmethod
    def unexpected(tok: _Token) -> SoqlError:
        if tok.kind == "end":
            return SoqlError("unexpected end of query", tok.pos)
        return SoqlError(f"unexpected token '{tok.text}'", tok.pos)

    def expect_keyword(self, word: str) -> _Token:
        tok = self.take()
        if not self.is_keyword(tok, word):
            raise self.unexpected(tok)
        return tok

    def expect(self, kind: _TokenKind) -> _Token:
        tok = self.take()
        if tok.kind != kind:
            raise self.unexpected(tok)
        return tok

    def name(self, *, sobject: bool = False) -> str:
        """A field or object name. `Group` (the queues' object) is a name after FROM although
        GROUP is a reserved word elsewhere, as in real SOQL."""
        tok = self.take()
        reserved = tok.text.upper() in _RESERVED and not (sobject and tok.text.upper() == "GROUP")
        if tok.kind != "ident" or ":" in tok.text or reserved:
            raise self.unexpected(tok)
        if "." in tok.text:
            raise SoqlError("relationship queries are not supported", tok.pos)
        return tok.text

    def query(self) -> Query:
        self.expect_keyword("SELECT")
        fields, is_count = self.select_list()
        self.expect_keyword("FROM")
        sobject = self.name(sobject=True)

        where: _Condition | None = None
        if self.is_keyword(self.peek(), "WHERE"):
            self.take()
            where = self.condition()

        order_by = self.order_by()
        limit = offset = None
        if self.is_keyword(self.peek(), "LIMIT"):
            self.take()
            limit = self.count_literal()
        if self.is_keyword(self.peek(), "OFFSET"):
            self.take()
            pos = self.peek().pos
            offset = self.count_literal()
            if offset > MAX_OFFSET:
                raise SoqlError(f"maximum SOQL offset allowed is {MAX_OFFSET}", pos, code="NUMBER_OUTSIDE_VALID_RANGE")
        end = self.take()
        if end.kind != "end":
            raise self.unexpected(end)
        return Query(sobject, fields, is_count, where, order_by, limit, offset)

    def select_list(self) -> tuple[list[str], bool]:
        """(the fields selected, whether it is `COUNT()`): a field is selected once."""
        if self.is_keyword(self.peek(), "COUNT"):
            count_tok = self.take()
            self.expect("(")
            if self.peek().kind != ")":
                raise SoqlError("only COUNT() is supported, not COUNT(field)", count_tok.pos)
            self.take()
            return [], True
        fields: list[str] = []
        seen: set[str] = set()
        while True:
            pos = self.peek().pos
            name = self.name()
            if name.lower() in seen:
                raise SoqlError(f"duplicate field selected: {name}", pos)
            seen.add(name.lower())
            fields.append(name)
            if self.peek().kind != ",":
                return fields, False
            self.take()

    def order_by(self) -> tuple[OrderBy, ...]:
        """The `ORDER BY` items, none when the clause is absent."""
        order_by: list[OrderBy] = []
        if self.is_keyword(self.peek(), "ORDER"):
            self.take()
            self.expect_keyword("BY")
            while True:
                order_by.append(self.order_item())
                if self.peek().kind != ",":
                    break
                self.take()
        return tuple(order_by)

    def order_item(self) -> OrderBy:
        name = self.name()
        descending = False
        if self.is_keyword(self.peek(), "ASC", "DESC"):
            descending = self.take().text.upper() == "DESC"
        nulls_first = not descending
        if self.is_keyword(self.peek(), "NULLS"):
            self.take()
            tok = self.take()
            if not self.is_keyword(tok, "FIRST", "LAST"):
                raise self.unexpected(tok)
            nulls_first = tok.text.upper() == "FIRST"
        return OrderBy(name, descending, nulls_first)

    def count_literal(self) -> int:
        tok = self.take()
        lit = tok.literal
        if not isinstance(lit, _Number) or not tok.text.isdigit():
            raise SoqlError(f"expected a non-negative integer, found '{tok.text}'", tok.pos)
        return int(lit.value)

    def condition(self) -> _Condition:
        if self.is_keyword(self.peek(), "NOT"):
            # SOQL's NOT negates a single unit; anything after it at this level
            # (`NOT a AND b`) is refused by the caller as an unexpected token.
            self.take()
            return _Not(self.unit())
        first = self.unit()
        tok = self.peek()
        if not self.is_keyword(tok, "AND", "OR"):
            return first
        word = tok.text.upper()
        operands = [first]
        # Only the operator that started the chain continues it: Salesforce refuses to
        # guess precedence, so the other one is left to the caller as an unexpected token.
        while self.is_keyword(self.peek(), word):
            self.take()
            operands.append(self.unit())
        return _And(tuple(operands)) if word == "AND" else _Or(tuple(operands))

    def unit(self) -> _Condition:
        if self.peek().kind == "(":
            self.take()
            inner = self.condition()
            self.expect(")")
            return inner
        return self.predicate()

    def predicate(self) -> _Condition:
        name = self.name()
        tok = self.take()
        if tok.kind == "op":
            op = _OP_NAMES[tok.text]
            value = self.literal()
            _check_comparable(op, value)
            return _Compare(name, op, value)
        if self.is_keyword(tok, "LIKE"):
            pattern = self.literal()
            if not isinstance(pattern, _String):
                raise SoqlError("LIKE needs a quoted string pattern", pattern.pos)
            return _Like(name, pattern)
        negated = self.is_keyword(tok, "NOT")
        if negated:
            tok = self.take()
        if not self.is_keyword(tok, "IN"):
            raise self.unexpected(tok)
        self.expect("(")
        values = [self.literal()]
        while self.peek().kind == ",":
            self.take()
            values.append(self.literal())
        self.expect(")")
        for value in values:
            _check_comparable("=", value)
        return _In(name, tuple(values), negated)

    def literal(self) -> _Literal:
        tok = self.take()
        if tok.literal is not None:
            return tok.literal
        if tok.kind != "ident":
            raise self.unexpected(tok)
        word = tok.text.upper()
        constant = _word_literal(word, tok.pos)
        if constant is not None:
            return constant
        m = _RELATIVE.match(word)
        if m:
            days = int(m.group(2))
            if m.group(1) == "LAST":
                return _RelativeDate("LAST_N_DAYS", days, tok.pos)
            return _RelativeDate("NEXT_N_DAYS", days, tok.pos)
        if word in ("LAST_N_DAYS", "NEXT_N_DAYS"):
            raise SoqlError(f"{word} needs a number of days, as in {word}:7", tok.pos)
        if _OTHER_DATE_LITERAL.match(word):
            raise SoqlError(f"date literal {word} is not supported by the sandbox", tok.pos)
        raise self.unexpected(tok)


def _word_literal(word: str, pos: int) -> _Literal | None:
    """TRUE, FALSE, NULL, TODAY, YESTERDAY and TOMORROW (upper-cased `word`); None for another word."""
    if word in ("TRUE", "FALSE"):
        return _Bool(word == "TRUE", pos)
    if word == "NULL":
        return _Null(pos)
    if word == "TODAY":
        return _RelativeDate("TODAY", 0, pos)
    if word == "YESTERDAY":
        return _RelativeDate("YESTERDAY", 0, pos)
    if word == "TOMORROW":
        return _RelativeDate("TOMORROW", 0, pos)
    return None


def _check_comparable(op: _Op, value: _Literal) -> None:
    if isinstance(value, _String) and value.escape_pos is not None:
        raise SoqlError("\\% and \\_ are only valid in a LIKE pattern", value.escape_pos)
    if isinstance(value, _Null | _Bool) and op not in ("=", "!="):
        what = "null" if isinstance(value, _Null) else "a boolean"
        raise SoqlError(f"{op} cannot compare with {what}", value.pos)


def parse(soql: str) -> Query:
    """Parse one query of the supported subset, or raise SoqlError pointing at the first
    offending token."""
    return _Parser(soql).query()


def field_names(query: Query) -> set[str]:
    """Every field the query names (SELECT, WHERE, ORDER BY), in the query's spelling, so
    that the caller can answer INVALID_FIELD; case variants of one field may all appear."""
    names = set(query.fields)
    names.update(item.field for item in query.order_by)
    stack: list[_Condition] = [query.where] if query.where is not None else []
    while stack:
        cond = stack.pop()
        if isinstance(cond, _And | _Or):
            stack.extend(cond.operands)
        elif isinstance(cond, _Not):
            stack.append(cond.operand)
        else:
            names.add(cond.field)
    return names


# --------------------------------------------------------------------------- values


class _FoldTable(dict[int, str]):
    """Code point -> its one-character lowercase (itself when lowercasing would change
    the length, as for 'İ'), filled on demand for str.translate."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        low = ch.lower()
        folded = low if len(low) == 1 else ch
        self[code] = folded
        return folded


_FOLD_TABLE = _FoldTable()


def _fold(text: str) -> str:
    # Character by character, so that a LIKE pattern folds like the value it matches
    # (str.lower() alone is context-sensitive for the Greek final sigma).
    if text.isascii():
        return text.lower()
    return text.translate(_FOLD_TABLE)


def _utc_key(moment: datetime) -> str:
    """Canonical sortable text of an aware datetime: UTC, microseconds, 4-digit year."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _datetime_key(value: str) -> str | None:
    """The `_utc_key` of a stored datetime string, or None if it is not a datetime."""
    # Fast path for what the sandbox stores: 'YYYY-MM-DDTHH:MM:SS.mmm+0000' (or ...Z).
    n = len(value)
    canonical = (n == 28 and value[23:] == "+0000") or (n == 24 and value[23] == "Z")
    if canonical and value[19] == "." and value[10] == "T":
        return value[:23] + "000"
    if n < 19 or value[10] != "T":
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a stored datetime without offset is UTC
    try:
        return _utc_key(moment)
    except OverflowError:
        return None


def _is_date(value: str) -> bool:
    if len(value) != 10 or value[4] != "-" or value[7] != "-":
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        if _is_date(value):
            return "a date"
        if _datetime_key(value) is not None:
            return "a datetime"
        return "a string"
    return f"a {type(value).__name__}"


_LITERAL_KIND = {
    _String: "a string",
    _Number: "a number",
    _Bool: "a boolean",
    _Date: "a date literal",
    _DateTime: "a datetime literal",
    _RelativeDate: "a date range literal",
}


def _mismatch(field: str, value: object, literal: _Literal) -> SoqlError:
    return SoqlError(
        f"field {field} holds {_describe(value)}, which cannot be compared with "
        f"{_LITERAL_KIND.get(type(literal), 'this value')}",
        literal.pos,
        code="INVALID_QUERY_FILTER_OPERATOR",
    )


_COMPARE: dict[_Op, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_ValueTest: TypeAlias = Callable[[Any], bool]
_Comparison: TypeAlias = Callable[[Any, Any], bool]
_Record: TypeAlias = Mapping[str, Any]
_Predicate: TypeAlias = Callable[[_Record], bool]


def _value_test(field: str, op: _Op, lit: _Literal, now: datetime) -> _ValueTest:
    """Compile `value <op> literal` for one field into a test of the record's value."""
    compare = _COMPARE[op]
    # Null is a value for = and != (so `!= 'x'` matches nulls); ordering never matches it.
    if_null = op == "!="
    if isinstance(lit, _Null):
        # Salesforce booleans are never null: `= null` is `= false` on them.
        want_null = op == "="
        return lambda v: (v is None or v is False) == want_null
    if isinstance(lit, _Bool):
        return _bool_test(field, compare, lit)
    if isinstance(lit, _String):
        return _string_test(field, compare, lit, if_null)
    if isinstance(lit, _Number):
        return _number_test(field, compare, lit, if_null)
    if isinstance(lit, _Date):
        return _date_test(field, compare, lit, if_null)
    if isinstance(lit, _DateTime):
        return _datetime_test(field, compare, lit, if_null)
    return _range_test(field, op, lit, now)


def _bool_test(field: str, compare: _Comparison, lit: _Bool) -> _ValueTest:
    wanted = lit.value

    def test_bool(v: Any) -> bool:
        if v is None:
            v = False
        elif not isinstance(v, bool):
            raise _mismatch(field, v, lit)
        return compare(v, wanted)

    return test_bool


def _string_test(field: str, compare: _Comparison, lit: _String, if_null: bool) -> _ValueTest:
    key = _fold(lit.value)

    def test_string(v: Any) -> bool:
        if isinstance(v, str):
            return compare(_fold(v), key)
        if v is None:
            return if_null
        raise _mismatch(field, v, lit)

    return test_string


def _number_test(field: str, compare: _Comparison, lit: _Number, if_null: bool) -> _ValueTest:
    number = lit.value

    def test_number(v: Any) -> bool:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return compare(v, number)
        if v is None:
            return if_null
        raise _mismatch(field, v, lit)

    return test_number


def _date_test(field: str, compare: _Comparison, lit: _Date, if_null: bool) -> _ValueTest:
    day = lit.value.isoformat()

    def test_date(v: Any) -> bool:
        # ISO dates with four-digit years order like their text.
        if isinstance(v, str) and _is_date(v):
            return compare(v, day)
        if v is None:
            return if_null
        raise _mismatch(field, v, lit)

    return test_date


def _datetime_test(field: str, compare: _Comparison, lit: _DateTime, if_null: bool) -> _ValueTest:
    moment = _utc_key(lit.value)

    def test_datetime(v: Any) -> bool:
        if isinstance(v, str):
            key = _datetime_key(v)
            if key is not None:
                return compare(key, moment)
        elif v is None:
            return if_null
        raise _mismatch(field, v, lit)

    return test_datetime


def _day_range(lit: _RelativeDate, today: date) -> tuple[date, date]:
    """[first day, day after the last day) of a relative date literal."""
    one = timedelta(days=1)
    if lit.name == "TODAY":
        return today, today + one
    if lit.name == "YESTERDAY":
        return today - one, today
    if lit.name == "TOMORROW":
        return today + one, today + 2 * one
    if lit.name == "LAST_N_DAYS":
        # Salesforce counts today as well: LAST_N_DAYS:1 is yesterday and today.
        return today - lit.n * one, today + one
    return today + one, today + (lit.n + 1) * one  # NEXT_N_DAYS starts tomorrow


def _range_test(field: str, op: _Op, lit: _RelativeDate, now: datetime) -> _ValueTest:
    zone: tzinfo = now.tzinfo or UTC
    first, after = _day_range(lit, now.astimezone(zone).date())
    day_bounds = (first.isoformat(), after.isoformat())
    moment_bounds = (
        _utc_key(datetime.combine(first, time(), tzinfo=zone)),
        _utc_key(datetime.combine(after, time(), tzinfo=zone)),
    )

    def test_range(v: Any) -> bool:
        if isinstance(v, str):
            if _is_date(v):
                return _inside(op, v, day_bounds)
            key = _datetime_key(v)
            if key is not None:
                return _inside(op, key, moment_bounds)
        elif v is None:
            return op == "!="
        raise _mismatch(field, v, lit)

    return test_range


def _inside(op: _Op, key: str, bounds: tuple[str, str]) -> bool:
    """`key <op> the range [start, end)`: = is inside, != outside, < before it, <= before its
    end, > after it, >= from its start."""
    start, end = bounds
    if op == "=":
        return start <= key < end
    if op == "!=":
        return not start <= key < end
    if op == "<":
        return key < start
    if op == "<=":
        return key < end
    if op == ">":
        return key >= end
    return key >= start


def _getter(field: str) -> Callable[[_Record], Any]:
    """Read a field case-insensitively; an absent field reads as None."""
    lowered = field.lower()
    spelling = field

    def get(record: _Record) -> Any:
        nonlocal spelling
        try:
            return record[spelling]
        except KeyError:
            # Remember the record's spelling: every record of an object shares it.
            for key in record:
                if key.lower() == lowered:
                    spelling = key
                    return record[key]
            return None

    return get


def _like_test(field: str, pattern: _String) -> _ValueTest:
    parts: list[str] = []
    for i, ch in enumerate(pattern.value):
        if i in pattern.escaped or ch not in "%_":
            parts.append(re.escape(_fold(ch)))
        elif ch == "_":
            parts.append(".")
        elif not parts or parts[-1] != ".*":  # '%%' is '%', without the backtracking
            parts.append(".*")
    matcher = re.compile("".join(parts), re.DOTALL).fullmatch

    def test_like(v: Any) -> bool:
        if isinstance(v, str):
            return matcher(_fold(v)) is not None
        if v is None:
            return False
        raise _mismatch(field, v, pattern)

    return test_like


def _compile(cond: _Condition, now: datetime) -> _Predicate:
    """Turn the condition into nested closures, once per execute, not once per record."""
    if isinstance(cond, _And | _Or):
        preds = [_compile(c, now) for c in cond.operands]
        if isinstance(cond, _And):
            if len(preds) == 2:
                a, b = preds
                return lambda r: a(r) and b(r)
            return lambda r: all(p(r) for p in preds)
        if len(preds) == 2:
            a, b = preds
            return lambda r: a(r) or b(r)
        return lambda r: any(p(r) for p in preds)
    if isinstance(cond, _Not):
        inner = _compile(cond.operand, now)
        return lambda r: not inner(r)
    get = _getter(cond.field)
    if isinstance(cond, _Like):
        like = _like_test(cond.field, cond.pattern)
        return lambda r: like(get(r))
    if isinstance(cond, _Compare):
        test = _value_test(cond.field, cond.op, cond.value, now)
        return lambda r: test(get(r))
    tests = [_value_test(cond.field, "=", value, now) for value in cond.values]
    negated = cond.negated
    # A list of strings (`Id IN (...)`, 200 at a time in crm-sync's last look) is a set of folded
    # keys: one lookup for a text value instead of a fold and a comparison per listed value.
    texts = [value.value for value in cond.values if isinstance(value, _String)]
    keys = {_fold(text) for text in texts} if len(texts) == len(cond.values) else None

    def member(record: _Record) -> bool:
        v = get(record)
        if keys is not None and isinstance(v, str):
            return (_fold(v) in keys) != negated
        return any(t(v) for t in tests) != negated

    return member


def _filter(query: Query, records: Iterable[_Record], now: datetime | None) -> list[_Record]:
    if query.where is None:
        return list(records)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    keep = _compile(query.where, now)
    return [r for r in records if keep(r)]


_SortKey: TypeAlias = tuple[Any, ...]


def _sort_key(item: OrderBy) -> Callable[[_Record], _SortKey]:
    get = _getter(item.field)
    # With reverse=True the largest key comes first, so nulls that must come first
    # in a descending sort need the largest key.
    null_key: _SortKey = (0,) if item.nulls_first != item.descending else (2,)

    def key(record: _Record) -> _SortKey:
        v = get(record)
        if v is None:
            return null_key
        if isinstance(v, str):
            moment = _datetime_key(v)
            return (1, 1, moment if moment is not None else _fold(v))
        if isinstance(v, bool | int | float):
            return (1, 0, v)
        return (1, 2, str(v))

    return key


def _sort(rows: list[_Record], order_by: Sequence[OrderBy]) -> None:
    # Stable sorts from the last key to the first give the multi-key order.
    for item in reversed(order_by):
        rows.sort(key=_sort_key(item), reverse=item.descending)


def _projector(query: Query) -> Callable[[_Record], dict[str, Any]]:
    wanted = list(query.fields)
    if not any(f.lower() == "id" for f in wanted):
        wanted.insert(0, "Id")
    accessors: list[tuple[str, str]] = [(f, f.lower()) for f in wanted]
    # The record's spelling of each field, learned from the first record that has it.
    spellings: list[str | None] = [None] * len(accessors)

    def project(record: _Record) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, (name, lowered) in enumerate(accessors):
            spelling = spellings[i]
            if spelling is not None and spelling in record:
                out[spelling] = record[spelling]
                continue
            for key in record:
                if key.lower() == lowered:
                    spellings[i] = key
                    out[key] = record[key]
                    break
            else:
                out[name] = None
        return out

    return project


def execute(query: Query, records: Iterable[Mapping[str, Any]], *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Rows of `query` over `records`: filtered, sorted, offset, limited and projected.

    Each row has the selected fields (and Id, always) under the record's own spelling, or
    under the query's spelling with None when the record lacks the field. Without ORDER
    BY, rows keep the input order; ties keep it too. `now` (default: the current time,
    UTC when naive) fixes TODAY and the other day ranges, in its own time zone. A COUNT()
    query has no rows, as in Salesforce: use `count`. Raises SoqlError
    (INVALID_QUERY_FILTER_OPERATOR) if a record's value cannot be compared with a literal.
    """
    if query.is_count:
        # Still filter, so that a bad comparison fails here as it would for count().
        _filter(query, records, now)
        return []
    rows = _filter(query, records, now)
    if query.order_by:
        _sort(rows, query.order_by)
    start = query.offset or 0
    stop = None if query.limit is None else start + query.limit
    project = _projector(query)
    return [project(r) for r in rows[start:stop]]


def count(query: Query, records: Iterable[Mapping[str, Any]], *, now: datetime | None = None) -> int:
    """How many rows `query` yields over `records` (OFFSET and LIMIT applied): the
    answer to SELECT COUNT(), and the totalSize of any other query."""
    total = len(_filter(query, records, now))
    total = max(0, total - (query.offset or 0))
    return total if query.limit is None else min(total, query.limit)
