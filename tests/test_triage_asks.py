"""After a real cycle's writes, `sync.triage.ask_llm` asks the LLM about the open demo requests of
the mirror that have no verdict yet. It found them by parsing every lead of the book, every cycle
(with `classifier = "llm"`: 0.3-0.6 s of CPU at 100,000 accounts, for a handful of demo requests);
now SQLite finds the leads of the demo form's LeadSource and only those are parsed. The records are
shaped as the Salesforce REST API returns a Lead (a query's `records`, `attributes` stripped)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

import sync.triage
from core.records import parse_lead
from core.triage import Submission, Triage
from state import StateDB
from sync.config import example_against
from sync.triage import ask_llm
from sync.vocabulary import CycleReport, Hooks

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
STAMP = "2026-11-20T10:00:00.000+0000"


def _lead(record_id: str, source: str, status: str = "Open - Not Contacted", **fields: Any) -> dict[str, Any]:
    error = fields.pop("error", None)
    raw = {
        "Id": record_id,
        "SystemModstamp": STAMP,
        "LastName": "Doe",
        "Company": f"Company {record_id}",
        "Email": f"{record_id.lower()}@example.com",
        "LeadSource": source,
        "Status": status,
        "IsConverted": False,
        "Form_Text__c": "We would like a demo for our data team.",
        **fields,
    }
    return {"object": "Lead", "id": record_id, "modstamp": STAMP, "raw": json.dumps(raw), "error": error}


class _Asked:
    """The LLM, as `ask_llm` calls it: one verdict per submission, each remembered."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def classify(self, submission: Submission) -> Triage:
        self.asked.append(submission.email or "")
        return Triage("sales", 0.9, "asks for a demo")


def test_a_cycle_asks_about_the_open_demo_requests_and_parses_no_other_lead(monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateDB.memory()
    state.upsert_sf(
        [
            _lead("00QA", "Demo request"),
            _lead("00QB", "Web"),  # another source: never parsed
            _lead("00QC", "Product-led"),
            _lead("00QD", "Demo request", "Closed - Converted"),  # parsed, not open: not asked
            _lead("00QE", "Demo request", error='{"field": "Email"}'),  # malformed: never parsed
            _lead("00QF", "Demo request", IsDeleted=True),  # deleted in Salesforce: not asked
            _lead("00QG", "Demo request"),
        ]
    )
    parsed: list[str] = []

    def counting(raw: dict[str, Any]) -> Any:
        parsed.append(raw["Id"])
        return parse_lead(raw)

    monkeypatch.setattr(sync.triage, "parse_lead", counting)
    config = example_against("http://127.0.0.1:1")
    config = replace(config, policy=replace(config.policy, demo=replace(config.policy.demo, classifier="llm")))
    llm = _Asked()
    report = CycleReport(run_id=1, dry_run=False, now=NOW)

    answered = ask_llm(config, state, llm, report, clock=lambda: NOW, hooks=Hooks())

    assert answered == ["00QA", "00QG"]
    assert llm.asked == ["00qa@example.com", "00qg@example.com"]
    assert sorted(parsed) == ["00QA", "00QD", "00QF", "00QG"]
    assert report.counts["triage_asked"] == 2


def test_a_demo_request_whose_json_sqlite_cannot_read_is_still_asked_about() -> None:
    """A number beyond a float in a field crm-sync does not read (`1e400`, stored by Python as
    `Infinity`) leaves the record well-formed for the parser but unreadable for SQLite's JSON
    functions: it must not drop out of the search by LeadSource."""
    state = StateDB.memory()
    unreadable = _lead("00QA", "Demo request")
    unreadable["raw"] = unreadable["raw"][:-1] + ', "AnnualRevenue__x": Infinity}'
    state.upsert_sf([unreadable, _lead("00QB", "Web")])
    config = example_against("http://127.0.0.1:1")
    config = replace(config, policy=replace(config.policy, demo=replace(config.policy.demo, classifier="llm")))
    llm = _Asked()
    answered = ask_llm(
        config, state, llm, CycleReport(run_id=1, dry_run=False, now=NOW), clock=lambda: NOW, hooks=Hooks()
    )
    assert answered == ["00QA"]


def test_a_demo_request_in_another_case_or_spacing_is_asked_about() -> None:
    """lead-routing-and-scoring.md, Demo booking: "If 'support' or 'spam', it'll skip round robin".
    The triage waits for the LLM's verdict on every demo request the routing would route, whatever
    the case and spacing of its LeadSource (`rules.context.same_picklist`); the search of the mirror
    must find the same leads, or a `demo request` lead would wait, unowned, for a verdict never
    asked. Records shaped as the REST API returns a Lead (see the module docstring)."""
    state = StateDB.memory()
    state.upsert_sf([_lead("00QA", "demo request"), _lead("00QB", " Demo  Request "), _lead("00QC", "Demo requests")])
    config = example_against("http://127.0.0.1:1")
    config = replace(config, policy=replace(config.policy, demo=replace(config.policy.demo, classifier="llm")))
    llm = _Asked()
    answered = ask_llm(
        config, state, llm, CycleReport(run_id=1, dry_run=False, now=NOW), clock=lambda: NOW, hooks=Hooks()
    )
    assert answered == ["00QA", "00QB"]
