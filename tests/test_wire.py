"""sync/wire.py: the rules' intents in the services' names, exactly as the services take them."""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.base import LeadField, LeadIntent, TaskIntent
from sync.wire import (
    SALESFORCE_FIELD_LENGTHS,
    SALESFORCE_LEAD_FIELDS,
    fit_lead_fields,
    lead_fields,
    read_written_trait,
    sync_key,
    sync_key_prefix,
    utf16_length,
    vitally_task,
    written_trait,
)


def test_wire_names_every_lead_field_a_rule_can_want() -> None:
    names = set(get_args(LeadField))
    assert {f.name for f in fields(LeadIntent)} == names
    assert set(SALESFORCE_LEAD_FIELDS) == names
    assert len(set(SALESFORCE_LEAD_FIELDS.values())) == len(names)


@pytest.mark.parametrize(
    ("intent", "wire"),
    [
        (None, []),
        (LeadIntent(), []),
        (LeadIntent(score=50), [("Lead_Score__c", 50)]),
        (LeadIntent(score=0), [("Lead_Score__c", 0)]),
        (LeadIntent(classification="support"), [("Classification__c", "support")]),
        (
            LeadIntent(status="Disqualified", classification="spam"),
            [("Classification__c", "spam"), ("Status", "Disqualified")],
        ),
        (
            LeadIntent(
                routing_reason="new_business.campaign: LeadSource Campaign", routing_rule="new_business.campaign"
            ),
            [
                ("Routing_Rule__c", "new_business.campaign"),
                ("Routing_Reason__c", "new_business.campaign: LeadSource Campaign"),
            ],
        ),
    ],
)
def test_wire_lead_fields_in_salesforce_names_and_order(
    intent: LeadIntent | None, wire: list[tuple[str, object]]
) -> None:
    assert list(lead_fields(intent).items()) == wire


def test_wire_vitally_task_is_the_body_vitally_takes() -> None:
    task = TaskIntent(
        key="onboarding.circle_back:acc_1:2026-Q4",
        account_id="acc_1",
        title="Circle back: growing account",
        description="mrr 640 ≤ 1,000",
        due=date(2026, 12, 22),
        assignee="u9",
        tags=("crm-sync",),
    )
    assert list(vitally_task(task).items()) == [
        ("externalId", "crm-sync:onboarding.circle_back:acc_1:2026-Q4"),
        ("accountId", "acc_1"),
        ("name", "Circle back: growing account"),
        ("description", "mrr 640 ≤ 1,000"),
        ("dueDate", "2026-12-22"),
        ("assignedToId", "u9"),
        ("tags", ["crm-sync"]),
    ]


def test_wire_vitally_task_unassigned_says_null() -> None:
    task = TaskIntent("k", "acc_1", "t", "d", date(2027, 1, 2), None)
    body = vitally_task(task)
    assert "assignedToId" in body and body["assignedToId"] is None
    assert body["tags"] == []


def test_wire_cuts_text_to_its_salesforce_field_and_says_so() -> None:
    fields = {"LastName": "N" * 81, "Company": "C" * 255, "Routing_Reason__c": "r" * 300, "Lead_Score__c": 70}
    fitted, cut = fit_lead_fields("crm-sync-acc_1-1", fields)
    assert fitted == {"LastName": "N" * 80, "Company": "C" * 255, "Routing_Reason__c": "r" * 255, "Lead_Score__c": 70}
    assert [(c.field, c.length, c.limit) for c in cut] == [("LastName", 81, 80), ("Routing_Reason__c", 300, 255)]
    assert str(cut[0]) == "salesforce crm-sync-acc_1-1 LastName: 81 characters, cut to the field's 80"
    assert SALESFORCE_FIELD_LENGTHS["Sync_Key__c"] == 80


def test_wire_counts_length_as_salesforce_does_and_never_cuts_a_character_in_half() -> None:
    """Salesforce counts a character outside the Basic Multilingual Plane as two (UTF-16 units:
    Salesforce Help 005166849); an account name of emoji cut to 80 Python characters was still
    refused with STRING_TOO_LONG."""
    rocket = "\U0001f680"
    fitted, cut = fit_lead_fields("k", {"LastName": rocket * 41, "Company": "é" * 255})
    assert fitted == {"LastName": rocket * 40, "Company": "é" * 255}  # é is one unit
    assert [(c.field, c.length, c.limit) for c in cut] == [("LastName", 82, 80)]
    odd, _ = fit_lead_fields("k", {"LastName": "a" + rocket * 40})  # 81 units: the last emoji goes whole
    assert odd == {"LastName": "a" + rocket * 39}
    assert utf16_length("a" + rocket) == 3


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40))
def test_utf16_length_counts_what_salesforce_counts(text: str) -> None:
    """Each character one unit, each outside the Basic Multilingual Plane two: lone surrogates (a
    hostile record's) and accented or CJK text included."""
    assert utf16_length(text) == sum(2 if ord(char) > 0xFFFF else 1 for char in text)


def test_wire_sends_text_as_salesforce_stores_it_trimmed_and_never_empty() -> None:
    """A Salesforce text field "can never be empty (only null), and [...] never include leading and
    trailing whitespace" (Apex Developer Guide, Primitive Data Types: "the same rules as in the SOAP
    API"). An account named "Acme " would read back as "Acme": a value crm-sync never wrote, taken
    for a person's; a reason cut to 255 on a space, a write planned again every cycle."""
    fitted, cut = fit_lead_fields("k", {"Company": "  Acme ", "Industry": "   ", "Routing_Reason__c": "r" * 254 + " x"})
    assert fitted == {"Company": "Acme", "Industry": None, "Routing_Reason__c": "r" * 254}
    assert [(c.field, c.length, c.limit) for c in cut] == [("Routing_Reason__c", 256, 255)]
    assert fit_lead_fields("k", {"Company": "Acme"}) == ({"Company": "Acme"}, [])


def test_wire_leaves_out_a_number_beyond_its_fields_digits() -> None:
    """`NumberOfEmployees` holds 8 digits: a Vitally trait's 1431655766 would make Salesforce refuse
    the whole lead (NUMBER_OUTSIDE_VALID_RANGE), which crm-sync would park; the lead is created
    without it instead, and the run says so."""
    fields = {"LastName": "Acme", "NumberOfEmployees": 1431655766, "AnnualRevenue": 5e6, "Lead_Score__c": 70}
    fitted, cut = fit_lead_fields("crm-sync-acc_1-1", fields)
    assert fitted == {"LastName": "Acme", "AnnualRevenue": 5e6, "Lead_Score__c": 70}
    assert [(c.field, c.number) for c in cut] == [("NumberOfEmployees", 1431655766.0)]
    assert str(cut[0]) == (
        "salesforce crm-sync-acc_1-1 NumberOfEmployees: 1,431,655,766 is beyond the field's 8 digits, left out "
        "(Salesforce refuses the whole lead for it)"
    )
    assert fit_lead_fields("k", {"NumberOfEmployees": 99_999_999}) == ({"NumberOfEmployees": 99_999_999}, [])


@pytest.mark.parametrize("account", ["acc_1", "a" * 60, "b" * 300, "0" * 65 + "x"])
def test_wire_sync_keys_fit_their_field_stay_stable_and_unique(account: str) -> None:
    keys = [sync_key(account, episode) for episode in (1, 2, 99999)]
    assert all(len(key) <= SALESFORCE_FIELD_LENGTHS["Sync_Key__c"] for key in keys)
    assert all(key.startswith(sync_key_prefix(account)) for key in keys)
    assert sync_key(account, 1) == sync_key(account, 1) and len(set(keys)) == 3
    assert sync_key(account + "y", 1) != sync_key(account, 1)
    if len(account) <= 60:
        assert keys[0] == f"crm-sync-{account}-1"  # the readable form whenever it fits


def test_wire_written_trait_is_json_text_read_back_whole_or_not_at_all() -> None:
    values = {"new_owner": "EU CSM", "segment_onboarding": None, "lifecycle_stage": "Self serve"}
    text = written_trait(values)
    assert isinstance(text, str) and read_written_trait(text) == values
    assert written_trait(dict(reversed(values.items()))) == text  # the same values, the same trait
    for edited in (None, 3, "", "not json", "[1, 2]", '"a string"'):
        assert read_written_trait(edited) == {}
