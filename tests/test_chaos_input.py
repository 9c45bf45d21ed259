"""Chaos: malformed input, secrets under DEBUG logging, cursor boundaries and our own echoes
(issue 6 items 5, 8, 9, 10).

Most scenarios drive `sync.cycle.run_cycle` in-process (in-memory state, the real connectors, a
sandbox on loopback); one run of the real CLI per scenario checks what a person sees on stderr.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import socket
import stat
import subprocess
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from support import run_cli

from connectors.http import make_session
from connectors.salesforce import SalesforceClient, SalesforceSettings
from connectors.vitally import VitallyClient, VitallySettings
from core.countries import normalise_country
from core.errors import RecordError
from core.records import (
    DEFAULT_TRAIT_KEYS,
    parse_account,
    parse_lead,
    parse_opportunity,
    parse_sf_account,
    parse_user,
)
from sandbox import Sandbox, generate_book
from sandbox.salesforce import case_safe_id
from state import StateDB
from sync.accounts import iter_accounts
from sync.config import Config, load_config
from sync.cycle import run_cycle
from sync.output import render_plan
from sync.vocabulary import CycleReport

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
CONFIG: Config = load_config(ROOT / "config.example.toml")  # loopback URLs: placeholder secrets
SALES_TEAM: list[dict[str, Any]] = generate_book(0, now=T0)["salesforce"]["User"]
RECORD_ERROR = re.compile(r"^record error: (vitally|salesforce \w+) record (.+?): field (\S+): .+$")
generated_records = Counter[str]()  # per scenario, reported at the end of the module


@pytest.fixture(autouse=True, scope="module")
def _count_generated(request: pytest.FixtureRequest) -> None:
    """Say at the end of the session how many generated records ran (the issue asks for 10,000)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def say() -> None:
        if reporter is not None and generated_records:
            counts = ", ".join(f"{name} {n:,}" for name, n in sorted(generated_records.items()))
            reporter.write_line(f"chaos: generated records: {counts}")

    request.config.add_cleanup(say)


def _no_sleep(seconds: float) -> None:
    """Tests never really sleep."""


def _clock() -> datetime:
    return datetime.now(UTC)


def _clients(
    url: str, vitally_session: requests.Session | None = None, sf_session: requests.Session | None = None
) -> tuple[VitallyClient, SalesforceClient]:
    vitally = VitallyClient(
        VitallySettings(base_url=url, api_key="test-key", max_attempts=1), sleep=_no_sleep, session=vitally_session
    )
    salesforce = SalesforceClient(
        SalesforceSettings(instance_url=url, token="test-token", max_attempts=1), sleep=_no_sleep, session=sf_session
    )
    return vitally, salesforce


class _Spy:
    """Records what each cycle hands to the mirror: (id, version) per upsert, per cycle."""

    def __init__(self, state: StateDB) -> None:
        self.cycles: list[list[tuple[str, str]]] = []
        accounts, sf = state.upsert_accounts, state.upsert_sf

        def upsert_accounts(rows: Any, read_run: int | None = None) -> None:
            rows = list(rows)
            self.cycles[-1].extend((row["id"], row["updated_at"]) for row in rows)
            accounts(rows, read_run)

        def upsert_sf(rows: Any) -> None:
            rows = list(rows)
            self.cycles[-1].extend((row["id"], row["modstamp"]) for row in rows)
            sf(rows)

        state.upsert_accounts = upsert_accounts  # type: ignore[method-assign]
        state.upsert_sf = upsert_sf  # type: ignore[method-assign]

    def cycle(self) -> None:
        self.cycles.append([])


def _cycle(state: StateDB, vitally: Any, salesforce: Any, *, dry_run: bool = False) -> CycleReport:
    return run_cycle(CONFIG, state, vitally, salesforce, clock=_clock, now=NOW, dry_run=dry_run)


# -- item 5: malformed input -----------------------------------------------------------------------

STAMPS = ("2026-11-20T09:00:00.000Z", "2026-11-21T09:00:00.000Z", "2026-11-21T12:30:00.000Z")
SF_STAMPS = ("2026-11-20T09:00:00.000+0000", "2026-11-21T09:00:00.000+0000", "2026-11-21T12:30:00.000+0000")
ODD = [
    "O'Brien & Sons",
    "100% _real_ corp \\ co",
    "'; DELETE FROM Lead WHERE Name LIKE '%",
    "\u202eevil\u202c",
    "e\u0301cole",
    "𝕏𝔸𝕄 😀",
    "nul\x00byte",
    "  padded  ",
    "Zürich GmbH",
    "東京株式会社",
    "tab\tnew\nline",
]
odd_text = st.one_of(
    st.text(min_size=1, max_size=30).filter(lambda s: bool(s.strip())),
    st.sampled_from(ODD),
    # huge: from 1,000 to 16,000 of one odd character, past every limit a text meets on its way
    # (255 a Salesforce text field, 4,000 the LLM's form text, 8,000 the offline triage's; up to
    # 192,000 characters of JSON escapes a field). Up to 60,000 before: no further limit, and two
    # fifths of this module's time (2026-12-07: 12 examples, 13.2 s of test body with, 8.0 s with
    # 1,000 to 2,000).
    st.builds(
        lambda c, n: f"Big {c * n}", st.sampled_from(["é", "'", "%_", "\\", "😀", "\u0301"]), st.integers(1_000, 16_000)
    ),
)
odd_email = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.sampled_from(["o'brien", "100%", "under_score", "back\\slash", "ünï", "a+b"]),
    st.sampled_from(["example.com", "ex_ample.co.uk", "exam%ple.io", "xn--mnchen-3ya.de"]),
)
good_country = st.sampled_from(
    ["DE", "US", "UK", "United Kingdom", "France", "Brazil", "Singapore", "us", "Deutschland"]
)
good_country = good_country.filter(lambda c: normalise_country(c) is not None)
# Text that names no country: a well-formed value read as unknown (tests/test_records.py says why:
# country fields are free text in the real services); a value that is not text is malformed.
unknown_country = st.one_of(
    st.sampled_from(["Atlantis", "Narnia", "XX", "Mars", "", "'; --", "%", "N/A", "Remote", "A1", "Unknown"]),
    st.text(max_size=20).filter(lambda s: normalise_country(s) is None),
)
# JSON can carry a lone UTF-16 surrogate; it is no character, so text holding one is malformed.
SURROGATE = "lone \ud800 surrogate"
not_text = st.sampled_from([7, 2.5, True, ["x"], {"a": 1}, SURROGATE])
bad_number = st.one_of(
    st.sampled_from(["NaN", "nan", "Infinity", "-Infinity", "1e999", "lots", "", True, False, [1], {"n": 1}]),
    st.text(min_size=1, max_size=10).filter(lambda s: not _is_float(s)),
)
negative = st.one_of(st.integers(max_value=-1), st.floats(max_value=-0.001, allow_nan=False, allow_infinity=False))
bad_amount = st.one_of(bad_number, negative, st.sampled_from(["-5", "-0.01"]))
bad_count = st.one_of(bad_amount, st.sampled_from([1.5, "2.5", 0.001]))
bad_timestamp = st.sampled_from(
    ["not a date", "2026-13-45T00:00:00Z", "yesterday at noon", "2026-11-20T25:61:00Z", "2026/11/20 09:00", "0"]
)
bad_date = st.one_of(st.sampled_from(["soon", "2026-02-30", "2026-1-1", "", "31/12/2026"]), not_text)


def _is_float(text: str) -> bool:
    try:
        float(text.replace(",", "").strip())
    except ValueError:
        return False
    return True


PRODUCTS = ["product_analytics", "session_replay", "feature_flags", "surveys", "data_warehouse"]
# Well-formed trait sets (null and absent traits are unknown, not errors); Hypothesis picks one and
# varies a few values, which keeps a batch of records within its example budget.
TRAIT_PROFILES: list[dict[str, Any]] = [
    {},
    {"country": None, "employee_count": None, "paidProducts": []},
    {"country": "DE", "employee_count": 64, "user_count": 9, "first_paid_at": "2026-06-01"},
    {
        "country": "UK",
        "paidProducts": PRODUCTS[:4],
        "users_by_country": {"DE": 10, "us": 2, "A1": 3},
        "annual_plan": "true",
    },
    {"country": "Deutschland", "employee_count": "1,200", "forecasted_mrr": 3000.5, "autocapture_pct": 100},
    {"invoices": [{"month": "2026-09", "amount": 120.0}], "product_spend": {"surveys": 0}, "is_b2b": "FALSE"},
    {"unknown_trait_'%": [1, {"x": None}], "startup_credits_total": 50_000, "startup_credits_used": "0"},
]


# The strategies a composite draws from are built once, here: a strategy built inside a composite
# is built, validated and labelled again at every draw (half of the time this module spent in
# Hypothesis, measured with cProfile).
_TRAIT_PROFILE = st.sampled_from(TRAIT_PROFILES)
_TRAIT_COUNTRY = st.one_of(st.none(), good_country, unknown_country)
_EMPLOYEES = st.one_of(st.none(), st.integers(0, 10**9))
_PAID_PRODUCTS = st.lists(st.sampled_from(PRODUCTS), unique=True, max_size=5)


@st.composite
def good_traits(draw: st.DrawFn) -> dict[str, Any]:
    traits: dict[str, Any] = json.loads(json.dumps(draw(_TRAIT_PROFILE)))
    traits["country"] = draw(_TRAIT_COUNTRY)
    traits["employee_count"] = draw(_EMPLOYEES)
    traits["paidProducts"] = draw(_PAID_PRODUCTS)
    return traits


_GOOD_TRAITS = good_traits()


BAD_ACCOUNT_FIELDS: Mapping[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from([None, "", "   ", "\u3000", 123, ["x"], {"a": 1}, True, SURROGATE]),
    "updatedAt": bad_timestamp,
    "createdAt": st.one_of(bad_timestamp, st.sampled_from([12, True])),
    "mrr": bad_amount,
    "traits.employee_count": bad_count,
    "traits.user_count": bad_count,
    "traits.country": not_text,
    "traits.autocapture_pct": st.one_of(st.sampled_from([100.5, -1, "101", 1e9]), bad_number),
    "traits.first_paid_at": bad_date,
    "traits.paidProducts": st.sampled_from(["product_analytics", [1], [None], {"a": "b"}, 5]),
    "traits.users_by_country": st.one_of(
        st.sampled_from([["DE"], "DE", 3]),
        st.builds(lambda c, n: {c: n}, unknown_country, bad_count),  # a count that is none, whatever the key
        st.builds(lambda n: {"DE": n}, bad_count),
    ),
    "traits.invoices": st.one_of(
        st.sampled_from(
            ["x", {"month": "2026-01"}, [1], [{"month": "2026-1", "amount": 1}], [{"month": 202601, "amount": 1}]]
        ),
        st.builds(lambda a: [{"month": "2026-01", "amount": a}], bad_amount),
    ),
    "traits.product_spend": st.one_of(st.sampled_from([[1], "x"]), st.builds(lambda a: {"x": a}, bad_amount)),
    "traits.annual_plan": st.sampled_from(["yes", 1, 0, "", [True], "null"]),
    "traits.forecasted_mrr": bad_amount,
    "traits.routing_reason": st.just(SURROGATE),  # a trait we write: shown in the plan as `previous`
    "keyRoles": st.sampled_from(
        [5, "TAM", {"a": 1}, [5], ["x"], [{"keyRole": "TAM"}], [{"keyRole": {"label": "TAM"}, "vitallyUser": 5}], True]
    ),
}
# The sandbox cannot hold an account whose `traits` is not an object or whose `segments` is not a
# list (its Playbooks iterate them), so those shapes are fuzzed against the parser directly below.


_EXTERNAL_ID = st.one_of(st.none(), odd_text, st.integers())
_STAMP = st.sampled_from(STAMPS)
_MRR = st.one_of(st.none(), st.floats(0, 50_000), st.integers(0, 10**6), st.sampled_from(["812", "1,234.5"]))
_KEY_ROLES = st.sampled_from(
    [[], None, [{"keyRole": {"label": "TAM"}, "vitallyUser": {"id": "u1", "email": "T@x.io"}}]]
)
_SEGMENTS = st.sampled_from([[], None, [{"id": "s", "name": "AM referral"}], ["stray text", 5]])
_ONE_IN_THREE = st.integers(0, 2)
_BAD_ACCOUNT_FIELD = st.sampled_from(sorted(BAD_ACCOUNT_FIELDS))


@st.composite
def vitally_case(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """A well-formed (odd but legal values included) Vitally account, or one with exactly one
    malformed field; returns (account without id, the field that must be reported or None)."""
    account: dict[str, Any] = {
        "externalId": draw(_EXTERNAL_ID),
        "name": draw(odd_text),
        "createdAt": "2025-01-01T00:00:00.000Z",
        "updatedAt": draw(_STAMP),
        "mrr": draw(_MRR),
        "traits": draw(_GOOD_TRAITS),
        "keyRoles": draw(_KEY_ROLES),
        "segments": draw(_SEGMENTS),
        "accountOwnerId": None,
    }
    if draw(_ONE_IN_THREE):  # about a third malformed
        return account, None
    field = draw(_BAD_ACCOUNT_FIELD)
    value = draw(BAD_ACCOUNT_FIELDS[field])
    if field.startswith("traits."):
        account["traits"][field.removeprefix("traits.")] = value
    else:
        account[field] = value
    return account, field


LEAD_SOURCES = ["Demo Request", "Sales Email", "Trust Center", "Campaign", "BDR", "Website", "Other"]
BAD_LEAD_FIELDS: Mapping[str, st.SearchStrategy[Any]] = {
    # An unreadable SystemModstamp is tested on its own below (the sandbox cannot query past one).
    "CreatedDate": st.one_of(bad_timestamp, st.sampled_from([5, False])),
    "Email": not_text,
    "LastName": not_text,
    "Company": not_text,
    "Title": not_text,
    "LeadSource": not_text,
    "Status": not_text,
    "OwnerId": not_text,
    "NumberOfEmployees": bad_count,
    "AnnualRevenue": bad_amount,
    "Country": not_text,
    "IsConverted": st.sampled_from(["maybe", 1, 0, [False], "yes"]),
    "Lead_Score__c": bad_number,
    "Form_Text__c": not_text,
}


_MAYBE_ODD = st.one_of(st.none(), odd_text)
_MAYBE_EMAIL = st.one_of(st.none(), odd_email)
_TITLE = st.one_of(st.none(), st.sampled_from(["CTO", "VP Eng", "Founder's assistant", "100% _intern_"]))
_LEAD_COUNTRY = st.one_of(st.none(), st.just(""), good_country, unknown_country)
_LEAD_EMPLOYEES = st.one_of(st.none(), st.integers(0, 10**6))
_REVENUE = st.one_of(st.none(), st.floats(0, 1e12))
_LEAD_SOURCE = st.one_of(st.none(), st.sampled_from(LEAD_SOURCES))
_STATUS = st.sampled_from(["Open - Not Contacted", "Working", "Disqualified", "Unqualified"])
_CONVERTED = st.sampled_from([False, "false", None])
_FORM_TEXT = st.one_of(st.none(), odd_text, st.sampled_from(["I want a demo", "pricing?", "buy cheap pills"]))
_SF_STAMP = st.sampled_from(SF_STAMPS)
_BAD_LEAD_FIELD = st.sampled_from(sorted(BAD_LEAD_FIELDS))


@st.composite
def lead_case(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """A Salesforce Lead (odd values and SOQL metacharacters included), or one with exactly one
    malformed field; returns (lead without Id, the field that must be reported or None)."""
    lead: dict[str, Any] = {
        "FirstName": draw(_MAYBE_ODD),
        "LastName": draw(odd_text),
        "Company": draw(odd_text),
        "Email": draw(_MAYBE_EMAIL),
        "Title": draw(_TITLE),
        "Country": draw(_LEAD_COUNTRY),
        "NumberOfEmployees": draw(_LEAD_EMPLOYEES),
        "AnnualRevenue": draw(_REVENUE),
        "LeadSource": draw(_LEAD_SOURCE),
        "Status": draw(_STATUS),
        "IsConverted": draw(_CONVERTED),
        "Form_Text__c": draw(_FORM_TEXT),
        "CreatedDate": "2026-11-01T00:00:00.000+0000",
        "SystemModstamp": draw(_SF_STAMP),
    }
    if draw(_ONE_IN_THREE):
        return lead, None
    field = draw(_BAD_LEAD_FIELD)
    lead[field] = draw(BAD_LEAD_FIELDS[field])
    return lead, field


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.sampled_from([*ODD, SURROGATE]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["keyRole", "vitallyUser", "label", "name", "email", "id", "month", "amount"])
            | st.text(max_size=6),
            inner,
            max_size=3,
        )
    ),
    max_leaves=6,
)
ACCOUNT_KEYS = ["id", "name", "updatedAt", "createdAt", "mrr", "externalId", "traits", "keyRoles", "segments"]
LEAD_KEYS = ["Id", "SystemModstamp", *BAD_LEAD_FIELDS, "Vitally_Account_Id__c", "Sync_Key__c", "Routing_Rule__c"]


@st.composite
def any_account(draw: st.DrawFn) -> dict[str, Any]:
    """Anything JSON in any field, near-valid most of the time so that parsing gets deep."""
    base = {"id": "acc_1", "name": "A", "updatedAt": STAMPS[0], "traits": {}}
    raw = {**base, **draw(st.dictionaries(st.sampled_from(ACCOUNT_KEYS), json_values, max_size=2))}
    if isinstance(raw["traits"], dict):
        keys = st.sampled_from(sorted(DEFAULT_TRAIT_KEYS.values()))
        raw["traits"] = {**raw["traits"], **draw(st.dictionaries(keys, json_values, max_size=3))}
    return raw


@settings(max_examples=1000, deadline=None, database=None, derandomize=True)
@given(raw=any_account())
def test_records_parse_account_raises_only_record_error(raw: dict[str, Any]) -> None:
    generated_records["parser"] += 1
    try:
        account = parse_account(raw)
    except RecordError as error:
        assert error.field in ACCOUNT_KEYS or error.field.startswith("traits."), error
        assert error.field == "id" or error.record_id == raw["id"]
    else:
        assert account.id == raw["id"]


@settings(max_examples=600, deadline=None, database=None, derandomize=True)
@given(extra=st.dictionaries(st.sampled_from(LEAD_KEYS), json_values, max_size=3))
def test_records_parse_lead_raises_only_record_error(extra: dict[str, Any]) -> None:
    generated_records["parser"] += 1
    raw = {"Id": "00Q000000000001AAA", "SystemModstamp": SF_STAMPS[0], **extra}
    try:
        lead = parse_lead(raw)
    except RecordError as error:
        assert error.field in LEAD_KEYS, error
    else:
        assert lead.id == raw["Id"]


def _one_bad(
    account: Mapping[str, Any] | None = None,
    lead: Mapping[str, Any] | None = None,
    user: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], str, str]:
    """A seed with one good account and lead, and a malformed one of each given; their ids."""
    good_account = {"name": "A", "createdAt": "2025-01-01T00:00:00.000Z", "updatedAt": STAMPS[0], "traits": {}}
    good_lead = {"LastName": "L", "Company": "C", "Status": "Working", "SystemModstamp": SF_STAMPS[0]}
    seed, accounts, leads = _book(
        "bad",
        [(good_account, None), ({**good_account, **(account or {})}, "x")],
        [(good_lead, None), ({**good_lead, **(lead or {})}, "x")],
    )
    if user is not None:
        seed["salesforce"]["User"] = [{**SALES_TEAM[0], **user}, *SALES_TEAM[1:]]
    return seed, list(accounts)[1], list(leads)[1]


def _cycles(seed: dict[str, Any], count: int) -> list[CycleReport]:
    with Sandbox(seed, now=T0) as sandbox:
        vitally, salesforce = _clients(sandbox.url)
        state = StateDB.memory()
        return [_cycle(state, vitally, salesforce) for _ in range(count)]


def test_cycle_vitally_account_without_text_updated_at_is_reported_once() -> None:
    seed, bad, _ = _one_bad(account={"updatedAt": 12345})
    first, second = _cycles(seed, 2)
    assert [(e.record_id, e.field) for e in first.record_errors] == [(bad, "updatedAt")]
    assert second.record_errors == []


def test_cycle_salesforce_unreadable_lead_modstamp_is_reported_not_fatal() -> None:
    # One cycle only: the sandbox's SOQL cannot compare such a stamp in the next cycle's WHERE
    # (400 INVALID_QUERY_FILTER_OPERATOR); a real org never holds one.
    seed, _, bad = _one_bad(lead={"SystemModstamp": "not a date"})
    (report,) = _cycles(seed, 1)
    assert [(e.record_id, e.field) for e in report.record_errors] == [(bad, "SystemModstamp")]
    assert report.counts["leads_evaluated"] == 1


def test_cycle_salesforce_unreadable_user_modstamp_is_reported_not_fatal() -> None:
    seed, _, _ = _one_bad(user={"SystemModstamp": "zzz not a date"})
    (report,) = _cycles(seed, 1)
    assert [(e.system, e.field) for e in report.record_errors] == [("salesforce User", "SystemModstamp")]
    assert report.counts["leads_evaluated"] == 2


def test_records_salesforce_objects_with_an_unreadable_modstamp_are_malformed() -> None:
    for parse, sobject in ((parse_user, "User"), (parse_opportunity, "Opportunity"), (parse_sf_account, "Account")):
        with pytest.raises(RecordError) as raised:
            parse({"Id": "001x", "SystemModstamp": "zzz not a date"})
        assert (raised.value.system, raised.value.field) == (f"salesforce {sobject}", "SystemModstamp")
        assert parse({"Id": "001x"}).id == "001x"  # not selected: nothing to check


ID_SUFFIXES = ["", "'", "%", "_x", "\\", "é", " sp", "%2F", "😀"]


def _book(
    tag: str, accounts: list[tuple[dict[str, Any], str | None]], leads: list[tuple[dict[str, Any], str | None]]
) -> tuple[dict[str, Any], dict[str, str | None], dict[str, str | None]]:
    """The seed, and per record id the field that must be reported (None: well-formed)."""
    expected_accounts: dict[str, str | None] = {}
    expected_leads: dict[str, str | None] = {}
    vitally = []
    for n, (account, field) in enumerate(accounts):
        record_id = f"acc_{tag}_{n}{ID_SUFFIXES[n % len(ID_SUFFIXES)]}"
        vitally.append({"id": record_id, **account})
        expected_accounts[record_id] = field
    sf = []
    for n, (lead, field) in enumerate(leads):
        record_id = case_safe_id(f"00Q{tag[:4]:>4}{n:08d}".replace(" ", "0"))
        sf.append({"Id": record_id, **lead})
        expected_leads[record_id] = field
    seed = {
        "vitally": {"accounts": vitally, "users": []},
        "salesforce": {"User": SALES_TEAM, "Lead": sf, "Opportunity": [], "Account": []},
    }
    return json.loads(json.dumps(seed)), expected_accounts, expected_leads


def _reported(report: CycleReport) -> Counter[tuple[str, str]]:
    return Counter((error.record_id, error.field) for error in report.record_errors)


def _assert_reported(
    reported: Counter[tuple[str, str]], malformed: Mapping[str, str], records: Mapping[str, Any]
) -> None:
    """Each malformed record exactly once, with its field; nothing else. A compact message: a
    batch's repr runs to megabytes."""
    expected = Counter(malformed.items())
    if reported == expected:
        return
    missing = sorted(set(expected) - set(reported))[:3]
    unexpected = sorted(set(reported) - set(expected))[:3]
    repeated = sorted(k for k, n in reported.items() if n > 1)[:3]
    shown = {rid: repr(records.get(rid))[:400] for rid, _ in missing + unexpected}
    pytest.fail(f"missing {missing}, unexpected {unexpected}, repeated {repeated}; records {shown}")


# Hypothesis keeps one example within a budget of choices: 140 records fit, 160 do not.
BATCH_ACCOUNTS = 90
BATCH_LEADS = 50
ENGINE_EXAMPLES = int(os.environ.get("CHAOS_EXAMPLES", "72"))  # 72 x 140 = 10,080 records
DERANDOMIZE = "CHAOS_RANDOM" not in os.environ  # set it to explore beyond the fixed examples


@pytest.mark.timeout(240)
# No shrinking: a batch of 140 records shrinks for minutes; the failure's traceback and the
# assertion's diff name the record and the field.
@settings(
    max_examples=ENGINE_EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    verbosity=Verbosity.quiet,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(
    accounts=st.lists(vitally_case(), min_size=BATCH_ACCOUNTS, max_size=BATCH_ACCOUNTS),
    leads=st.lists(lead_case(), min_size=BATCH_LEADS, max_size=BATCH_LEADS),
)
def test_cycle_malformed_records_reported_once_and_the_rest_processed(
    accounts: list[tuple[dict[str, Any], str | None]], leads: list[tuple[dict[str, Any], str | None]]
) -> None:
    generated_records["cycle"] += len(accounts) + len(leads)
    seed, expected_accounts, expected_leads = _book("hyp", accounts, leads)
    with Sandbox(seed, now=T0) as sandbox:
        vitally, salesforce = _clients(sandbox.url)
        state = StateDB.memory()
        first = _cycle(state, vitally, salesforce)
        for fmt in ("json", "csv"):  # as the CLI prints it: strict UTF-8 (a plan is readable until the next cycle)
            render_plan(first.plan, fmt, io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
        second = _cycle(state, vitally, salesforce)

    malformed = {rid: f for rid, f in {**expected_accounts, **expected_leads}.items() if f is not None}
    generated_records["cycle (malformed)"] += len(malformed)
    records = {r.get("id") or r.get("Id"): r for r in [*seed["vitally"]["accounts"], *seed["salesforce"]["Lead"]]}
    _assert_reported(_reported(first), malformed, records)
    assert _reported(second) == Counter()  # unchanged records are not reported again
    good_accounts = [rid for rid, f in expected_accounts.items() if f is None]
    good_leads = [rid for rid, f in expected_leads.items() if f is None]
    assert sorted(a.id for a in iter_accounts(state, CONFIG)) == sorted(good_accounts)
    assert first.counts["accounts_evaluated"] == len(good_accounts)
    assert first.counts["leads_evaluated"] == len(good_leads)
    decided = {row[0] for row in state.db.execute("SELECT record FROM decisions WHERE run_id = ?", [first.run_id])}
    assert not decided & malformed.keys()


def _cli(
    config: Path, state: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(config, state, *args, env=env, timeout=120)


def _config_file(directory: Path, url: str, replacements: Mapping[str, str] | None = None) -> Path:
    text = (ROOT / "config.example.toml").read_text().replace("http://127.0.0.1:8765", url)
    text = text.replace("max_attempts = 5", "max_attempts = 1")
    for old, new in (replacements or {}).items():
        assert old in text
        text = text.replace(old, new)
    path = directory / "config.toml"
    path.write_text(text)
    return path


def _batches(count: int) -> tuple[list[tuple[dict[str, Any], str | None]], list[tuple[dict[str, Any], str | None]]]:
    """`count` Hypothesis batches of accounts and leads, joined (for one run of the real CLI)."""
    accounts: list[tuple[dict[str, Any], str | None]] = []
    leads: list[tuple[dict[str, Any], str | None]] = []

    @settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(
        batch_accounts=st.lists(vitally_case(), min_size=BATCH_ACCOUNTS, max_size=BATCH_ACCOUNTS),
        batch_leads=st.lists(lead_case(), min_size=BATCH_LEADS, max_size=BATCH_LEADS),
    )
    def collect(
        batch_accounts: list[tuple[dict[str, Any], str | None]], batch_leads: list[tuple[dict[str, Any], str | None]]
    ) -> None:
        accounts.extend(batch_accounts)
        leads.extend(batch_leads)

    collect()
    return accounts, leads


@pytest.mark.timeout(120)
def test_cli_reports_each_malformed_record_once_on_stderr(tmp_path: Path) -> None:
    accounts, leads = _batches(3)
    generated_records["cli"] += len(accounts) + len(leads)
    seed, expected_accounts, expected_leads = _book("cli", accounts, leads)
    malformed = {rid: f for rid, f in {**expected_accounts, **expected_leads}.items() if f is not None}
    generated_records["cli (malformed)"] += len(malformed)
    assert len(malformed) > 60  # Hypothesis's first, simplest examples are part of the mix
    state = tmp_path / "state.db"
    with Sandbox(seed, now=T0) as sandbox:
        config = _config_file(tmp_path, sandbox.url)
        first = _cli(config, state, "run", "--format", "json", "--now", NOW.isoformat())
        second = _cli(config, state, "run", "--format", "json", "--now", NOW.isoformat())

    assert first.returncode in (0, 1) and "Traceback" not in first.stderr, first.stderr[-3000:]
    reported = [RECORD_ERROR.match(line) for line in first.stderr.splitlines() if line.startswith("record error: ")]
    assert all(reported), [line for line in first.stderr.splitlines() if line.startswith("record error: ")][:5]
    pairs = Counter((m.group(2), m.group(3)) for m in reported if m)
    assert pairs == Counter(malformed.items())
    assert f"{len(malformed)} malformed record(s)" in first.stderr
    for line in first.stdout.splitlines():
        assert json.loads(line)["record"] not in malformed
    assert second.returncode in (0, 1) and "Traceback" not in second.stderr, second.stderr[-3000:]
    assert "record error:" not in second.stderr
    assert "0 malformed record(s)" in second.stderr


# -- item 8: secrets ------------------------------------------------------------------------------


def _forms(secret: str) -> list[str]:
    """The secret as it could leak: verbatim, in a Basic header, URL-quoted, JSON-escaped."""
    basic = base64.b64encode(f"{secret}:".encode()).decode()
    return [secret, basic[:-4] if len(basic) > 8 else basic, quote(secret, safe=""), json.dumps(secret)[1:-1]]


LEAK_WINDOW = 10  # any 10 consecutive characters of a random secret count as a leak


def _assert_nowhere(secrets_: list[str], *texts: str | bytes) -> None:
    haystacks = [text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape") for text in texts]
    for secret in secrets_:
        for form in _forms(secret):
            for start in range(max(1, len(form) - LEAK_WINDOW + 1)):
                piece = form[start : start + LEAK_WINDOW].encode()
                for haystack in haystacks:
                    assert piece not in haystack, f"a secret leaked ({form[:4]}…, characters {start}+)"


def _state_bytes(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (state, Path(f"{state}-wal"), Path(f"{state}-shm")) if p.exists())


def _assert_owner_only(state: Path) -> None:
    assert state.exists()
    for path in (state, Path(f"{state}-wal"), Path(f"{state}-shm")):
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))


@pytest.fixture
def secret_sandbox() -> Iterator[Sandbox]:
    seed = generate_book(30, seed=5, now=T0)
    with Sandbox(seed, now=T0) as sandbox:
        yield sandbox


SF_CLIENT_CREDENTIALS = {
    'token_env = "SALESFORCE_TOKEN"': 'client_id_env = "SALESFORCE_CLIENT_ID"\n'
    'client_secret_env = "SALESFORCE_CLIENT_SECRET"',
}


@pytest.mark.parametrize("refused", ["vitally_api_key", "sf_token", "sf_client_secret"])
def test_cli_debug_log_of_refused_credentials_holds_no_secret(
    secret_sandbox: Sandbox, tmp_path: Path, refused: str
) -> None:
    env = {
        "CRM_SYNC_LOG_LEVEL": "DEBUG",
        "VITALLY_API_KEY": "sk_" + secrets.token_urlsafe(32),
        "SALESFORCE_TOKEN": "00D" + secrets.token_urlsafe(40),
        "SALESFORCE_CLIENT_ID": "3MVG" + secrets.token_urlsafe(30),
        "SALESFORCE_CLIENT_SECRET": secrets.token_urlsafe(40),
    }
    secret_sandbox.configure({refused: "the-expected-" + secrets.token_hex(8)})
    if refused == "sf_client_secret":
        config = _config_file(tmp_path, secret_sandbox.url, SF_CLIENT_CREDENTIALS)
        secret_sandbox.configure(sf_client_id=env["SALESFORCE_CLIENT_ID"])
    else:
        config = _config_file(tmp_path, secret_sandbox.url)
    state = tmp_path / "state.db"

    result = _cli(config, state, "run", "--format", "json", "--now", NOW.isoformat(), env=env)

    assert result.returncode == 3, result.stderr[-2000:]
    assert " DEBUG urllib3." in result.stderr  # the switch really turned DEBUG on
    leaked = [env[k] for k in env if k != "CRM_SYNC_LOG_LEVEL"]
    _assert_nowhere(leaked, result.stdout, result.stderr, _state_bytes(state))
    _assert_owner_only(state)


def test_cli_debug_log_of_a_malformed_salesforce_answer_holds_no_secret(
    secret_sandbox: Sandbox, tmp_path: Path
) -> None:
    env = {
        "CRM_SYNC_LOG_LEVEL": "DEBUG",
        "VITALLY_API_KEY": "sk_" + secrets.token_urlsafe(32),
        "SALESFORCE_TOKEN": "00D" + secrets.token_urlsafe(40),
    }
    # A 200 whose body is an error array instead of {records, done}: an answer of the wrong shape.
    secret_sandbox.add_fault("status", method="GET", path_prefix="/services/data/", status=200, count=50)
    config = _config_file(tmp_path, secret_sandbox.url)
    state = tmp_path / "state.db"

    result = _cli(config, state, "run", "--now", NOW.isoformat(), env=env)

    assert result.returncode == 3, result.stderr[-3000:]
    assert "error: salesforce query: expected {records, done}" in result.stderr
    assert "Traceback" not in result.stderr
    _assert_nowhere(
        [env["VITALLY_API_KEY"], env["SALESFORCE_TOKEN"]], result.stdout, result.stderr, _state_bytes(state)
    )
    _assert_owner_only(state)


@pytest.fixture
def closing_port() -> Iterator[int]:
    """A port that accepts connections and closes them at once, without a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_cycle_exception_from_a_closing_port_holds_no_secret(closing_port: int, tmp_path: Path) -> None:
    key, token = "sk_" + secrets.token_urlsafe(32), "00D" + secrets.token_urlsafe(40)
    url = f"http://127.0.0.1:{closing_port}"
    state_path = tmp_path / "state.db"
    state = StateDB.open(state_path)
    vitally = VitallyClient(
        VitallySettings(base_url=url, api_key=key, max_attempts=2, timeout_seconds=2), sleep=_no_sleep
    )
    salesforce = SalesforceClient(
        SalesforceSettings(instance_url=url, token=token, max_attempts=2, timeout_seconds=2), sleep=_no_sleep
    )
    with pytest.raises(Exception) as raised:
        _cycle(state, vitally, salesforce)
    state.close()
    text = "".join(traceback.format_exception(raised.value))
    _assert_nowhere([key, token], text, repr(raised.value), repr(vitally), repr(salesforce), _state_bytes(state_path))
    _assert_owner_only(state_path)


def test_cli_debug_log_of_a_closing_port_holds_no_secret(closing_port: int, tmp_path: Path) -> None:
    env = {
        "CRM_SYNC_LOG_LEVEL": "DEBUG",
        "VITALLY_API_KEY": "sk_" + secrets.token_urlsafe(32),
        "SALESFORCE_TOKEN": "00D" + secrets.token_urlsafe(40),
    }
    config = _config_file(tmp_path, f"http://127.0.0.1:{closing_port}")
    state = tmp_path / "state.db"

    result = _cli(config, state, "run", "--now", NOW.isoformat(), env=env)

    assert result.returncode == 3, result.stderr[-2000:]
    assert " DEBUG " in result.stderr
    _assert_nowhere(
        [env["VITALLY_API_KEY"], env["SALESFORCE_TOKEN"]], result.stdout, result.stderr, _state_bytes(state)
    )
    _assert_owner_only(state)


def test_cli_unknown_log_level_is_a_configuration_error(tmp_path: Path) -> None:
    result = _cli(
        _config_file(tmp_path, "http://127.0.0.1:9"), tmp_path / "s.db", "--dry-run", env={"CRM_SYNC_LOG_LEVEL": "LOUD"}
    )
    assert result.returncode == 2
    assert "CRM_SYNC_LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'" in result.stderr


# -- item 9: cursor boundaries --------------------------------------------------------------------

TIE = "2026-11-21T08:00:00.000Z"
SF_TIE = "2026-11-21T08:00:00.000+0000"
TIED = 300
LATE = "acc_tie_late"
LATE_LEAD = case_safe_id("00QTIELATE00000")


def _tied_book() -> dict[str, Any]:
    accounts = [
        {
            "id": f"acc_tie_{n:03d}",
            "name": f"Tied {n}",
            "createdAt": "2025-01-01T00:00:00.000Z",
            "updatedAt": TIE,
            "mrr": 50.0,
            "traits": {"country": "DE"},
            "keyRoles": [],
            "segments": [],
        }
        for n in range(TIED)
    ]
    leads = [
        {
            "Id": case_safe_id(f"00QTIE{n:09d}"),
            "LastName": f"Tied {n}",
            "Company": f"Tied Co {n}",
            "Status": "Working",
            "IsConverted": False,
            "OwnerId": SALES_TEAM[0]["Id"],
            "CreatedDate": SF_TIE,
            "SystemModstamp": SF_TIE,
        }
        for n in range(TIED)
    ]
    return {
        "vitally": {"accounts": accounts, "users": []},
        "salesforce": {"User": SALES_TEAM, "Lead": leads, "Opportunity": [], "Account": []},
    }


def _once_after_first_page(path: str, action: Callable[[], None]) -> Callable[..., None]:
    """A requests response hook that runs `action` once, after the first page of `path`."""
    fired: list[bool] = []

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if not fired and response.request.method == "GET" and path in (response.request.url or ""):
            fired.append(True)
            action()

    return hook


def test_cycle_vitally_tied_updated_at_across_pages_with_a_change_while_paging() -> None:
    with Sandbox(_tied_book(), now=T0) as sandbox:
        person = requests.Session()
        person.auth = ("someone", "")
        ids = [f"acc_tie_{n:03d}" for n in range(TIED)]
        order = [
            a["id"]
            for a in requests.get(
                f"{sandbox.url}/resources/accounts", params={"limit": 100}, auth=("k", ""), timeout=5
            ).json()["results"]
        ]
        seen, unseen = order[10], next(i for i in reversed(ids) if i not in order)  # page 1 / a later page

        def edit() -> None:
            sandbox.set_clock(advance_seconds=60)
            for account_id in (seen, unseen):
                person.put(
                    f"{sandbox.url}/resources/accounts/{account_id}", json={"traits": {"employee_count": 77}}, timeout=5
                ).raise_for_status()

        session = make_session(sandbox.url, 10)
        session.hooks["response"].append(_once_after_first_page("/resources/accounts", edit))
        vitally = VitallyClient(
            VitallySettings(base_url=sandbox.url, api_key="test-key", max_attempts=1), session=session, sleep=_no_sleep
        )
        state = StateDB.memory()
        spy = _Spy(state)
        reports = []
        for cycle in range(3):
            spy.cycle()
            reports.append(_cycle(state, vitally, None, dry_run=True))
            if cycle == 0:  # a record that becomes visible late, stamped exactly at the watermark
                sandbox.load({"vitally": {"accounts": [{**_tied_book()["vitally"]["accounts"][0], "id": LATE}]}})
        latest = {a["id"]: a["updatedAt"] for a in sandbox.state()["vitally"]["accounts"]}

    assert state.account_versions() == latest  # none missed: every account at its latest version
    processed = Counter(pair for cycle in spy.cycles for pair in cycle)
    assert [pair for pair, n in processed.items() if n > 1] == []  # no version handled twice
    assert {account_id for account_id, _ in processed} == {*ids, LATE}
    assert len(spy.cycles[0]) == TIED - 1  # `unseen` jumped ahead of the cursor: not read in cycle 1 ...
    assert sorted(spy.cycles[1]) == sorted((i, latest[i]) for i in (seen, unseen, LATE))  # ... but in cycle 2
    assert spy.cycles[2] == []
    # The closed bound re-reads the tie and drops what it holds; then only the newest two remain.
    assert (reports[1].counts["accounts_read"], reports[1].counts["accounts_unchanged"]) == (TIED + 1, TIED - 2)
    newest = sum(1 for stamp in latest.values() if stamp == max(latest.values()))
    assert (reports[2].counts["accounts_read"], reports[2].counts["accounts_unchanged"]) == (newest, newest)
    assert all((state.account_raw(i) or {}).get("traits", {}).get("employee_count") == 77 for i in (seen, unseen))


def test_cycle_salesforce_tied_modstamp_across_pages_with_a_change_while_paging() -> None:
    # Salesforce's clock stands 2 minutes after the tied stamp: the late lead below commits within
    # the look-back window (`lookback_seconds` = 300), which is what the window is for.
    with Sandbox(_tied_book(), now=datetime(2026, 11, 21, 8, 2, tzinfo=UTC)) as sandbox:
        sandbox.configure(sf_page_size=100)
        lead_ids = [case_safe_id(f"00QTIE{n:09d}") for n in range(TIED)]
        seen, unseen = lead_ids[5], lead_ids[250]
        person = requests.Session()
        person.headers["Authorization"] = "Bearer person"

        def edit() -> None:
            sandbox.set_clock(advance_seconds=60)
            for lead_id in (seen, unseen):
                person.patch(
                    f"{sandbox.url}/services/data/v59.0/sobjects/Lead/{lead_id}",
                    json={"Title": "Changed while paging"},
                    timeout=5,
                ).raise_for_status()

        session = make_session(sandbox.url, 10)
        session.hooks["response"].append(_once_after_first_page("/query", edit))
        salesforce = SalesforceClient(
            SalesforceSettings(instance_url=sandbox.url, token="test-token", max_attempts=1),
            session=session,
            sleep=_no_sleep,
        )
        vitally = VitallyClient(
            VitallySettings(base_url=sandbox.url, api_key="test-key", max_attempts=1), sleep=_no_sleep
        )
        state = StateDB.memory()
        spy = _Spy(state)
        reports = []
        for cycle in range(3):
            spy.cycle()
            reports.append(_cycle(state, vitally, salesforce, dry_run=True))
            if cycle == 0:  # a lead that becomes visible late, stamped exactly at the cursor
                late = {**_tied_book()["salesforce"]["Lead"][0], "Id": LATE_LEAD}
                sandbox.load({"salesforce": {"Lead": [late]}})
        latest = {lead["Id"]: lead["SystemModstamp"] for lead in sandbox.state()["salesforce"]["Lead"]}

    assert state.sf_versions("Lead") == latest
    assert all((state.sf_raw("Lead", i) or {}).get("Title") == "Changed while paging" for i in (seen, unseen))
    leads = {*lead_ids, LATE_LEAD}
    processed = Counter(pair for cycle in spy.cycles for pair in cycle if pair[0] in leads)
    assert [pair for pair, n in processed.items() if n > 1] == []
    assert {lead_id for lead_id, _ in processed} == leads
    assert sorted(p for p in spy.cycles[1] if p[0] in leads) == sorted(
        (i, latest[i]) for i in (seen, unseen, LATE_LEAD)
    )
    assert [p for p in spy.cycles[2] if p[0] in leads] == []
    assert reports[0].counts["sf_lead_read"] == TIED  # three pages of 100 in the first cycle


# -- item 10: our own writes come back ------------------------------------------------------------


def test_cycle_own_writes_echo_back_and_the_next_cycle_sends_and_plans_nothing() -> None:
    with Sandbox(generate_book(150, seed=11, now=T0), now=T0) as sandbox:
        vitally, salesforce = _clients(sandbox.url)
        state = StateDB.memory()
        before = {a["id"]: a["updatedAt"] for a in sandbox.state()["vitally"]["accounts"]}
        first = _cycle(state, vitally, salesforce)
        sent = [c for c in sandbox.calls() if c["method"] != "GET"]
        after = {a["id"]: a["updatedAt"] for a in sandbox.state()["vitally"]["accounts"]}
        sandbox.set_clock(advance_seconds=120)
        sandbox.reset()
        second = _cycle(state, vitally, salesforce)
        echoes = [c for c in sandbox.calls() if c["method"] != "GET"]

    assert first.counts["applied"] > 20 and len(sent) > 20, first.counts
    assert {call["system"] for call in sent} == {"vitally", "salesforce"}  # both echo back
    assert sum(1 for i in before if after[i] != before[i]) >= 20  # our PUTs bumped updatedAt
    assert list(second.plan) == []
    assert echoes == []
    assert second.counts["applied"] == 0 and second.conflicts == []
