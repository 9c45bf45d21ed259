"""Which leads count as disqualified is one setting, `[rules.episodes] disqualified_statuses`, for
every reader of the mirror.

The handbook's instant scheduler: "If an account has had a lead disqualified within the last
month, we no longer show the scheduler" (lead-routing-and-scoring.md). The episodes' cool-off
already read the configured statuses, which include `Closed - Not Converted`: what Salesforce's
standard Lead Status picklist offers for a lead that went nowhere (Setup > Object Manager > Lead >
Fields > Lead Status: Open - Not Contacted, Working - Contacted, Closed - Converted, Closed - Not
Converted). The Salesforce facts behind the scheduler's guard had their own fixed pair,
`Disqualified` and `Unqualified`: in an org on the standard picklist a disqualification never hid
the scheduler, and a status an operator added to the setting was ignored there.

Records shaped as the REST API's query `records` (attributes stripped), as in test_facts_scoped.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.model import Lead
from core.records import parse_lead
from rules import Policy, evaluate_lead
from rules.context import LeadContext
from rules.policy import DISQUALIFIED_STATUSES, EpisodePolicy
from state import StateDB
from sync.facts import SalesforceFacts, company_key

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
STAMP = "2026-11-10T10:00:00.000+0000"


def _lead(record_id: str, company: str, status: str) -> dict[str, Any]:
    raw = {
        "Id": record_id,
        "SystemModstamp": STAMP,
        "LastName": "Doe",
        "Company": company,
        "Status": status,
        "LeadSource": "Web",
        "IsConverted": False,
        "CreatedDate": "2026-11-01T10:00:00.000+0000",
    }
    return {"object": "Lead", "id": record_id, "modstamp": STAMP, "raw": json.dumps(raw), "error": None}


@pytest.fixture
def state() -> StateDB:
    state = StateDB.memory()
    state.upsert_sf(
        [
            _lead("00QA", "Acme", "Closed - Not Converted"),  # the standard picklist's disqualification
            _lead("00QB", "Globex", "Disqualified"),
            _lead("00QC", "Initech", "Spam"),  # an org's own status, meaning disqualified only if configured
            _lead("00QD", "Umbrella", "Working - Contacted"),  # open
        ]
    )
    return state


def test_the_default_statuses_are_the_episodes_own() -> None:
    assert EpisodePolicy().disqualified_statuses == DISQUALIFIED_STATUSES
    assert "Closed - Not Converted" in DISQUALIFIED_STATUSES


@pytest.mark.parametrize("lazy", [False, True])
def test_a_standard_picklist_disqualification_is_a_companys_disqualification(state: StateDB, lazy: bool) -> None:
    for facts in (SalesforceFacts.load(state, lazy=lazy), SalesforceFacts.load_for(state, [], ["00QA", "00QB"])):
        assert facts.company_disqualified_at("acme") == date(2026, 11, 10)
        assert facts.company_disqualified_at("Globex") == date(2026, 11, 10)
        assert facts.company_disqualified_at("Umbrella") is None
        assert facts.company_disqualified_at("Initech") is None  # "Spam" is not configured


@pytest.mark.parametrize("lazy", [False, True])
def test_the_configured_statuses_are_the_ones_read(state: StateDB, lazy: bool) -> None:
    policy = Policy(episodes=EpisodePolicy(disqualified_statuses=("Spam",)))
    whole = SalesforceFacts.load(state, lazy=lazy, policy=policy)
    scoped = SalesforceFacts.load_for(state, [], ["00QA", "00QC"], policy=policy)
    for facts in (whole, scoped):
        assert facts.company_disqualified_at("Initech") == date(2026, 11, 10)
        assert facts.company_disqualified_at("Acme") is None


def test_the_instant_scheduler_is_hidden_after_a_standard_picklist_disqualification(state: StateDB) -> None:
    facts = SalesforceFacts.load(state)
    policy = Policy()
    request = strong_demo_request(Company="Acme", Vitally_Account_Id__c=None)
    hidden = {
        d.rule: d for d in evaluate_lead(request, LeadContext(facts.company_disqualified_at("Acme")), policy, NOW)
    }
    shown = {d.rule: d for d in evaluate_lead(replace(request, company="Umbrella"), LeadContext(None), policy, NOW)}
    assert shown["demo.instant_scheduler"].fired, shown["demo.instant_scheduler"].reason
    assert not hidden["demo.instant_scheduler"].fired
    assert "disqualified" in hidden["demo.instant_scheduler"].reason


@pytest.mark.parametrize(
    ("stored", "configured"),
    [
        ("Disqualified\t", "Disqualified"),
        ("Disqualified\u00a0", "Disqualified"),
        ("DISQUALIFIÉ", "Disqualifié"),
        ("disqualified", "Disqualified"),
    ],
)
def test_every_reader_of_the_mirror_finds_the_same_disqualified_leads(stored: str, configured: str) -> None:
    """The eager load (a cold or `--full` cycle) parses every lead and compares in Python; the lazy
    load (an incremental cycle) and `load_for` (an event's mini-cycle) search in SQL. They found
    different leads for a status with a tab, a no-break space or a non-ASCII capital (found by a
    review), so the scheduler was hidden in one kind of cycle and shown in the other."""
    state = StateDB.memory()
    state.upsert_sf([_lead("00QA", "Acme", stored)])
    policy = Policy(episodes=EpisodePolicy(disqualified_statuses=(configured,)))
    eager = SalesforceFacts.load(state, lazy=False, policy=policy).company_disqualified_at("Acme")
    lazy = SalesforceFacts.load(state, lazy=True, policy=policy).company_disqualified_at("Acme")
    scoped = SalesforceFacts.load_for(state, [], ["00QA"], policy=policy).company_disqualified_at("Acme")
    assert eager == lazy == scoped == date(2026, 11, 10)


@pytest.mark.parametrize("lazy", [False, True])
def test_statuses_compare_as_every_status_does(lazy: bool) -> None:
    """The scheduler's company check compares statuses as the episodes and the closed-lead checks
    do: case-insensitively, spaces around them ignored. An unrestricted picklist or an import can
    store `disqualified` or `Bad Fit `; a config can list `bad fit`. Before, the SQL and the facts
    compared exactly, so the same lead closed the episode and left the scheduler shown."""
    state = StateDB.memory()
    state.upsert_sf(
        [
            _lead("00QA", "Acme", "disqualified"),
            _lead("00QB", "Globex", " Bad Fit "),
            _lead("00QC", "Initech", "DISQUALIFIÉ"),  # spelled as configured, capitals and all
            _lead("00QD", "Umbrella", "Working - Contacted"),
        ]
    )
    policy = Policy(episodes=EpisodePolicy(disqualified_statuses=("Disqualified", "bad fit", "DISQUALIFIÉ")))
    whole = SalesforceFacts.load(state, lazy=lazy, policy=policy)
    scoped = SalesforceFacts.load_for(state, [], ["00QA", "00QB", "00QC", "00QD"], policy=policy)
    for facts in (whole, scoped):
        assert facts.company_disqualified_at("Acme") == date(2026, 11, 10)
        assert facts.company_disqualified_at("Globex") == date(2026, 11, 10)
        assert facts.company_disqualified_at("Initech") == date(2026, 11, 10)
        assert facts.company_disqualified_at("Umbrella") is None


@pytest.mark.parametrize("lazy", [False, True])
def test_a_lead_the_triage_dropped_as_spam_is_not_a_companys_disqualification(lazy: bool) -> None:
    """lead-routing-and-scoring.md, Demo booking: "'spam' are dropped", and "If an account has had a
    lead disqualified within the last month, we no longer show the scheduler". crm-sync drops spam
    by setting the spam status (`Disqualified`) with `Classification__c` = spam; the cool-off
    (rules/episodes.py) already reads such a lead as dropped, not disqualified by a person. The
    scheduler's company check counted it, so the company's real demo request got no scheduler for
    a month. The spam lead is the Lead the triage's own writes leave (Status, Classification__c,
    no owner); the classification in any case, as the episodes compare it. A lead a person
    disqualified stays a disqualification, in every path: `load` eager and lazy, and `load_for`."""
    spam = json.loads(_lead("00QA", "Acme", "Disqualified")["raw"]) | {"Classification__c": "spam", "OwnerId": None}
    shouted = json.loads(_lead("00QB", "Globex", "Disqualified")["raw"]) | {"Classification__c": "Spam "}
    person = json.loads(_lead("00QC", "Initech", "Disqualified")["raw"]) | {"Classification__c": "sales"}
    rows = [
        {"object": "Lead", "id": raw["Id"], "modstamp": STAMP, "raw": json.dumps(raw), "error": None}
        for raw in (spam, shouted, person)
    ]
    state = StateDB.memory()
    state.upsert_sf(rows)
    whole = SalesforceFacts.load(state, lazy=lazy)
    scoped = SalesforceFacts.load_for(state, [], ["00QA", "00QB", "00QC"])
    for facts in (whole, scoped):
        assert facts.company_disqualified_at("Acme") is None
        assert facts.company_disqualified_at("Globex") is None
        assert facts.company_disqualified_at("Initech") == date(2026, 11, 10)
    # The fingerprint of a company's disqualified leads is the same, eager or lazy, spam included
    # (a changed classification changes the answer).
    eager, lazily = SalesforceFacts.load(state), SalesforceFacts.load(state, lazy=True)
    assert eager.disqualified_fingerprint("Acme") == lazily.disqualified_fingerprint("Acme") != ""


@pytest.mark.parametrize(
    ("disqualified", "asking"),
    [
        ("Acme, Inc.", "ACME Inc"),
        ("Acme Inc", "Acme"),
        ("Acme Co., Ltd.", "acme"),
        ("Müller GmbH", "MÜLLER"),
        ("Northwind S.A.", "Northwind SA"),
        ("Initech  LLC", "Initech, L.L.C."),
    ],
)
def test_a_company_is_the_same_whatever_its_punctuation_and_legal_form(disqualified: str, asking: str) -> None:
    """`Company` is free text on a Lead (the REST API's Lead field reference: a string of 255), and
    web forms and imports spell one company several ways. The handbook's "if an account has had a
    lead disqualified within the last month" is about the company, so "Acme, Inc." disqualified
    hides the scheduler from "ACME Inc" (before, only the case was ignored: found by a review).
    Every reader of the mirror agrees: the eager and lazy loads and an event's `load_for`."""
    state = StateDB.memory()
    state.upsert_sf([_lead("00QA", disqualified, "Disqualified")])
    eager = SalesforceFacts.load(state, lazy=False).company_disqualified_at(asking)
    lazy = SalesforceFacts.load(state, lazy=True).company_disqualified_at(asking)
    scoped_state = StateDB.memory()
    scoped_state.upsert_sf([_lead("00QA", disqualified, "Disqualified"), _lead("00QZ", asking, "Open - Not Contacted")])
    scoped = SalesforceFacts.load_for(scoped_state, [], ["00QZ"]).company_disqualified_at(asking)
    assert eager == lazy == scoped == date(2026, 11, 10)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Acme, Inc.", "acme"),
        ("Acme Corporation", "acme"),
        ("Acme Consulting", "acme consulting"),  # not a legal form: another company
        ("Inc.", "inc"),  # nothing but a legal form: kept
        ("—", "—"),  # no letter or digit: only case folded, never the empty key
        ("A B C", "abc"),
        ("I.B.M. Corp", "ibm"),
        ("W X Y Inc", "wxy"),
        ("Ａｃｍｅ Ｉｎｃ", "acme"),  # full-width, as some forms send it
        ("[not provided]", ""),  # Web-to-Lead's blank Company (Salesforce Knowledge Article 000171026)
        ("N/A", ""),
        ("Unknown", ""),
        ("Self-employed", ""),
    ],
)
def test_company_key(name: str, key: str) -> None:
    assert company_key(name) == key
    assert company_key(company_key(name)) == company_key(name)  # the state stores keys, and asks with them


@given(st.text())
def test_company_key_is_idempotent_and_empty_only_for_no_company(name: str) -> None:
    """The incremental lead judgements store a company's key and later ask with it: a key whose
    key differs would hold a judgement its company's disqualification should have ended (found
    by a review: "W X Y Inc" keyed "w x y", whose key was "w xy")."""
    key = company_key(name)
    assert company_key(key) == key
    # Only a whole name can name no company ("[not provided]"): with a company's word in it, never.
    assert company_key(f"Acme {name}")


def test_leads_that_name_no_company_share_no_disqualification() -> None:
    """Web-to-Lead fills a blank Company with "[not provided]" (Salesforce Knowledge Article 000171026:
    Company is required on a Lead). One such lead disqualified hid the instant scheduler from every
    other lead without a company for a month, as if they were one company (2026-12-07). Every reader
    of the mirror agrees: the eager and lazy loads and an event's `load_for`."""
    state = StateDB.memory()
    state.upsert_sf([_lead("00QA", "[not provided]", "Disqualified"), _lead("00QB", "Acme", "Disqualified")])
    for asking in ("[not provided]", "N/A"):
        eager = SalesforceFacts.load(state, lazy=False)
        lazy = SalesforceFacts.load(state, lazy=True)
        assert eager.company_disqualified_at(asking) is None and lazy.company_disqualified_at(asking) is None
        assert eager.disqualified_fingerprint(asking) == lazy.disqualified_fingerprint(asking) == ""
    scoped_state = StateDB.memory()
    scoped_state.upsert_sf(
        [_lead("00QA", "[not provided]", "Disqualified"), _lead("00QZ", "N/A", "Open - Not Contacted")]
    )
    assert SalesforceFacts.load_for(scoped_state, [], ["00QZ"]).company_disqualified_at("N/A") is None
    assert SalesforceFacts.load(state, lazy=False).company_disqualified_at("Acme, Inc.") == date(2026, 11, 10)


# "If an account has had a lead disqualified within the last month" (lead-routing-and-scoring.md):
# the account the demo request is linked to (`Vitally_Account_Id__c`), besides its company as the
# `Company` field spells it. Found by a review against the handbook (2026-12-07): only the company
# was read, so a lead of the same account under another company name, or the account's own
# `lead_disqualified_at` trait, left the scheduler shown.


def strong_demo_request(**more: Any) -> Lead:
    """`_demo_request`'s lead, parsed (`more`: fields of the raw record to set)."""
    return parse_lead(json.loads(_demo_request(**more)["raw"]))


def _demo_request(**more: Any) -> dict[str, Any]:
    """A demo request of a strong fit (the scheduler is shown when nothing blocks it), linked to acc_1
    unless `more` says otherwise, as the mirror holds it."""
    raw = json.loads(_lead("00QZ", "Northwind", "Open - Not Contacted")["raw"])
    raw.update(
        {
            "LeadSource": "Demo request",
            "Vitally_Account_Id__c": "acc_1",
            "NumberOfEmployees": 5000,
            "AnnualRevenue": 500_000_000,
            "Title": "CTO",
            "Industry": "Software",
            "Country": "US",
            "SystemModstamp": "2026-11-21T10:00:00.000+0000",
            **more,
        }
    )
    return {"object": "Lead", "id": "00QZ", "modstamp": raw["SystemModstamp"], "raw": json.dumps(raw), "error": None}


def _linked(record_id: str, company: str, status: str) -> dict[str, Any]:
    row = _lead(record_id, company, status)
    return {**row, "raw": json.dumps({**json.loads(row["raw"]), "Vitally_Account_Id__c": "acc_1"})}


def _scheduler(state: StateDB, *, trait_key: str = "lead_disqualified_at") -> Any:
    from sync.config import example_against
    from sync.decider import Decider

    config = example_against("http://127.0.0.1:1")
    traits = {**config.vitally.trait_keys, "lead_disqualified_at": trait_key}
    config = replace(config, vitally=replace(config.vitally, trait_keys=traits))
    facts = SalesforceFacts.load(state, policy=config.policy)
    decider = Decider.of(config, facts, NOW)
    [request] = [lead for lead, _ in facts.iter_leads() if lead.id == "00QZ"]
    return {d.rule: d for d in decider.lead(request)}["demo.instant_scheduler"]


def _with_account(state: StateDB, **traits: Any) -> None:
    account = {"id": "acc_1", "name": "Northwind", "updatedAt": "2026-11-20T10:00:00.000Z", "traits": traits}
    state.upsert_accounts([{"id": "acc_1", "updated_at": account["updatedAt"], "raw": json.dumps(account)}])


def test_a_lead_of_the_same_account_under_another_company_name_hides_the_scheduler() -> None:
    state = StateDB.memory()
    state.upsert_sf([_demo_request(), _linked("00QY", "NW Robotics Labs", "Disqualified")])
    verdict = _scheduler(state)
    assert not verdict.fired
    assert "an account lead was disqualified 2026-11-10 (12 days ago), within 1 month" in verdict.reason
    assert verdict.inputs["account_disqualified_at"] == date(2026, 11, 10)

    alone = StateDB.memory()
    alone.upsert_sf([_demo_request(), _lead("00QY", "NW Robotics Labs", "Disqualified")])  # not linked
    assert _scheduler(alone).fired


@pytest.mark.parametrize("key", ["lead_disqualified_at", "Lead Disqualified At"])
def test_the_accounts_lead_disqualified_at_trait_hides_the_scheduler(key: str) -> None:
    state = StateDB.memory()
    state.upsert_sf([_demo_request()])
    _with_account(state, **{key: "2026-11-15"})
    verdict = _scheduler(state, trait_key=key)
    assert not verdict.fired
    assert "an account lead was disqualified 2026-11-15" in verdict.reason


@pytest.mark.parametrize(
    ("noted", "shown"),
    [("2026-10-21", True), ("2026-10-22", False), ("not a date", True), (None, True)],
)
def test_the_trait_counts_within_the_calendar_month_only(noted: str | None, shown: bool) -> None:
    """On or after the same day a month ago (2026-10-22 for 2026-11-22); a trait that reads as no
    date is none (the account's read reports it)."""
    state = StateDB.memory()
    state.upsert_sf([_demo_request()])
    _with_account(state, lead_disqualified_at=noted)
    assert _scheduler(state).fired is shown


def test_the_latest_of_company_and_account_decides() -> None:
    state = StateDB.memory()
    state.upsert_sf([_demo_request(), _lead("00QA", "Northwind", "Disqualified")])  # the company: 2026-11-10
    _with_account(state, lead_disqualified_at="2026-09-01")  # the account: long ago
    verdict = _scheduler(state)
    assert not verdict.fired
    assert "a company lead was disqualified 2026-11-10" in verdict.reason
