"""An event's mini-cycle reads the mirror for its own records only (issue 17: "a targeted
mini-cycle for just that record"). `SalesforceFacts.load_for` finds the accounts' Salesforce
records, their leads, and the disqualified leads of those leads' companies through the fields the
mirror stores beside each record (`state.migrations.SF_LINK_FIELDS`, indexed), and reads the
remembered triage verdicts of those leads alone. Before, each event parsed every disqualified lead
of the book and had SQLite decode the JSON of every lead, Account and opportunity four times: at
50,000 accounts 95 ms of CPU an event, growing with the book. The answers must be those of the
whole-mirror `load`.

The records are shaped as the Salesforce REST API returns them (a query's `records`, `attributes`
stripped by the connector): `Id`, `SystemModstamp` as `2026-11-20T10:00:00.000+0000`, picklists as
text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

import sync.facts
from core.records import parse_lead
from core.triage import Triage
from rules.policy import DemoPolicy
from state import StateDB
from sync.facts import SalesforceFacts
from sync.verdicts import Verdicts

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
STAMP = "2026-11-20T10:00:00.000+0000"


def _row(sobject: str, record_id: str, error: str | None = None, **fields: Any) -> dict[str, Any]:
    raw = {"Id": record_id, "SystemModstamp": STAMP, **fields}
    return {"object": sobject, "id": record_id, "modstamp": STAMP, "raw": json.dumps(raw), "error": error}


def _lead(record_id: str, company: Any, status: Any = "Open - Not Contacted", **fields: Any) -> dict[str, Any]:
    error = fields.pop("error", None)
    return _row(
        "Lead",
        record_id,
        error,
        LastName="Doe",
        Company=company,
        Status=status,
        LeadSource="Web",
        IsConverted=False,
        CreatedDate="2026-11-01T10:00:00.000+0000",
        **fields,
    )


@pytest.fixture
def state() -> StateDB:
    state = StateDB.memory()
    state.upsert_sf(
        [
            _row("Account", "001A", Name="Acme", Vitally_Account_Id__c="acc_1"),
            _row("Account", "001B", Name="Globex", Vitally_Account_Id__c="acc_2"),
            _row("Opportunity", "006A", AccountId="001A", StageName="Closed Lost", CloseDate="2026-10-01"),
            _row("Opportunity", "006B", AccountId="001B", StageName="Closed Won", CloseDate="2026-10-01"),
            _lead("00QA", "Acme", Vitally_Account_Id__c="acc_1"),  # acc_1's own lead
            _lead("00QB", "ACME", "Disqualified"),  # its company, in another case: a fact
            _lead("00QC", "Globex", "Unqualified"),  # another company's: not read for acc_1
            _lead("00QD", "acme", "Disqualified", error='{"field": "Status"}'),  # malformed: never a fact
            _lead("00QE", "Acme", 5),  # a Status that is no text is no disqualification
            _lead("00QF", "Initech"),  # an inbound lead, named by its event
            _lead("00QG", "initech", "Unqualified", SystemModstamp="2026-11-10T10:00:00.000+0000"),
            _lead("00QH", "Globex", Vitally_Account_Id__c="acc_2"),  # acc_2's lead
        ]
    )
    return state


def test_the_facts_of_an_events_records_are_those_of_the_whole_mirror(state: StateDB) -> None:
    whole = SalesforceFacts.load(state, lazy=False)
    scoped = SalesforceFacts.load_for(state, ["acc_1"], ["00QF"])

    for company in ("Acme", "ACME", "Initech"):
        assert scoped.company_disqualified_at(company) == whole.company_disqualified_at(company) is not None
    assert scoped.context_for("acc_1") == whole.context_for("acc_1")
    assert [lead.id for lead, _ in scoped.iter_leads()] == ["00QA", "00QF"]
    # What the event does not concern is not in its facts.
    assert scoped.company_disqualified_at("Globex") is None
    assert whole.company_disqualified_at("Globex") is not None


def test_only_the_leads_of_the_events_companies_are_parsed(state: StateDB, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []

    def counting(raw: dict[str, Any]) -> Any:
        parsed.append(raw["Id"])
        return parse_lead(raw)

    monkeypatch.setattr(sync.facts, "parse_lead", counting)
    SalesforceFacts.load_for(state, ["acc_1"], ["00QF"])
    # The account's lead, the named lead, and the disqualified leads of Acme and Initech: neither
    # Globex's leads, nor the malformed one, nor the one whose Status is not text.
    assert sorted(parsed) == ["00QA", "00QB", "00QF", "00QG"]


@pytest.mark.parametrize(
    ("sobject", "field", "values"),
    [
        ("Lead", "Status", ["Disqualified", "Unqualified", "5"]),
        ("Lead", "Company", ["Acme", "acme", "Globex"]),
        ("Lead", "Vitally_Account_Id__c", ["acc_1", "acc_2", "acc_3"]),
        ("Account", "Vitally_Account_Id__c", ["acc_1"]),
        ("Opportunity", "AccountId", ["001A", "001B"]),
    ],
)
def test_records_found_by_a_stored_field_are_the_well_formed_ones_holding_it_as_text(
    state: StateDB, sobject: str, field: str, values: list[str]
) -> None:
    expected = sorted(
        (record_id, raw, error)
        for record_id, raw, error in state.iter_sf(sobject)
        if not error and json.loads(raw).get(field) in values
    )
    assert expected  # the case finds something
    assert state.sf_where(sobject, field, values) == expected


def test_a_field_not_stored_beside_the_record_is_still_found_in_its_json(state: StateDB) -> None:
    found = state.sf_where("Opportunity", "StageName", ["Closed Won"])
    assert [record_id for record_id, _, _ in found] == ["006B"]


def test_remembered_triage_of_a_few_leads_is_the_whole_tables_restricted_to_them(state: StateDB) -> None:
    answers = {
        "00QA": Triage("sales", 0.9, "why"),
        "00QB": Triage("spam", 0.8, "why"),
        "00QF": Triage("support", 0.7, "why"),
    }
    for lead, answer in answers.items():
        state.triage_asked(lead, f"digest-{lead}", "2026-11-22T09:00:00.000Z")
        state.triage_answered(lead, f"digest-{lead}", answer, "2026-11-22T09:00:01.000Z")
    state.triage_asked("00QG", "digest-00QG", "2026-11-22T09:00:00.000Z")  # asked, never answered
    whole = state.remembered_triage()
    few = state.remembered_triage(["00QF", "00QG", "00QZ"])
    assert few == {lead: whole[lead] for lead in ("00QF", "00QG")}
    assert few["00QG"] == ("digest-00QG", None)


def test_a_mini_cycles_verdicts_are_read_one_submission_at_a_time(state: StateDB) -> None:
    demo = DemoPolicy()
    lead = parse_lead({**json.loads(_lead("00QX", "Umbrella")["raw"]), "LeadSource": "Demo request"})
    other = parse_lead({**json.loads(_lead("00QY", "Hooli")["raw"]), "LeadSource": "Demo request"})
    cycle = Verdicts.of(state, demo)
    kept = cycle.verdict(lead)
    cycle.save()
    assert cycle.classified == 1

    few = Verdicts.of(state, demo, few=True)
    assert few.verdict(lead) == kept  # read back, not classified again
    assert few.classified == 0
    few.verdict(other)  # a submission never seen is classified, and kept
    few.save()
    assert few.classified == 1
    assert set(state.triage_verdicts(few.version)) == {kept.digest, few.verdict(other).digest}


def test_a_mini_cycle_forgets_only_its_own_records_fixed_errors(state: StateDB) -> None:
    found = [
        {"system": "salesforce Lead", "record": record, "field": "Status", "message": "expected text, got 5"}
        for record in ("00QA", "00QC")
    ]
    state.remember_malformed(1, "2026-11-22T09:00:00.000Z", found)  # both are well-formed in the mirror now
    assert state.forget_fixed(["00QA", "00QF"]) == 1
    assert [row["record"] for row in state.malformed()] == ["00QC"]  # not the event's: left to a cycle
    assert state.forget_fixed() == 1
    assert state.malformed() == []


def test_an_opportunitys_accounts_are_those_whose_context_holds_it(state: StateDB) -> None:
    """`accounts_of_opportunities` (an Opportunity's Outbound Message plans them) is the inverse of
    the whole mirror's `context_for`: through the opportunity's Account, an Account merged into it,
    and a linked lead converted into it on an Account that names no Vitally account."""
    state.upsert_sf(
        [
            _row("Account", "001C", Name="Hooli"),  # names no Vitally account: the survivor of a merge
            _row("Opportunity", "006C", AccountId="001C", StageName="Prospecting", CloseDate="2026-12-20"),
            _row("Account", "001D", Name="Pied Piper"),  # a rep converted acc_4's lead into it
            _row("Opportunity", "006D", AccountId="001D", StageName="Prospecting", CloseDate="2026-12-20"),
            _lead("00QJ", "Pied Piper", "Converted", Vitally_Account_Id__c="acc_4", ConvertedOpportunityId="006D"),
            _row("Opportunity", "006E", AccountId="001Z", StageName="Prospecting", CloseDate="2026-12-20"),
        ]
    )
    state.record_account_merges([("001M", "001C", "acc_3", STAMP)])  # acc_3's Account merged into Hooli
    whole = SalesforceFacts.load(state, lazy=False)
    accounts = ["acc_1", "acc_2", "acc_3", "acc_4", "acc_5"]
    expected = {"006A": {"acc_1"}, "006B": {"acc_2"}, "006C": {"acc_3"}, "006D": {"acc_4"}, "006E": set()}
    for opportunity, wanted in expected.items():
        holding = {a for a in accounts if any(o.id == opportunity for o in whole.context_for(a).opportunities)}
        assert SalesforceFacts.accounts_of_opportunities(state, [opportunity]) == holding == wanted, opportunity
    assert SalesforceFacts.accounts_of_opportunities(state, ["006A", "006D", "006X"]) == {"acc_1", "acc_4"}
    assert SalesforceFacts.accounts_of_opportunities(state, []) == set()


def test_a_leads_accounts_are_those_whose_context_holds_it(state: StateDB) -> None:
    """`accounts_of_leads` (a Lead's Outbound Message plans them) is the inverse of the whole
    mirror's `context_for` for linked leads: the account its `Vitally_Account_Id__c` names; a lead
    linked to none, a malformed one and one the mirror does not hold name nothing."""
    state.upsert_sf(
        [
            _lead("00QK", "Initech", Vitally_Account_Id__c="acc_5"),
            _lead("00QL", "Initech", Vitally_Account_Id__c=""),
            _lead("00QM", "Hooli", Vitally_Account_Id__c="acc_6", error="Status: expected text"),
        ]
    )
    whole = SalesforceFacts.load(state, lazy=False)
    for lead, wanted in {"00QA": {"acc_1"}, "00QK": {"acc_5"}, "00QB": set(), "00QL": set(), "00QM": set()}.items():
        holding = {a for a in ("acc_1", "acc_5", "acc_6") if any(x.id == lead for x in whole.context_for(a).leads)}
        assert SalesforceFacts.accounts_of_leads(state, [lead]) == holding == wanted, lead
    assert SalesforceFacts.accounts_of_leads(state, ["00QA", "00QK", "00QX"]) == {"acc_1", "acc_5"}
    assert SalesforceFacts.accounts_of_leads(state, []) == set()
