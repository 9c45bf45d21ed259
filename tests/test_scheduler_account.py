"""The instant scheduler reads the account a demo request is linked to (lead-routing-and-scoring.md:
"If an account has had a lead disqualified within the last month, we no longer show the
scheduler"): the account's other leads and its `lead_disqualified_at` trait. An incremental cycle
keeps a lead's judgement only while what it read is the same (`sync.incremental.LeadBook`), so a
change there judges the demo request again. Against the in-process sandbox; the rule's own cases
are in test_disqualified_statuses.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import band_account
from test_minicycle import DEMO_REQUEST, World, _web_to_lead
from test_people_win import _person_patches_lead, _world_of

from sync.decider import Decider
from sync.facts import SalesforceFacts

ACCOUNT = band_account("acc_0001", "Band Co", "bandco.com")
REQUEST = {
    **DEMO_REQUEST,
    "Company": "Band Co",
    "Email": "cto@bandco.com",
    "Vitally_Account_Id__c": "acc_0001",
    "NumberOfEmployees": 5000,
    "AnnualRevenue": 500_000_000,
    "Title": "CTO",
    "Industry": "Software",
}
SIBLING = {**DEMO_REQUEST, "LeadSource": "Web", "Company": "BandCo Labs", "Email": "x@bandco.com"}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from _world_of(tmp_path, ACCOUNT)


def _scheduler(world: World, lead_id: str) -> Any:
    """`explain`'s verdict: every rule judged afresh from the mirror."""
    facts = SalesforceFacts.load(world.state, policy=world.config.policy)
    [lead] = [lead for lead, _ in facts.iter_leads() if lead.id == lead_id]
    decider = Decider.of(world.config, facts, world.sandbox.now())
    return {d.rule: d for d in decider.lead(lead)}["demo.instant_scheduler"]


def _settled(world: World) -> None:
    """Cycles until no lead is judged (every judgement holds)."""
    for _ in range(4):
        if world.cycle().counts["leads_evaluated"] == 0:
            return
    raise AssertionError("the leads' judgements never held")


def test_a_sibling_lead_disqualified_judges_the_demo_request_again(world: World) -> None:
    [request, sibling] = _web_to_lead(world, REQUEST, {**SIBLING, "Vitally_Account_Id__c": "acc_0001"})
    _settled(world)
    assert _scheduler(world, request).fired

    _person_patches_lead(world, sibling, Status="Disqualified")
    report = world.cycle()

    assert report.counts["leads_evaluated"] == 2  # the lead that changed, and the request reading it
    verdict = _scheduler(world, request)
    assert not verdict.fired
    assert "an account lead was disqualified" in verdict.reason


def test_a_lead_of_another_account_changes_nothing_for_it(world: World) -> None:
    [_, other] = _web_to_lead(world, REQUEST, {**SIBLING, "Vitally_Account_Id__c": "acc_0002"})
    _settled(world)
    _person_patches_lead(world, other, Status="Disqualified")
    assert world.cycle().counts["leads_evaluated"] == 1  # only the lead that changed


def test_the_accounts_trait_judges_the_demo_request_again(world: World) -> None:
    [request] = _web_to_lead(world, REQUEST)
    _settled(world)
    account = next(a for a in world.sandbox.state()["vitally"]["accounts"] if a["id"] == "acc_0001")
    today = world.sandbox.now().date().isoformat()
    world.sandbox.set_clock(advance_seconds=60)
    stamp = world.sandbox.now().strftime("%Y-%m-%dT%H:%M:%S.000Z")
    traits = {**account["traits"], "lead_disqualified_at": today}
    world.sandbox.load({"vitally": {"accounts": [{**account, "traits": traits, "updatedAt": stamp}]}})

    report = world.cycle()

    assert report.counts["leads_evaluated"] == 1  # the request, its account's trait read again
    verdict = _scheduler(world, request)
    assert not verdict.fired
    assert f"an account lead was disqualified {today}" in verdict.reason
