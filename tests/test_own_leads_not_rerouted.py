"""crm-sync's own leads are routed once, when they are created, never again by their LeadSource.

The lead-source triggers route inbound leads (a form, sales@, a person's BDR-qualified lead) that
wait for an owner. A lead crm-sync created carries `Sync_Key__c` and its owner was drawn when it
was created; when nobody in the pool was eligible the round robin gave it to the pool's fallback
queue, where it waits for the queue's members. Before, the next cycle read such a lead as an
inbound lead waiting in a queue: crm-sync's BDR leads (LeadSource `BDR`) matched
`new_business.bdr_qualified` and were handed to a TAE, a second owner drawn for one lead and the
BDR team's lead given to another team (lead-routing-and-scoring.md lists the BDR team's own
leads apart from the "outbound leads manually qualified by BDRs" that go to new business).

A real cycle against the in-process sandbox (the real HTTP server) with the example config, its
BDR pool's members paused.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from support import example_config_for, with_fallback_queues

from sandbox import Sandbox, generate_book
from state import StateDB
from sync.app import make_salesforce, make_vitally
from sync.config import load_config
from sync.cycle import run_cycle

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
BDR_QUEUE = "00G000000000005AAA"  # the example config's BDR pool's fallback_owner
BDR_MEMBERS = (
    '    { user_id = "005000000000014AAA", name = "Chris Hale" },\n'
    '    { user_id = "005000000000015AAA", name = "Ines Duarte" },\n'
)
PAUSED = (
    '    { user_id = "005000000000014AAA", name = "Chris Hale", active = false },\n'
    '    { user_id = "005000000000015AAA", name = "Ines Duarte", active = false },\n'
)


def _bdr_leads(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [
        lead
        for lead in sandbox.state()["salesforce"]["Lead"]
        if lead.get("Sync_Key__c") and str(lead.get("Routing_Rule__c") or "").startswith("bdr.")
    ]


def test_crm_syncs_bdr_lead_in_the_fallback_queue_is_not_routed_again(tmp_path: Path) -> None:
    book = with_fallback_queues(generate_book(300, seed=11, now=NOW))
    assert book["_cases"]["accounts"], "the generated book has its handbook cases"
    path = example_config_for("http://127.0.0.1:1", tmp_path / "config.toml", {BDR_MEMBERS: PAUSED})
    assert "active = false" in path.read_text()
    with Sandbox(book, now=NOW) as sandbox:
        base = load_config(path)
        config = replace(
            base,
            vitally=replace(base.vitally, base_url=sandbox.url),
            salesforce=replace(base.salesforce, instance_url=sandbox.url),
        )
        state = StateDB.open(tmp_path / "state.db")
        try:
            first = run_cycle(config, state, make_vitally(config), make_salesforce(config), clock=lambda: NOW, now=NOW)
            created = _bdr_leads(sandbox)
            assert created, "the book's BDR cases made crm-sync create BDR leads"
            # Nobody in the BDR pool was eligible: each lead waits in the pool's fallback queue.
            assert {lead["OwnerId"] for lead in created} == {BDR_QUEUE}
            assert {lead["LeadSource"] for lead in created} == {"BDR"}
            drawn = state.db.execute("SELECT count(*) FROM assignments").fetchone()[0]
            assert first.counts["failed"] == 0

            later = NOW + timedelta(minutes=15)
            second = run_cycle(
                config, state, make_vitally(config), make_salesforce(config), clock=lambda: later, now=later
            )
            ids = {lead["Id"] for lead in created}
            rerouted = [w for w in second.plan if w.record in ids]
            assert rerouted == [], [(w.rule, w.reason) for w in rerouted]
            assert state.db.execute("SELECT count(*) FROM assignments").fetchone()[0] == drawn  # no second draw
            after = {lead["Id"]: lead for lead in _bdr_leads(sandbox)}
            assert {after[i]["OwnerId"] for i in ids} == {BDR_QUEUE}
            assert {after[i]["Routing_Rule__c"] for i in ids} == {lead["Routing_Rule__c"] for lead in created}
        finally:
            state.close()
