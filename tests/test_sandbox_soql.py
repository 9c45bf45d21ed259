"""The sandbox's SOQL subset behaves like Salesforce for everything the daemon sends."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simple_salesforce.format import format_soql

from sandbox.soql import OrderBy, Query, SoqlError, count, execute, field_names, parse

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

RECORDS: list[dict[str, Any]] = [
    {
        "Id": "a",
        "Name": "Acme",
        "Score": 10,
        "Rate": 1.5,
        "IsConverted": True,
        "CloseDate": "2026-11-22",
        "SystemModstamp": "2026-11-22T10:00:00.000+0000",
    },
    {
        "Id": "b",
        "Name": "acme labs",
        "Score": 5,
        "Rate": None,
        "IsConverted": False,
        "CloseDate": "2026-11-21",
        "SystemModstamp": "2026-11-22T09:59:59.000+0000",
    },
    {
        "Id": "c",
        "Name": "Beta_Co",
        "Score": None,
        "Rate": 0.5,
        "IsConverted": None,
        "CloseDate": None,
        # 09:30 UTC, stored with another offset
        "SystemModstamp": "2026-11-22T11:30:00.000+0200",
    },
    {
        "Id": "d",
        "Name": None,
        "Score": 0,
        "Rate": -2.5,
        "IsConverted": False,
        "CloseDate": "2026-11-15",
        "SystemModstamp": "2026-11-15T00:00:00.000+0000",
    },
    {
        "Id": "e",
        "Name": "50% Off",
        "Score": 7,
        "Rate": 2.0,
        "IsConverted": True,
        "CloseDate": "2026-11-23",
        "SystemModstamp": "2026-11-23T00:00:00.000+0000",
    },
    {
        "Id": "f",
        "Name": "O'Brien\\Sons\n",
        "Score": -3,
        "Rate": 1.5,
        "IsConverted": False,
        "CloseDate": "2026-10-01",
        "SystemModstamp": None,
    },
]


def ids(soql: str, records: Sequence[Mapping[str, Any]] = RECORDS, *, now: datetime | None = NOW) -> list[str]:
    return [row["Id"] for row in execute(parse(soql), records, now=now)]


def where(condition: str, *, now: datetime | None = NOW) -> list[str]:
    return ids("SELECT Id FROM Lead WHERE " + condition, now=now)


def same_ignoring_case(a: str, b: str) -> bool:
    """Salesforce's case-insensitivity, as specified for the sandbox: per character,
    each character compared by its one-character lowercase."""

    def fold(s: str) -> str:
        return "".join(c.lower() if len(c.lower()) == 1 else c for c in s)

    return fold(a) == fold(b)


# --------------------------------------------------------------------------- parsing


def test_parse_reads_every_clause_case_insensitively() -> None:
    query = parse("select id, NAME\n\tfrom lead where Score = 1 order by name desc nulls first, id limit 10 offset 5")
    assert query.sobject == "lead"
    assert query.fields == ["id", "NAME"]
    assert not query.is_count
    assert query.order_by == (OrderBy("name", True, True), OrderBy("id", False, True))
    assert (query.limit, query.offset) == (10, 5)
    assert query.where is not None


def test_parse_count_query() -> None:
    query = parse("SELECT COUNT() FROM Lead WHERE Name != null")
    assert query == Query("Lead", [], True, query.where)
    assert query.is_count and query.fields == []


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("ORDER BY Name", OrderBy("Name", False, True)),
        ("ORDER BY Name ASC", OrderBy("Name", False, True)),
        ("ORDER BY Name DESC", OrderBy("Name", True, False)),
        ("ORDER BY Name ASC NULLS LAST", OrderBy("Name", False, False)),
        ("ORDER BY Name DESC NULLS FIRST", OrderBy("Name", True, True)),
    ],
)
def test_parse_order_by_defaults_nulls_like_salesforce(clause: str, expected: OrderBy) -> None:
    assert parse(f"SELECT Id FROM Lead {clause}").order_by == (expected,)


def test_field_names_lists_fields_from_every_clause() -> None:
    query = parse(
        "SELECT Id, Name FROM Lead WHERE (Email = 'x' OR Score IN (1, 2)) AND (NOT Company LIKE 'a%') "
        "ORDER BY CreatedDate"
    )
    assert field_names(query) == {"Id", "Name", "Email", "Score", "Company", "CreatedDate"}
    assert field_names(parse("SELECT COUNT() FROM Lead")) == set()


def test_soql_error_str_names_code_position_and_message() -> None:
    with pytest.raises(SoqlError) as caught:
        parse("SELECT Id, Name, Email, Company FORM Lead")
    assert str(caught.value) == "MALFORMED_QUERY at 32: unexpected token 'FORM'"
    assert (caught.value.position, caught.value.message) == (32, "unexpected token 'FORM'")
    assert caught.value.code == "MALFORMED_QUERY"


@pytest.mark.parametrize(
    ("soql", "position", "message"),
    [
        ("", 0, "unexpected end of query"),
        ("SELECT Id FORM Lead", 10, "unexpected token 'FORM'"),
        ("SELECT FROM Lead", 7, "unexpected token 'FROM'"),
        ("SELECT Id, FROM Lead", 11, "unexpected token 'FROM'"),
        ("SELECT Id FROM", 14, "unexpected end of query"),
        ("SELECT Id FROM Lead l", 20, "unexpected token 'l'"),
        ("SELECT Id FROM Lead WHERE", 25, "unexpected end of query"),
        ("SELECT Id, Owner.Name FROM Lead", 11, "relationship queries are not supported"),
        ("SELECT Id, Name, name FROM Lead", 17, "duplicate field selected: name"),
        ("SELECT COUNT(Id) FROM Lead", 7, "only COUNT()"),
        ("SELECT Id FROM Lead WHERE A = 1 AND B = 2 OR C = 3", 42, "unexpected token 'OR'"),
        ("SELECT Id FROM Lead WHERE A = 1 OR B = 2 AND C = 3", 41, "unexpected token 'AND'"),
        ("SELECT Id FROM Lead WHERE A = 1 AND NOT B = 2", 36, "unexpected token 'NOT'"),
        ("SELECT Id FROM Lead WHERE NOT A = 1 AND B = 2", 36, "unexpected token 'AND'"),
        ("SELECT Id FROM Lead WHERE NOT NOT A = 1", 30, "unexpected token 'NOT'"),
        ("SELECT Id FROM Lead WHERE (A = 1", 32, "unexpected end of query"),
        ("SELECT Id FROM Lead WHERE A = 1)", 31, "unexpected token ')'"),
        ("SELECT Id FROM Lead WHERE A == 1", 29, "unexpected token '='"),
        ('SELECT Id FROM Lead WHERE A = "x"', 30, "unexpected character '\"'"),
        ("SELECT Id FROM Lead WHERE A = 'x", 30, "unterminated string literal"),
        ("SELECT Id FROM Lead WHERE A = 'x\\'", 30, "unterminated string literal"),
        ("SELECT Id FROM Lead WHERE A = 'x\\y'", 32, "invalid escape sequence '\\y'"),
        ("SELECT Id FROM Lead WHERE A = 'x\\u12'", 32, "\\u needs four hex digits"),
        ("SELECT Id FROM Lead WHERE A = 'x\\%'", 32, "only valid in a LIKE pattern"),
        ("SELECT Id FROM Lead WHERE A IN ('ok', 'x\\_')", 40, "only valid in a LIKE pattern"),
        ("SELECT Id FROM Lead WHERE A LIKE 5", 33, "LIKE needs a quoted string"),
        ("SELECT Id FROM Lead WHERE A NOT LIKE 'x'", 32, "unexpected token 'LIKE'"),
        ("SELECT Id FROM Lead WHERE A IN ()", 32, "unexpected token ')'"),
        ("SELECT Id FROM Lead WHERE A IN ('x',)", 36, "unexpected token ')'"),
        ("SELECT Id FROM Lead WHERE A < null", 30, "< cannot compare with null"),
        ("SELECT Id FROM Lead WHERE A >= true", 31, ">= cannot compare with a boolean"),
        ("SELECT Id FROM Lead WHERE A = 2026-02-30", 30, "invalid date literal"),
        ("SELECT Id FROM Lead WHERE A > 2026-11-22T10:00:00", 30, "needs a time zone"),
        ("SELECT Id FROM Lead WHERE A > 2026-11-22T25:00:00Z", 30, "invalid datetime literal"),
        ("SELECT Id FROM Lead WHERE A = LAST_N_DAYS", 30, "LAST_N_DAYS needs a number of days"),
        ("SELECT Id FROM Lead WHERE A = THIS_MONTH", 30, "THIS_MONTH is not supported"),
        ("SELECT Id FROM Lead WHERE A = :name", 30, "unexpected character ':'"),
        ("SELECT Id FROM Lead WHERE A = inf", 30, "unexpected token 'inf'"),
        ("SELECT Id FROM Lead WHERE A = Name", 30, "unexpected token 'Name'"),
        ("SELECT Id FROM Lead LIMIT -1", 26, "expected a non-negative integer"),
        ("SELECT Id FROM Lead LIMIT 1.5", 26, "expected a non-negative integer"),
        ("SELECT Id FROM Lead OFFSET 5 LIMIT 1", 29, "unexpected token 'LIMIT'"),
        ("SELECT Id FROM Lead ORDER Name", 26, "unexpected token 'Name'"),
        ("SELECT Id FROM Lead ORDER BY Name NULLS", 39, "unexpected end of query"),
    ],
)
def test_parse_rejects_malformed_query_at_its_position(soql: str, position: int, message: str) -> None:
    with pytest.raises(SoqlError) as caught:
        parse(soql)
    assert caught.value.code == "MALFORMED_QUERY"
    assert caught.value.position == position
    assert message in caught.value.message


def test_parse_rejects_offset_beyond_salesforce_maximum() -> None:
    assert parse("SELECT Id FROM Lead OFFSET 2000").offset == 2000
    with pytest.raises(SoqlError) as caught:
        parse("SELECT Id FROM Lead OFFSET 2001")
    assert (caught.value.code, caught.value.position) == ("NUMBER_OUTSIDE_VALID_RANGE", 27)


# --------------------------------------------------------------------------- WHERE semantics


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # strings: case-insensitive, null is a value for = and !=
        ("Name = 'acme'", ["a"]),
        ("Name = 'ACME LABS'", ["b"]),
        ("Name != 'acme'", ["b", "c", "d", "e", "f"]),
        ("Name <> 'acme'", ["b", "c", "d", "e", "f"]),
        ("Name = null", ["d"]),
        ("Name != null", ["a", "b", "c", "e", "f"]),
        ("Name < 'b'", ["a", "b", "e"]),
        ("Name >= 'b'", ["c", "f"]),
        ("name = 'Acme'", ["a"]),
        # numbers: ordering comparisons never match null
        ("Score > 5", ["a", "e"]),
        ("Score >= 5", ["a", "b", "e"]),
        ("Score < 5", ["d", "f"]),
        ("Score <= 0", ["d", "f"]),
        ("Score = 0", ["d"]),
        ("Score != 5", ["a", "c", "d", "e", "f"]),
        ("Score = 10.0", ["a"]),
        ("Score > -4", ["a", "b", "d", "e", "f"]),
        ("Rate = 1.5", ["a", "f"]),
        ("Rate > 1", ["a", "e", "f"]),
        ("Rate < 1e1", ["a", "c", "d", "e", "f"]),
        ("Rate < -1", ["d"]),
        # booleans: Salesforce booleans are never null, so null reads as false
        ("IsConverted = true", ["a", "e"]),
        ("IsConverted = FALSE", ["b", "c", "d", "f"]),
        ("IsConverted != true", ["b", "c", "d", "f"]),
        ("IsConverted = null", ["b", "c", "d", "f"]),
        ("IsConverted != null", ["a", "e"]),
        # IN / NOT IN
        ("Name IN ('acme', 'Beta_Co')", ["a", "c"]),
        ("Name NOT IN ('acme', 'Beta_Co')", ["b", "d", "e", "f"]),
        ("Name IN ('acme', null)", ["a", "d"]),
        ("Score IN (5, 7)", ["b", "e"]),
        ("Score NOT IN (5, 7)", ["a", "c", "d", "f"]),
        ("CloseDate IN (2026-11-22, 2026-11-15)", ["a", "d"]),
        # LIKE: % and _ wildcards, \% and \_ literal, case-insensitive, never null
        ("Name LIKE 'acme%'", ["a", "b"]),
        ("Name LIKE 'ACME'", ["a"]),
        ("Name LIKE '%labs'", ["b"]),
        ("Name LIKE '%'", ["a", "b", "c", "e", "f"]),
        ("Name LIKE '%%m%%'", ["a", "b"]),
        ("Name LIKE 'beta_co'", ["c"]),
        ("Name LIKE 'beta\\_co'", ["c"]),
        ("Name LIKE 'acme\\_labs'", []),
        ("Name LIKE 'acme_labs'", ["b"]),
        ("Name LIKE '%\\%%'", ["e"]),
        ("Name LIKE '50\\%'", []),
        ("Name LIKE '5_\\% off'", ["e"]),
        ("Name LIKE '%\\n'", ["f"]),
        ("Name LIKE 'o\\'brien\\\\%'", ["f"]),
        ("Name LIKE '_'", []),
        ("NOT Name LIKE 'acme%'", ["c", "d", "e", "f"]),
        # dates compare with date literals and day ranges
        ("CloseDate = 2026-11-22", ["a"]),
        ("CloseDate > 2026-11-21", ["a", "e"]),
        ("CloseDate <= 2026-11-21", ["b", "d", "f"]),
        ("CloseDate != 2026-11-22", ["b", "c", "d", "e", "f"]),
        ("CloseDate = TODAY", ["a"]),
        ("CloseDate = YESTERDAY", ["b"]),
        ("CloseDate = TOMORROW", ["e"]),
        ("CloseDate < TODAY", ["b", "d", "f"]),
        ("CloseDate <= TODAY", ["a", "b", "d", "f"]),
        ("CloseDate > TODAY", ["e"]),
        ("CloseDate >= TODAY", ["a", "e"]),
        ("CloseDate != TODAY", ["b", "c", "d", "e", "f"]),
        ("CloseDate = LAST_N_DAYS:1", ["a", "b"]),
        ("CloseDate = LAST_N_DAYS:7", ["a", "b", "d"]),
        ("CloseDate < LAST_N_DAYS:7", ["f"]),
        ("CloseDate = NEXT_N_DAYS:1", ["e"]),
        ("CloseDate > NEXT_N_DAYS:1", []),
        # datetimes compare as instants, whatever the offsets
        ("SystemModstamp > 2026-11-22T09:59:59Z", ["a", "e"]),
        ("SystemModstamp >= 2026-11-22T09:59:59Z", ["a", "b", "e"]),
        ("SystemModstamp = 2026-11-22T11:00:00+01:00", ["a"]),
        ("SystemModstamp = 2026-11-22T11:00:00.000+0100", ["a"]),
        ("SystemModstamp = 2026-11-22T05:00:00-05:00", ["a"]),
        ("SystemModstamp = 2026-11-22T09:30:00Z", ["c"]),
        ("SystemModstamp < 2026-11-22T09:31:00Z", ["c", "d"]),
        ("SystemModstamp = 2026-11-22T10:00:00.001Z", []),
        ("SystemModstamp = null", ["f"]),
        ("SystemModstamp = TODAY", ["a", "b", "c"]),
        ("SystemModstamp > TODAY", ["e"]),
        ("SystemModstamp < YESTERDAY", ["d"]),
        ("SystemModstamp = LAST_N_DAYS:7", ["a", "b", "c", "d"]),
        ("SystemModstamp != TODAY", ["d", "e", "f"]),
    ],
)
def test_where_matches_like_salesforce(condition: str, expected: list[str]) -> None:
    assert where(condition) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("(Name = 'acme' OR Score = 5) AND IsConverted = false", ["b"]),
        ("Name = 'acme' OR (Score = 5 AND IsConverted = true)", ["a"]),
        ("Name = 'acme' OR Score = 5 OR Score = 7", ["a", "b", "e"]),
        ("Score > 0 AND Score < 10 AND IsConverted = true", ["e"]),
        ("NOT Score > 5", ["b", "c", "d", "f"]),
        ("NOT (Score > 5 OR Name = null)", ["b", "c", "f"]),
        ("Score > 0 AND (NOT IsConverted = true)", ["b"]),
        ("((Name = 'acme'))", ["a"]),
        ("NOT (NOT Name = 'acme')", ["a"]),
        ("(Score = 0 OR Score = 5) AND (Rate = null OR Rate < 0)", ["b", "d"]),
    ],
)
def test_where_follows_parentheses_and_not(condition: str, expected: list[str]) -> None:
    assert where(condition) == expected


def test_where_day_ranges_follow_the_time_zone_of_now() -> None:
    # 20:00 UTC on the 22nd is already the 23rd in Tokyo.
    tokyo_now = datetime(2026, 11, 22, 20, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=9)))
    assert where("CloseDate = TODAY", now=tokyo_now) == ["e"]
    # Tokyo's 23rd is [22nd 15:00 UTC, 23rd 15:00 UTC).
    assert where("SystemModstamp = TODAY", now=tokyo_now) == ["e"]
    naive_now = datetime(2026, 11, 22, 12, 0)
    assert where("CloseDate = TODAY", now=naive_now) == where("CloseDate = TODAY") == ["a"]


@pytest.mark.parametrize(
    ("condition", "position", "message"),
    [
        (
            "CloseDate = 2026-11-22T00:00:00Z",
            38,
            "CloseDate holds a date, which cannot be compared with a datetime",
        ),
        ("SystemModstamp > 2026-11-22", 43, "holds a datetime, which cannot be compared with a date literal"),
        ("Score = '10'", 34, "Score holds a number, which cannot be compared with a string"),
        ("Name = 10", 33, "Name holds a string, which cannot be compared with a number"),
        ("IsConverted = 'true'", 40, "holds a boolean, which cannot be compared with a string"),
        ("Score LIKE '1%'", 37, "holds a number, which cannot be compared with a string"),
        ("Name > TODAY", 33, "holds a string, which cannot be compared with a date range literal"),
    ],
)
def test_where_refuses_comparing_values_of_another_type(condition: str, position: int, message: str) -> None:
    with pytest.raises(SoqlError) as caught:
        where(condition)
    assert caught.value.code == "INVALID_QUERY_FILTER_OPERATOR"
    assert caught.value.position == position
    assert message in caught.value.message


@pytest.mark.parametrize("text", ["ABCDEFGHIJ", "2026-13-01", "Acme"])
def test_where_refuses_a_date_literal_against_text(text: str) -> None:
    with pytest.raises(SoqlError) as caught:
        ids("SELECT Id FROM Lead WHERE Code >= 2026-11-22", [{"Id": "1", "Code": text}])
    assert caught.value.code == "INVALID_QUERY_FILTER_OPERATOR"
    assert "Code holds a string" in caught.value.message


def test_where_decodes_every_salesforce_escape() -> None:
    records = [
        {"Id": "1", "Name": "\n\r\t\b\f\"'\\"},
        {"Id": "2", "Name": "é😀"},
        {"Id": "3", "Name": "plain"},
    ]
    soql = "SELECT Id FROM Lead WHERE Name = "
    assert ids(soql + "'\\n\\r\\t\\b\\f\\\"\\'\\\\'", records) == ["1"]
    assert ids(soql + "'\\N\\R\\T\\B\\F\\\"\\'\\\\'", records) == ["1"]
    assert ids(soql + "'\\u00e9\\ud83d\\ude00'", records) == ["2"]
    assert ids(soql + "'\\u00C9😀'", records) == ["2"]


# --------------------------------------------------------------------------- format_soql round trips

HOSTILE_STRINGS = [
    "",
    " ",
    "O'Brien",
    "' OR Name != '",
    "') OR (Name != '",
    "'; DELETE FROM Lead; --",
    "\\",
    "\\'",
    "\\\\%_'",
    "%",
    "_",
    "\\%",
    "50% off_sale",
    "line1\nline2\r\n\ttab",
    "\b\f\x00\x0b\x1f\x7f",
    '"double"',
    "日本語 ünïcödé 😀 ΑΣ ß İ",
    "\u2028\u2029\ufeff",
    "null",
    "true",
    "2026-11-22",
]


@pytest.mark.parametrize("text", HOSTILE_STRINGS)
def test_format_soql_strings_stay_strings(text: str) -> None:
    records: list[dict[str, Any]] = [
        {"Id": "hit", "Name": text},
        {"Id": "longer", "Name": text + "x"},
        {"Id": "null", "Name": None},
    ]
    assert ids(format_soql("SELECT Id FROM Lead WHERE Name = {}", text), records) == ["hit"]
    assert ids(format_soql("SELECT Id FROM Lead WHERE Name != {}", text), records) == ["longer", "null"]
    assert ids(format_soql("SELECT Id FROM Lead WHERE Name IN {}", [text, "zz"]), records) == ["hit"]
    assert ids(format_soql("SELECT Id FROM Lead WHERE Name LIKE '{:like}'", text), records) == ["hit"]
    assert ids(format_soql("SELECT Id FROM Lead WHERE Name LIKE '{:like}%'", text), records) == [
        "hit",
        "longer",
    ]


@pytest.mark.parametrize(
    ("value", "stored", "other"),
    [
        (42, 42, 43),
        (-7, -7, 7),
        (10**20, 10**20, 10**20 + 1),
        (0.1, 0.1, 0.2),
        (-2.5, -2.5, 2.5),
        (1e-05, 1e-05, 1e-06),
        (1.5e20, 1.5e20, 1.4e20),
        (True, True, False),
        (False, False, True),
        (None, None, "x"),
        (date(2026, 11, 22), "2026-11-22", "2026-11-23"),
        (
            datetime(2026, 11, 22, 10, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=1))),
            "2026-11-22T09:00:00.000+0000",
            "2026-11-22T10:00:00.000+0000",
        ),
        (
            datetime(2026, 11, 22, 9, 0, tzinfo=UTC),
            "2026-11-22T09:00:00.000+0000",
            "2026-11-22T09:00:01.000+0000",
        ),
    ],
)
def test_format_soql_values_round_trip(value: object, stored: object, other: object) -> None:
    records = [{"Id": "hit", "F": stored}, {"Id": "miss", "F": other}]
    assert ids(format_soql("SELECT Id FROM Lead WHERE F = {}", value), records) == ["hit"]
    assert ids(format_soql("SELECT Id FROM Lead WHERE F != {}", value), records) == ["miss"]
    if value is not None and not isinstance(value, bool):
        assert ids(format_soql("SELECT Id FROM Lead WHERE F IN {}", [value]), records) == ["hit"]
        assert ids(format_soql("SELECT Id FROM Lead WHERE F NOT IN {}", (value,)), records) == ["miss"]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, []])
def test_format_soql_values_salesforce_refuses_are_refused(value: object) -> None:
    with pytest.raises(SoqlError):
        parse(format_soql("SELECT Id FROM Lead WHERE F IN {}", value))


@settings(max_examples=300)
@given(text=st.text(), others=st.lists(st.text(), max_size=6))
def test_format_soql_any_text_finds_exactly_its_record(text: str, others: list[str]) -> None:
    # Near misses that a wrong escape or a stray wildcard would let through.
    near = [text + "x", "x" + text, text[:-1], text[1:], text.upper(), text.lower(), text.replace("_", "x")]
    near += [text.replace("%", ""), text + "\n", "%", "_", "\\", ""]
    records: list[dict[str, Any]] = [{"Id": "target", "Name": text}, {"Id": "null", "Name": None}]
    records += [
        {"Id": f"other{i}", "Name": other}
        for i, other in enumerate(near + others)
        if not same_ignoring_case(other, text)
    ]
    random.Random(len(text)).shuffle(records)
    assert ids(format_soql("SELECT Id FROM Lead WHERE Name = {}", text), records) == ["target"]
    assert ids(format_soql("SELECT Id FROM Lead WHERE Name LIKE '{:like}'", text), records) == ["target"]


@given(prefix=st.text(max_size=5), text=st.text(), suffix=st.text(max_size=5))
def test_format_soql_like_contains_finds_any_surrounding_text(prefix: str, text: str, suffix: str) -> None:
    records = [{"Id": "hit", "Name": prefix + text + suffix}]
    assert ids(format_soql("SELECT Id FROM Lead WHERE Name LIKE '%{:like}%'", text), records) == ["hit"]


_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])


@given(
    value=st.one_of(
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.dates(min_value=date(1000, 1, 1)),
        st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=_ZONES),
    )
)
def test_format_soql_any_scalar_finds_its_record(value: object) -> None:
    stored: object = value
    if isinstance(value, datetime):
        utc = value.replace(microsecond=0).astimezone(UTC).replace(tzinfo=None)
        stored = utc.isoformat() + ".000+0000"
    elif isinstance(value, date):
        stored = value.isoformat()
    records = [{"Id": "hit", "F": stored}]
    assert ids(format_soql("SELECT Id FROM Lead WHERE F = {}", value), records) == ["hit"]
    assert ids(format_soql("SELECT Id FROM Lead WHERE F != {}", value), records) == []


# --------------------------------------------------------------------------- ORDER BY, LIMIT, OFFSET

SCORES: list[dict[str, Any]] = [
    {"Id": "s3", "Score": 3, "Status": "Open"},
    {"Id": "n1", "Score": None, "Status": "Closed"},
    {"Id": "s1", "Score": 1, "Status": "Open"},
    {"Id": "s2", "Score": 2, "Status": "Closed"},
    {"Id": "n2", "Score": None, "Status": "Open"},
]


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("ORDER BY Score", ["n1", "n2", "s1", "s2", "s3"]),
        ("ORDER BY Score ASC NULLS LAST", ["s1", "s2", "s3", "n1", "n2"]),
        ("ORDER BY Score DESC", ["s3", "s2", "s1", "n1", "n2"]),
        ("ORDER BY Score DESC NULLS FIRST", ["n1", "n2", "s3", "s2", "s1"]),
        ("ORDER BY Status, Score DESC", ["s2", "n1", "s3", "s1", "n2"]),
        ("ORDER BY Status DESC, Score", ["n2", "s1", "s3", "n1", "s2"]),
        ("ORDER BY Score LIMIT 2", ["n1", "n2"]),
        ("ORDER BY Score NULLS LAST LIMIT 2 OFFSET 1", ["s2", "s3"]),
        ("ORDER BY Score OFFSET 4", ["s3"]),
        ("ORDER BY Score OFFSET 9", []),
        ("LIMIT 0", []),
        ("", ["s3", "n1", "s1", "s2", "n2"]),
    ],
)
def test_execute_sorts_and_pages_like_salesforce(clause: str, expected: list[str]) -> None:
    assert ids(f"SELECT Id FROM Lead {clause}", SCORES) == expected


def test_execute_sorts_strings_ignoring_case_and_keeps_ties_in_input_order() -> None:
    records = [
        {"Id": "1", "Name": "b"},
        {"Id": "2", "Name": "A"},
        {"Id": "3", "Name": "a"},
        {"Id": "4", "Name": "C"},
    ]
    assert ids("SELECT Id FROM Lead ORDER BY Name", records) == ["2", "3", "1", "4"]
    assert ids("SELECT Id FROM Lead ORDER BY Name DESC", records) == ["4", "1", "2", "3"]


def test_execute_sorts_datetimes_as_instants() -> None:
    records = [
        {"Id": "10:00Z", "SystemModstamp": "2026-11-22T10:00:00.000+0000"},
        {"Id": "09:30Z", "SystemModstamp": "2026-11-22T11:30:00.000+0200"},
        {"Id": "09:45Z", "SystemModstamp": "2026-11-22T09:45:00.000Z"},
    ]
    assert ids("SELECT Id FROM Lead ORDER BY SystemModstamp", records) == ["09:30Z", "09:45Z", "10:00Z"]


def test_count_applies_where_offset_and_limit() -> None:
    assert count(parse("SELECT COUNT() FROM Lead"), RECORDS) == 6
    assert count(parse("SELECT COUNT() FROM Lead WHERE Score > 0"), RECORDS, now=NOW) == 3
    assert count(parse("SELECT COUNT() FROM Lead WHERE Score > 0 LIMIT 2"), RECORDS) == 2
    assert count(parse("SELECT Id FROM Lead WHERE Score > 0 LIMIT 5 OFFSET 2"), RECORDS) == 1
    assert count(parse("SELECT Id FROM Lead OFFSET 10"), RECORDS) == 0
    assert count(parse("SELECT COUNT() FROM Lead WHERE CloseDate = TODAY"), RECORDS, now=NOW) == 1


# --------------------------------------------------------------------------- projection


def test_execute_projects_with_the_records_spelling_and_always_includes_id() -> None:
    records = [{"Id": "1", "name": "x", "Email": "e"}, {"Id": "2", "NAME": "y"}]
    rows = execute(parse("SELECT Name, email FROM Lead"), records)
    assert rows == [{"Id": "1", "name": "x", "Email": "e"}, {"Id": "2", "NAME": "y", "email": None}]
    assert list(rows[0]) == ["Id", "name", "Email"]


def test_execute_keeps_the_selected_order_when_id_is_selected() -> None:
    rows = execute(parse("SELECT Name, ID FROM Lead"), [{"Id": "1", "Name": "x", "Other": 1}])
    assert rows == [{"Name": "x", "Id": "1"}]
    assert list(rows[0]) == ["Name", "Id"]


def test_execute_returns_fresh_rows() -> None:
    records = [{"Id": "1", "Name": "x"}]
    execute(parse("SELECT Name FROM Lead"), records)[0]["Name"] = "changed"
    assert records == [{"Id": "1", "Name": "x"}]


def test_execute_count_query_has_no_rows() -> None:
    assert execute(parse("SELECT COUNT() FROM Lead"), RECORDS) == []


# -------------------------------------------------------------------------- large inputs


def test_execute_filters_and_sorts_100k_records() -> None:
    # How long it takes is measured by bench/sandbox_throughput.py, never asserted here.
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records: list[dict[str, Any]] = [
        {
            "Id": f"00Q{i:015d}",
            "LastName": rng.choice(["Smith", "Jones", "Müller", "O'Brien", None]),
            "Company": f"Company {rng.randrange(5000)}",
            "SystemModstamp": (start + timedelta(seconds=rng.randrange(300 * 86400))).strftime(
                "%Y-%m-%dT%H:%M:%S.000+0000"
            ),
        }
        for i in range(100_000)
    ]
    query = parse(
        "SELECT Id, LastName, SystemModstamp FROM Lead WHERE SystemModstamp >= 2026-06-01T00:00:00Z "
        "ORDER BY SystemModstamp ASC, Id ASC"
    )
    rows = execute(query, records)
    expected = sorted(
        (r for r in records if r["SystemModstamp"] >= "2026-06-01T00:00:00.000+0000"),
        key=lambda r: (r["SystemModstamp"], r["Id"]),
    )
    assert [r["Id"] for r in rows] == [r["Id"] for r in expected]
    assert all(list(r) == ["Id", "LastName", "SystemModstamp"] for r in rows)


_TEXTS = st.sampled_from(["acme", "ACME", "Acme Ltd", "ΣΊΣΥΦΟΣ", "σίσυφος", "00Q1", "00q1", ""])


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), _TEXTS, st.integers(-2, 2)), min_size=1, max_size=12),
    listed=st.lists(_TEXTS, min_size=1, max_size=6),
    negated=st.booleans(),
)
def test_a_list_of_strings_matches_as_the_comparisons_it_stands_for(
    values: list[Any], listed: list[str], negated: bool
) -> None:
    """`F IN ('a', 'b')` is `F = 'a' OR F = 'b'` (and NOT IN its negation), case folded alike,
    a null never a member; the sandbox answers a list of strings from a set of folded keys."""
    records = [{"Id": str(i), "Name": value} for i, value in enumerate(values)]
    quoted = ", ".join(format_soql("{}", text) for text in listed)
    ors = " OR ".join(format_soql("Name = {}", text) for text in listed)
    listing = f"SELECT Id FROM Lead WHERE Name {'NOT IN' if negated else 'IN'} ({quoted})"
    spelled = f"SELECT Id FROM Lead WHERE {'NOT ' if negated else ''}({ors})"
    if any(isinstance(value, int) for value in values):  # a number where the field holds text
        with pytest.raises(SoqlError):
            ids(spelled, records)
        with pytest.raises(SoqlError):
            ids(listing, records)
        return
    assert ids(listing, records) == ids(spelled, records)
