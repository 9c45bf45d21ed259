"""sync/facts.py gives the rules what an episode reads from the mirror: the owner crm-sync gave each
lead it created (a different owner now is a person's reassignment) and the conversion fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rules import Policy
from rules.episodes import episodes
from state import StateDB
from sync.facts import SalesforceFacts

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _lead(lead_id: str, **fields: Any) -> dict[str, Any]:
    raw = {
        "Id": lead_id,
        "LastName": "Acme",
        "Company": "Acme",
        "LeadSource": "Product-led",
        "Status": "Open - Not Contacted",
        "OwnerId": "005000000000001AAA",
        "IsConverted": False,
        "Vitally_Account_Id__c": "acc_1",
        "CreatedDate": "2026-11-01T10:00:00.000+0000",
        "SystemModstamp": "2026-11-20T10:00:00.000+0000",
        **fields,
    }
    return {"object": "Lead", "id": lead_id, "modstamp": raw["SystemModstamp"], "raw": json.dumps(raw), "error": None}


def _facts(*rows: dict[str, Any], written: dict[str, str] | None = None) -> SalesforceFacts:
    state = StateDB.memory()
    state.upsert_sf(rows)
    for key, owner in (written or {}).items():
        state.set_last_written("salesforce", key, {"OwnerId": owner}, 1, "2026-11-01T10:00:00.000Z")
    return SalesforceFacts.load(state)


def test_facts_remember_the_owner_crm_sync_gave_its_lead() -> None:
    ours = _lead("00QA", Sync_Key__c="crm-sync-acc_1-1", Routing_Rule__c="product_led.mrr_band")
    facts = _facts(ours, written={"crm-sync-acc_1-1": "005000000000001AAA"})
    assert facts.context_for("acc_1").assigned_owners == {"00QA": "005000000000001AAA"}


def test_a_person_reassigning_crm_syncs_lead_makes_the_episode_worked() -> None:
    from core.model import Account

    moved = _lead(
        "00QA", Sync_Key__c="crm-sync-acc_1-1", Routing_Rule__c="product_led.mrr_band", OwnerId="005000000000009AAA"
    )
    facts = _facts(moved, written={"crm-sync-acc_1-1": "005000000000001AAA"})
    (episode,) = episodes(Account("acc_1", "Acme", NOW), facts.context_for("acc_1"), Policy())
    assert episode.state == "working"
    assert episode.signal == "lead 00QA owner changed from 005000000000001AAA to 005000000000009AAA"


def test_facts_carry_conversion_fields_and_no_assignment_for_others_leads() -> None:
    converted = _lead("00QB", IsConverted=True, ConvertedDate="2026-11-10", ConvertedOpportunityId="006000000000001AAA")
    facts = _facts(converted)
    context = facts.context_for("acc_1")
    assert context.assigned_owners == {}
    (lead,) = context.leads
    assert (lead.converted_date.isoformat() if lead.converted_date else None) == "2026-11-10"
    assert lead.converted_opportunity_id == "006000000000001AAA"
