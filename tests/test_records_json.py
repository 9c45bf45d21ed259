"""Accounts parsed straight from their stored JSON text (issue #17, "typed decoding from bytes"):
`parse_account_json(text)` gives the `Account`, or the `RecordError`, that
`parse_account(decode_stored(text))` gives, for every text; and for the accounts a book holds it
gets there without that path (otherwise the equality below would hold of any fallback).

The records are generated after the shape Vitally's `GET /resources/accounts` returns (the
sandbox's, sandbox/vitally.py, from Vitally's REST API reference: `id`, `name`, `externalId`,
`createdAt`, `updatedAt`, `mrr`, `churnedAt`, `traits`, `keyRoles`, `segments`, the owner ids),
with every value drawn from what a person can type into a trait as well as what the rules expect.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import core.records
from core.decoding import decode_stored
from core.errors import RecordError
from core.records import (
    DEFAULT_KEY_ROLE_LABELS,
    DEFAULT_OWNER_FIELDS,
    DEFAULT_TRAIT_KEYS,
    account_json_parser,
    parse_account,
    parse_account_json,
)
from sandbox.generator import generate_book

WRITTEN = ("lifecycle_stage", "new_owner", "crm_sync_written")

# Values as the wire may carry them: right and wrong types, numbers at and past every bound
# (±10^15, 0, 100, beyond a float), text that reads as a number, a date, a country or a bool,
# and a lone surrogate (which msgspec refuses, the standard decoder keeps).
_TEXT = st.sampled_from(
    [
        "",
        " ",
        "Acme",
        "Zürich 東京",
        "5",
        "1,000",
        "true",
        "FALSE",
        "2026-01-05",
        "2026-01-05T10:00:00Z",
        "2026-13-40",
        "Germany",
        "DE",
        "Atlantis",
        "2026-02-30",
        "202607",
        "UK",
        "xx",
        "2026-07",
        "26-07",
        "\ud800",
        "a\u202eb",
    ]
) | st.text(max_size=8)
_NUMBER = (
    st.sampled_from([0, -0.0, 1, -1, 3.0, 2.5, 100, 100.5, 10**15, 10**15 + 1, -(10**15), 1e15, 1.5e15, 10**30, 1e300])
    | st.integers(-(10**16), 10**16)
    | st.floats(allow_nan=False, allow_infinity=False)
)
_SCALAR = st.none() | st.booleans() | _NUMBER | _TEXT
# Just past what one parser or another accepts: a negative amount or count, a percentage over 100,
# a magnitude over 10^15, a whole number written as a float, a number written as text.
_EDGE = st.sampled_from([-1, -0.5, -(10**15) - 1, 10**15 + 1, 1.5e15, 100.5, 101, 3.0, 2.5, True, "5", "true"])
_INVOICE = (
    st.fixed_dictionaries(
        {
            "month": st.sampled_from(["2026-07", "2026-7", "26-07-01", "2026-0x", "202607"]) | _SCALAR,
            "amount": _SCALAR | _NUMBER,
        },
        optional={"note": _SCALAR},
    )
    | st.fixed_dictionaries({"month": st.just("2026-08")})
    | _SCALAR
)
_VALUE = (
    _SCALAR
    | st.lists(_TEXT | _SCALAR, max_size=3)
    | st.dictionaries(_TEXT, _NUMBER | _SCALAR, max_size=3)
    | st.lists(_INVOICE, max_size=4)
)
_ROLE = (
    st.fixed_dictionaries(
        {
            "keyRole": st.none()
            | st.fixed_dictionaries({"label": st.sampled_from(["Customer Success Manager", "TAM", 5])}),
            "vitallyUser": st.none() | st.fixed_dictionaries({"id": _SCALAR, "email": _SCALAR}),
        }
    )
    | _SCALAR
)


_MONEY = st.sampled_from([0, -0.0, 1e15, 10**15, 0.1]) | st.floats(0, 1e15) | st.integers(0, 10**15)
_COUNT = st.sampled_from([0, 10**15]) | st.integers(0, 10**6)
_COUNTRY = st.sampled_from(["DE", "Germany", "UK", "United States", "us"])
_MONTH = st.sampled_from(["2026-07", "2025-12"])
# What each parser of core.records reads, when it is right: most traits of most generated
# accounts, so that most of them take the typed decoding and its conversions.
_RIGHT: dict[Any, st.SearchStrategy[Any]] = {
    core.records._text: st.text(max_size=8),
    core.records._money: _MONEY,
    core.records._count: _COUNT,
    core.records._signed_int: st.integers(-(10**15), 10**15),
    core.records._percent: st.floats(0, 100) | st.integers(0, 100),
    core.records._bool: st.booleans(),
    core.records._date: st.sampled_from(["2026-01-05", "2026-01-05T10:00:00Z", "2025-12-31"]),
    core.records._country: _COUNTRY,
    core.records._str_list: st.lists(st.text(max_size=5), max_size=3),
    core.records._money_map: st.dictionaries(st.text(max_size=5), _MONEY, max_size=3),
    core.records._country_counts: st.dictionaries(_COUNTRY, _COUNT, max_size=3),
    core.records._invoices: st.lists(st.fixed_dictionaries({"month": _MONTH, "amount": _MONEY}), max_size=4),
}


@st.composite
def _traits(draw: st.DrawFn, trait_keys: dict[str, str]) -> dict[str, Any]:
    """A third of the traits crm-sync reads, each right (or null), the traits it writes as
    anything, and one it does not know."""
    traits: dict[str, Any] = {}
    for canonical, parse in core.records._TRAIT_PARSERS.items():
        if draw(st.integers(0, 2)) == 0:
            value = st.none() if draw(st.integers(0, 19)) == 0 else _RIGHT[parse]
            traits[trait_keys.get(canonical, canonical)] = draw(value)
    for key in (*WRITTEN, "unknown_trait"):
        if draw(st.booleans()):
            traits[key] = draw(_VALUE)
    return traits


_SEGMENT = st.sampled_from(["Leads", "AM Managed"]) | _SCALAR
_STAMP = st.sampled_from(["2026-11-20T09:30:00.000Z", "2026-11-20T09:30:00+0000", "2026-11-20T09:30:00"])
_ROLES = st.lists(
    st.fixed_dictionaries(
        {
            "keyRole": st.fixed_dictionaries({"label": st.sampled_from(["Customer Success Manager", "TAM"])}),
            "vitallyUser": st.fixed_dictionaries({"id": st.sampled_from(["u1", "u2"]), "email": st.just("A@X.io")}),
        }
    ),
    max_size=2,
)


@st.composite
def _account(draw: st.DrawFn, trait_keys: dict[str, str]) -> dict[str, Any]:
    """A well-formed Vitally account, then, two times in three, one member or one trait made
    anything at all (a boundary number, a wrong type, missing): each field's checks are met with an
    account that is otherwise right, which is where the typed decoding decides alone."""
    raw: dict[str, Any] = {
        "id": draw(st.sampled_from(["acc_1", "acc_ü"])),
        "name": draw(st.sampled_from(["Acme", "Zürich AG"])),
        "updatedAt": draw(_STAMP),
        "createdAt": draw(_STAMP | st.none()),
        "churnedAt": draw(st.none() | _STAMP),
        "externalId": draw(_SCALAR),
        "mrr": draw(_MONEY | st.none()),
        "traits": draw(_traits(trait_keys)),
        "segments": draw(st.lists(st.fixed_dictionaries({"name": _SEGMENT}), max_size=2)),
        "keyRoles": draw(_ROLES),
        "accountOwnerId": draw(st.sampled_from(["u3", "", None])),
        "csmId": draw(st.sampled_from(["u4", None])),
    }
    spoil = draw(st.integers(0, 2))
    if spoil == 1:  # a member of the account
        name = draw(st.sampled_from(sorted(raw)))
        if draw(st.integers(0, 4)) == 0:
            del raw[name]
        else:
            raw[name] = draw(_VALUE | _ROLE)
    elif spoil == 2:  # one trait crm-sync reads
        canonical = draw(st.sampled_from(sorted(core.records._TRAIT_PARSERS)))
        raw["traits"][trait_keys.get(canonical, canonical)] = draw(_EDGE | _VALUE)
    return raw


def _outcome(parse: Any, text: str) -> object:
    """What parsing `text` gives, comparable with `==` down to the types of the values (an int is
    not a float here): the account's fields, or the error's record, field and message."""
    try:
        account = parse(text)
    except RecordError as error:
        return ("error", error.system, error.record_id, error.field, error.message)
    return {name: (type(value).__name__, repr(value)) for name, value in sorted(vars(account).items())}


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _slow(text: str, trait_keys: Any, written: tuple[str, ...], labels: Any, owners: Any) -> Any:
    return parse_account(decode_stored(text), trait_keys, written, labels, owners)


RENAMED = {**DEFAULT_TRAIT_KEYS, "paid_products": "paid", "country": "hq_country", "employee_count": "employees"}
SETTINGS = [
    pytest.param(DEFAULT_TRAIT_KEYS, WRITTEN, DEFAULT_OWNER_FIELDS, id="default"),
    pytest.param(RENAMED, WRITTEN, {"csmId": "CSM", "accountOwnerId": ""}, id="renamed-traits-owners"),
    # A written trait that is also read as a typed one: no typed decoding, parse_account's path.
    pytest.param(DEFAULT_TRAIT_KEYS, ("plan", *WRITTEN), DEFAULT_OWNER_FIELDS, id="written-key-read-too"),
]


@pytest.mark.parametrize(("trait_keys", "written", "owners"), SETTINGS)
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), ascii_only=st.booleans())
def test_an_account_parsed_from_its_json_is_the_one_parse_account_gives(
    data: st.DataObject, ascii_only: bool, trait_keys: Any, written: tuple[str, ...], owners: Any
) -> None:
    raw = data.draw(_account(trait_keys))
    text = json.dumps(raw, ensure_ascii=ascii_only)
    # A stored text is valid UTF-8 (SQLite's TEXT): a lone surrogate reaches it escaped, never raw.
    assume(ascii_only or _utf8(text))
    fast = account_json_parser(trait_keys, written, DEFAULT_KEY_ROLE_LABELS, owners)
    expected = _outcome(lambda t: _slow(t, trait_keys, written, DEFAULT_KEY_ROLE_LABELS, owners), text)
    assert _outcome(fast, text) == expected


# Each value, in each trait crm-sync reads, of an account otherwise right.
_EVERY_VALUE: list[Any] = [
    None, True, False, 0, -0.0, 1, -1, 2.5, 3.0, -0.5, 99.5, 100, 100.5, 101, 10**15, 10**15 + 1, -(10**15),
    -(10**15) - 1, 1e15, 1.5e15, 10**30, 1e300, "", " ", "5", "1,000", "true", "FALSE", "Acme", "Zürich",
    "DE", "Germany", "Atlantis", "2026-01-05", "2026-01-05T10:00:00Z", "2026-02-30", "2026-07", "\ud800",
    [], ["a", "b"], ["a", 1], [{"month": "2026-07", "amount": 5}], [{"month": "2026-7", "amount": 5}],
    [{"month": "2026-07", "amount": -5}], [{"month": "2026-07"}],
    [{"month": "2026-07", "amount": 1.5e15}], [{"month": "2026-07", "amount": 10**15 + 1}],
    [{"month": "2026-07", "amount": True}], [{"month": "2026-07", "amount": 5, "note": 1}],
    [{"month": 202607, "amount": 5}], ["2026-07"],
    {}, {"a": 1.5}, {"a": -1}, {"a": "1"}, {"DE": 3}, {"Atlantis": 3}, {"DE": 2.0}, {"DE": -1}, {"UK": 2, "GB": 1},
]  # fmt: skip


@pytest.mark.parametrize(("trait_keys", "written", "owners"), SETTINGS[:2])
def test_every_value_in_every_trait_parses_as_parse_account_reads_it(
    trait_keys: Any, written: tuple[str, ...], owners: Any
) -> None:
    fast = account_json_parser(trait_keys, written, DEFAULT_KEY_ROLE_LABELS, owners)
    checked = 0
    for canonical in core.records._TRAIT_PARSERS:
        for value in _EVERY_VALUE:
            traits = {trait_keys.get(canonical, canonical): value}
            raw = {"id": "acc_1", "name": "Acme", "updatedAt": "2026-11-20T09:30:00Z", "mrr": 5, "traits": traits}
            text = json.dumps(raw)
            expected = _outcome(lambda t: _slow(t, trait_keys, written, DEFAULT_KEY_ROLE_LABELS, owners), text)
            assert _outcome(fast, text) == expected, (canonical, value)
            checked += 1
    assert checked == len(core.records._TRAIT_PARSERS) * len(_EVERY_VALUE)


def test_the_accounts_of_a_book_are_parsed_without_the_decoded_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated book's accounts (2 % of them malformed) parse to what `parse_account` gives;
    the well-formed ones never reach it, and the malformed ones fail the typed decoding and get
    `parse_account`'s error."""
    book = generate_book(2_000, seed=3, now=datetime(2026, 11, 22, 9, tzinfo=UTC))
    texts = [json.dumps(raw) for raw in book["vitally"]["accounts"]]
    expected = [
        _outcome(lambda t: _slow(t, DEFAULT_TRAIT_KEYS, WRITTEN, DEFAULT_KEY_ROLE_LABELS, DEFAULT_OWNER_FIELDS), text)
        for text in texts
    ]
    calls: list[str] = []
    real = core.records.parse_account

    def counted(raw: Any, *args: Any) -> Any:
        calls.append(str(raw.get("id")) if isinstance(raw, dict) else "?")
        return real(raw, *args)

    monkeypatch.setattr(core.records, "parse_account", counted)
    got = [_outcome(lambda t: parse_account_json(t, DEFAULT_TRAIT_KEYS, WRITTEN), text) for text in texts]
    assert got == expected
    errors = sum(1 for outcome in expected if isinstance(outcome, tuple))
    assert 0 < errors < len(texts) * 0.05
    assert len(calls) == errors  # only the malformed accounts took the decoded path
