"""A BDR's yes hands the lead to a TAE (lead-routing-and-scoring.md: "Outbound leads manually
qualified by BDRs" are the new business sales team's; accounts-overview.md: "BDR → $20k+ potential?
(Onboarding/BDR decides) → Yes → TECHNICAL ACCOUNT EXECUTIVE").

crm-sync creates the BDRs' leads itself (`bdr.low_usage`, `bdr.closed_lost_unresponsive`), each
owned by a BDR its round robin drew. Before 2026-12-07 such a lead stayed with the BDR for good:
`new_business.bdr_qualified` took only a person's BDR lead released to a queue, never crm-sync's
own, and never read the status. Now the BDR's qualified status (`[rules.episodes]
qualified_statuses`) hands it over: its owner drawn from the TAE round robin, once, its
`Routing_Rule__c` left the BDR trigger's (the account's BDR episode is this lead: no second BDR lead
follows), the account's stage a new business lead. A person's choice of owner stands: a lead a
person gave another owner is not handed over, and a TAE passing it on is not undone.

Each scenario runs real cycles against the in-process sandbox (the real HTTP server); a person's
edits go through the sObject API (PATCH /sobjects/Lead/{id}), as Salesforce takes them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from real_org_world import NOW, cycle_at, real_org_book
from support import person_sets_lead, sandbox_org_config

from core.model import Lead
from rules.new_business import bdr_handover
from sandbox import Sandbox, SandboxConfig
from state import StateDB
from sync.config import Config
from sync.explain import explain
from sync.plan import handover_due, handover_state
from sync.vocabulary import CycleReport

RULE = "new_business.bdr_qualified"


@dataclass
class World:
    sandbox: Sandbox
    config: Config
    state: StateDB
    account: str
    lead: dict[str, Any]
    minutes: int = 0

    def cycle(self) -> CycleReport:
        self.minutes += 15
        return cycle_at(self.config, self.state, NOW + timedelta(minutes=self.minutes))

    def now(self) -> dict[str, Any]:
        return next(lead for lead in self.sandbox.state()["salesforce"]["Lead"] if lead["Id"] == self.lead["Id"])

    def members(self, team: str) -> set[str]:
        return {m.user_id for (t, _), pool in self.config.pools.items() if t == team for m in pool.members}

    def explained(self) -> str:
        """What `explain LEAD` prints of the lead, as the mirror holds it now."""
        out = io.StringIO()
        explain(self.config, self.state, self.lead["Id"], NOW + timedelta(minutes=self.minutes), out, io.StringIO())
        return out.getvalue()

    def stage(self) -> Any:
        account = next(a for a in self.sandbox.state()["vitally"]["accounts"] if a["id"] == self.account)
        return account["traits"].get("lifecycle_stage")


@pytest.fixture
def world() -> Iterator[World]:
    """The real-org book after its first cycles: a BDR lead crm-sync created, with a BDR owner."""
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.memory()
        first = cycle_at(config, state, NOW)
        created = sorted(
            (str(w.account), w.fields)
            for w in first.plan
            if w.op == "upsert_lead" and str(w.fields.get("Routing_Rule__c", "")).startswith("bdr.")
        )
        assert created, "the book routes some accounts to the BDRs"
        account = created[0][0]
        lead = next(
            lead
            for lead in sandbox.state()["salesforce"]["Lead"]
            if (lead.get("Sync_Key__c") or "").startswith(f"crm-sync-{account}-")
        )
        world = World(sandbox, config, state, account, dict(lead))
        for _ in range(2):
            world.cycle()
        assert world.now()["OwnerId"] in world.members("BDR")
        yield world


def _writes_to(report: CycleReport, record: str) -> list[Any]:
    return [w for w in report.plan if w.record == record]


def _stays_with(world: World, owner: str, *, marked: bool = False) -> None:
    """Two more cycles leave the lead with `owner`: no owner written, no conflict reported; with
    `marked`, the first writes the handover's reason alone (the BDR said yes, a person chose the
    owner), which makes the account's stage a new business lead."""
    after = [world.cycle() for _ in range(2)]
    assert world.now()["OwnerId"] == owner
    written = [[sorted(w.fields) for w in _writes_to(r, world.lead["Id"])] for r in after]
    assert written == ([[["Routing_Reason__c"]], []] if marked else [[], []])
    assert [c for r in after for c in r.conflicts] == []
    if marked:
        assert world.stage() == "New business lead"


def test_a_bdr_lead_its_bdr_qualified_goes_to_a_tae_once(world: World) -> None:
    lead_id, bdr = world.lead["Id"], world.lead["OwnerId"]
    assert world.stage() == "BDR"
    person_sets_lead(world.sandbox.url, lead_id, Status="Qualified")  # the BDR's yes

    handed = world.cycle()

    (write,) = _writes_to(handed, lead_id)
    assert write.rule == RULE and write.previous["OwnerId"] == bdr
    tae = write.fields["OwnerId"]
    assert tae in world.members("TAE")
    assert write.fields["Routing_Reason__c"].startswith(f"{RULE}: ")
    assert "Routing_Rule__c" not in write.fields
    after = world.now()
    assert after["OwnerId"] == tae and after["Routing_Rule__c"] == world.lead["Routing_Rule__c"]
    assert handed.conflicts == []
    assert not [w for w in handed.plan if w.op == "upsert_lead" and w.account == world.account]

    later = [world.cycle() for _ in range(3)]

    # The account's stage reads the handover's mark (`Routing_Reason__c`).
    assert world.stage() == "New business lead"
    assert f"handover not due: handed over already (crm-sync wrote owner {tae})" in world.explained()
    assert [_writes_to(r, lead_id) for r in later] == [[], [], []]
    assert not [w for r in later for w in r.plan if w.op == "upsert_lead" and w.account == world.account]
    assert world.state.assignment(lead_id) is not None  # drawn once, remembered
    assert len([w for r in [handed, *later] for w in r.plan if w.fields.get("OwnerId") == tae]) == 1


def test_a_tae_passing_the_lead_on_is_not_undone(world: World) -> None:
    lead_id = world.lead["Id"]
    person_sets_lead(world.sandbox.url, lead_id, Status="Qualified")
    world.cycle()
    other = sorted(world.members("TAE") - {world.now()["OwnerId"]})[0]
    person_sets_lead(world.sandbox.url, lead_id, OwnerId=other)  # the TAE hands it to a colleague

    _stays_with(world, other)


def test_a_lead_a_person_gave_another_owner_is_not_handed_over(world: World) -> None:
    lead_id, bdr = world.lead["Id"], world.lead["OwnerId"]
    colleague = sorted(world.members("BDR") - {bdr})[0]
    person_sets_lead(world.sandbox.url, lead_id, OwnerId=colleague)  # a BDR passes it to a colleague
    world.cycle()
    person_sets_lead(world.sandbox.url, lead_id, Status="Qualified")

    _stays_with(world, colleague, marked=True)
    assert world.state.assignment(lead_id) is None  # no TAE drawn for it
    why = f"handover not due: owner {colleague} is not the one crm-sync created it with ({bdr}): a person's choice"
    assert why in world.explained()  # `explain` says why the rule fired and no owner was drawn


def test_a_bdr_lead_worked_but_not_qualified_stays_with_its_bdr(world: World) -> None:
    lead_id, bdr = world.lead["Id"], world.lead["OwnerId"]
    person_sets_lead(world.sandbox.url, lead_id, Status="Working - Contacted")

    _stays_with(world, bdr)
    assert world.stage() == "BDR"


def test_a_tae_giving_the_lead_back_or_working_it_is_left_alone(world: World) -> None:
    """Found by a review (2026-12-07): the lead back with the BDR crm-sync first drew looked like a
    handover still due, so the TAE drawn was wanted again (a conflict reported, and under
    `on_conflict = "overwrite"` the lead taken from the BDR); and the stage read the status, so the
    TAE working the lead made the account a BDR's again."""
    lead_id, bdr = world.lead["Id"], world.lead["OwnerId"]
    person_sets_lead(world.sandbox.url, lead_id, Status="Qualified")
    world.cycle()
    world.cycle()
    assert world.now()["OwnerId"] in world.members("TAE") and world.stage() == "New business lead"
    person_sets_lead(world.sandbox.url, lead_id, Status="Working - Contacted")  # the TAE works it

    worked = [world.cycle() for _ in range(2)]

    assert world.stage() == "New business lead"
    assert [_writes_to(r, lead_id) for r in worked] == [[], []]
    person_sets_lead(world.sandbox.url, lead_id, OwnerId=bdr)  # and hands it back to the BDR

    _stays_with(world, bdr)


def test_a_lead_its_bdr_put_in_a_queue_draws_no_tae(world: World) -> None:
    """The BDR qualifies the lead and drops it in a queue themselves: a person's owner (found by a
    review, 2026-12-07: a TAE was drawn and charged for a write that could never go out, and the
    queue reported as a conflict)."""
    lead_id = world.lead["Id"]
    queue = "00G000000000004AAA"  # one of the book's queues (real_org_world.real_org_book)
    person_sets_lead(world.sandbox.url, lead_id, Status="Qualified", OwnerId=queue)

    _stays_with(world, queue, marked=True)
    assert world.state.assignment(lead_id) is None


def test_a_bdr_handing_the_lead_to_a_tae_themselves_makes_it_a_new_business_lead(world: World) -> None:
    """The BDR qualifies the lead and gives it to a TAE in the same edit: nothing to draw, but the
    account is a new business lead (found by a review, 2026-12-07: its stage stayed "BDR")."""
    tae = sorted(world.members("TAE"))[0]
    person_sets_lead(world.sandbox.url, world.lead["Id"], Status="Qualified", OwnerId=tae)

    _stays_with(world, tae, marked=True)
    assert world.state.assignment(world.lead["Id"]) is None


def test_a_bdr_lead_created_without_an_owner_is_handed_over_while_it_waits() -> None:
    """A BDR lead crm-sync created with no owner (no BDR pool for its region: the org's assignment
    rule put it in a queue), then qualified: due while it waits for routing, as an inbound lead
    is (found by a review, 2026-12-07: it was never due)."""
    config = sandbox_org_config("http://127.0.0.1:1")
    key = "crm-sync-acc_1-1"
    state = StateDB.memory()
    state.set_last_written("salesforce", key, {"Sync_Key__c": key}, 1, "2026-11-22T09:00:00.000Z")  # no OwnerId
    last, routing = state.last_written("salesforce"), config.policy.routing
    waiting = Lead(
        id="00Q000000000001EAA",
        system_modstamp=NOW,
        sync_key=key,
        routing_rule="bdr.low_usage",
        status="Qualified",
        owner_id="00G000000000001AAA",
    )
    owned = replace(waiting, owner_id="005000000000099AAA")  # a person took it from the queue

    assert bdr_handover(waiting, config.policy).fired
    assert handover_due(waiting, last, routing)
    assert not handover_due(owned, last, routing)
    assert (
        handover_state(waiting, last, routing)[1]
        == "created without an owner and in queue 00G000000000001AAA: a TAE is drawn"
    )
    assert (
        handover_state(owned, last, routing)[1]
        == "created without an owner, since given 005000000000099AAA by a person: theirs"
    )
