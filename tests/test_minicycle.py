"""An event's mini-cycle (issue 17) against the in-process sandbox: the record read fresh,
decided, planned and applied as a whole cycle would, through the same outbox, with the owner
drawn once, at the minimum of requests, and nothing else touched."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import new_payer, person_sets_lead, pool_users, sandbox_org_config, vitally_account

from connectors.salesforce import SalesforceClient
from connectors.vitally import VitallyClient
from core.errors import UnreachableError
from sandbox import Sandbox, generate_book
from state import PlannedWrite, StateDB
from state.events import Event, EventInbox, EventSource
from sync.app import make_salesforce, make_vitally
from sync.config import Config, example_against
from sync.cycle import run_cycle
from sync.facts import SalesforceFacts
from sync.followups import Outlets
from sync.minicycle import run_mini_cycle
from sync.vocabulary import CycleReport

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)
STAMP = "2026-11-20T09:00:00.000Z"
WRITES = frozenset({"PUT", "PATCH", "POST", "DELETE"})
COMPOSITE = "/services/data/v59.0/composite"
_deliveries = itertools.count()


def _seed(config: Config) -> dict[str, Any]:
    return {
        "vitally": {"accounts": [vitally_account(i) for i in range(12)]},
        "salesforce": {"User": pool_users(config), "Lead": []},
    }


@dataclass
class World:
    sandbox: Sandbox
    config: Config
    path: Path
    state: StateDB
    vitally: VitallyClient
    salesforce: SalesforceClient
    inbox: EventInbox
    logged: list[tuple[str, dict[str, Any]]]

    def cycle(self, *, dry_run: bool = False, state: StateDB | None = None) -> CycleReport:
        return run_cycle(
            self.config, state or self.state, self.vitally, self.salesforce, clock=_clock, now=NOW, dry_run=dry_run
        )

    def event(self, source: EventSource, record: str) -> None:
        self.inbox.put([Event(f"{source}:{next(_deliveries)}", source, record)], "2026-11-22T09:00:00.000Z")

    def mini(self, outlets: Outlets | None = None) -> CycleReport:
        """A mini-cycle for the pending events (`outlets`: by default as the config sets them up)."""
        return run_mini_cycle(
            self.config,
            self.state,
            self.vitally,
            self.salesforce,
            self.state.pending_events(100),
            clock=_clock,
            log=lambda event, data: self.logged.append((event, dict(data))),
            outlets=outlets,
        )

    def leads(self) -> list[dict[str, Any]]:
        return list(self.sandbox.state()["salesforce"]["Lead"])

    def reads_and_writes(self) -> tuple[int, int]:
        calls = self.sandbox.calls()
        writes = sum(1 for c in calls if c["method"] in WRITES)
        return len(calls) - writes, writes


def _clock() -> datetime:
    return NOW


def _web_to_lead(world: World, *rows: dict[str, Any]) -> list[str]:
    """Leads created as a form on the website creates them (not through crm-sync's API user)."""
    with world.sandbox._lock:
        return world.sandbox._salesforce.add_leads(list(rows), owner_ids=[])


def _no_wait(seconds: float) -> None:
    """Retries back off without waiting: the faults here are counted, not timed."""


def _world(tmp_path: Path, seed: dict[str, Any] | None = None) -> Iterator[World]:
    probe = example_against("http://127.0.0.1:1")
    with Sandbox(seed or _seed(probe), now=NOW) as sandbox:
        sandbox.configure(vitally_rate_limit=10**6)
        config = sandbox_org_config(sandbox.url)
        path = tmp_path / "state.db"
        state = StateDB.open(path)
        inbox = EventInbox(path, wait_seconds=5)
        try:
            vitally, salesforce = make_vitally(config, sleep=_no_wait), make_salesforce(config, sleep=_no_wait)
            yield World(sandbox, config, path, state, vitally, salesforce, inbox, [])
        finally:
            inbox.close()
            state.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from _world(tmp_path)


def test_a_segment_added_becomes_an_owned_lead_in_one_mini_cycle_at_three_reads(world: World) -> None:
    assert world.cycle().counts["planned"] > 0  # the first cycle: nothing to route yet
    assert world.leads() == []
    world.sandbox.set_segment("acc_0003", "AM referral")  # a person, in the Vitally app
    world.event("vitally", "acc_0003")
    world.sandbox.reset()
    cursors = {name: world.state.cursor(name) for name in ("vitally.accounts", "salesforce.Lead")}

    report = world.mini()

    [lead] = world.leads()
    assert lead["Sync_Key__c"] == "crm-sync-acc_0003-1"
    assert lead["OwnerId"] in {m.user_id for m in world.config.pools["TAM", "US"].members}
    # Reads: the account, its linked leads (one query), the last look before the PUT. Writes:
    # the account's traits (one PUT) and the lead (one upsert).
    assert world.reads_and_writes() == (3, 2)
    assert report.counts["applied"] == report.counts["queued"] > 0
    assert world.state.event_counts() == {"done": 1}
    assert {name: world.state.cursor(name) for name in cursors} == cursors  # the cycle's cursors untouched
    assert [e for e, _ in world.logged] == ["event_cycle_started", "event_cycle_finished"]
    assert world.state.runs(1)[0]["mode"] == "event"
    # The next whole cycle finds nothing left to do: no second lead, no second draw.
    again = world.cycle()
    assert again.counts["planned"] == 0
    assert len(world.leads()) == 1
    assert len(world.state.assignments_like("crm-sync-acc_0003")) == 1


# A demo request as a web form creates it: no owner of crm-sync's, no Sync_Key__c.
DEMO_REQUEST = {
    "LastName": "Doe",
    "Company": "Acme Inc",
    "LeadSource": "Demo request",
    "Country": "US",
    "Status": "Open - Not Contacted",
    "Email": "jane.doe@northwind-robotics.com",
    "Form_Text__c": "We would like a demo for our data team of 40 engineers.",
}


def test_an_inbound_lead_gets_its_owner_in_one_mini_cycle_at_two_reads(world: World) -> None:
    world.cycle()
    [lead_id] = _web_to_lead(world, DEMO_REQUEST)
    world.event("salesforce", lead_id)
    world.sandbox.reset()

    report = world.mini()

    [lead] = world.leads()
    assert lead["OwnerId"] in {m.user_id for m in world.config.pools["TAE", "US"].members}
    assert lead["Routing_Rule__c"] == "new_business.demo_request"
    assert report.counts["parked"] == report.counts["failed"] == 0
    # Reads: the lead, the last look before its update. Writes: one collection.
    assert world.reads_and_writes() == (2, 1)
    assert world.cycle().counts["planned"] == 0


def test_a_lead_a_person_created_since_the_last_cycle_is_seen_fresh(world: World) -> None:
    world.cycle()
    world.sandbox.set_segment("acc_0004", "AM referral")
    rep = world.config.pools["TAM", "US"].members[0].user_id
    hand = {"LastName": "Hand", "Company": "Company 4", "Status": "Working", "LeadSource": "Other"}
    _web_to_lead(world, {**hand, "Vitally_Account_Id__c": "acc_0004", "OwnerId": rep})  # by a rep, a minute ago
    world.event("vitally", "acc_0004")
    world.mini()
    assert [lead["LastName"] for lead in world.leads()] == ["Hand"]  # an open lead: not routed again
    assert world.state.assignments_like("crm-sync-acc_0004") == []


def test_an_owner_drawn_by_a_cycle_whose_write_failed_is_reused_not_drawn_again(world: World) -> None:
    world.cycle()
    world.sandbox.set_segment("acc_0005", "AM referral")
    world.sandbox.add_fault("status", method="PATCH", path_prefix=COMPOSITE, status=503, count=10)
    report = world.cycle()  # plans and draws, the upsert fails and stays pending
    assert report.counts["failed"] > 0
    [drawn] = world.state.assignments_like("crm-sync-acc_0005")
    world.sandbox.clear_faults()
    world.event("vitally", "acc_0005")

    world.mini()

    [lead] = world.leads()
    assert lead["OwnerId"] == drawn.user_id
    assert world.state.assignments_like("crm-sync-acc_0005") == [drawn]
    assert world.state.outbox_counts() == {"pending": 0, "parked": 0}


def test_a_mini_cycle_sends_only_its_own_records_writes(world: World) -> None:
    world.cycle()
    world.sandbox.set_segment("acc_0006", "AM referral")
    world.sandbox.set_segment("acc_0007", "AM referral")
    world.sandbox.add_fault("status", method="PATCH", path_prefix=COMPOSITE, status=503, count=10)
    world.cycle()  # both leads planned, both upserts failed
    world.sandbox.clear_faults()
    world.event("vitally", "acc_0006")
    world.mini()
    assert [lead["Sync_Key__c"] for lead in world.leads()] == ["crm-sync-acc_0006-1"]
    pending = world.state.outbox("pending")
    assert {row.write.account for row in pending} == {"acc_0007"}  # waits for its own event or the cycle


def _opportunity_queries(world: World) -> list[str]:
    return [str(c["soql"]) for c in world.sandbox.calls() if "FROM Opportunity" in str(c.get("soql", ""))]


def _routed_then_converted(world: World) -> tuple[str, str]:
    """acc_0003's lead, routed by crm-sync, then converted by a person since the last cycle (the
    sandbox converts as Salesforce's `convertLead()` does: an Account, a Contact, an
    Opportunity in its first stage, the lead's `ConvertedOpportunityId`)."""
    world.cycle()
    world.sandbox.set_segment("acc_0003", "AM referral")
    world.cycle()
    [lead] = world.leads()
    world.cycle()
    made = world.sandbox.convert(lead["Id"])
    assert made["opportunity"]
    return lead["Id"], str(made["opportunity"])


def test_an_opportunity_converted_since_the_last_cycle_is_read_by_id(world: World) -> None:
    lead_id, opportunity = _routed_then_converted(world)
    whole_state = StateDB.snapshot(world.path)  # what a whole cycle would plan now (it reads the opportunity)
    try:
        whole = list(world.cycle(dry_run=True, state=whole_state).plan)
    finally:
        whole_state.close()
    world.event("salesforce", lead_id)  # a Flow's Outbound Message on the lead's update
    world.event("vitally", "acc_0003")
    world.sandbox.reset()

    report = world.mini()

    # The mirror holds no such opportunity: the mini-cycle reads it (one query) and decides with
    # it, as the whole cycle does: an open opportunity makes the account's stage the TAE's.
    [query] = _opportunity_queries(world)
    assert query.endswith(f"FROM Opportunity WHERE Id IN ('{opportunity}')")
    assert report.counts["sf_opportunity_read"] == 1
    mini = list(report.plan)
    assert _restricted(mini, {"acc_0003", lead_id}) == _restricted(whole, {"acc_0003", lead_id})
    [stage] = [w for w in mini if w.rule == "lifecycle.stage"]
    assert stage.fields == {"lifecycle_stage": "Technical account executive"}
    assert opportunity in stage.reason
    # The next whole cycle agrees: nothing left to change, no lead routed again.
    assert world.cycle().counts["planned"] == 0
    assert len(world.leads()) == 1


def test_a_converted_leads_opportunity_the_mirror_holds_is_not_read_again(world: World) -> None:
    lead_id, _ = _routed_then_converted(world)
    world.cycle()  # reads the opportunity
    world.event("salesforce", lead_id)
    world.sandbox.reset()
    world.mini()
    assert _opportunity_queries(world) == []


@pytest.mark.parametrize("named", ["x' OR Name != '", "006" + "A" * 400, "006\ud800AAAAAAAAAAA"])
def test_a_converted_opportunity_id_that_is_no_id_is_not_asked_for(world: World, named: str) -> None:
    lead_id, _ = _routed_then_converted(world)
    [lead] = world.leads()
    with world.sandbox._lock:  # a hostile record: the field holds what no Salesforce Id looks like
        world.sandbox._salesforce.tables["lead"].put({**lead, "ConvertedOpportunityId": named})
    world.event("salesforce", lead_id)
    world.sandbox.reset()
    report = world.mini()
    assert _opportunity_queries(world) == []
    assert world.state.event_counts() == {"done": 1}
    assert report.counts["failed"] == 0


@pytest.mark.parametrize("change", ["churned", "deleted"])
def test_an_account_the_cycles_would_not_read_is_left_alone(world: World, change: str) -> None:
    world.cycle()
    world.sandbox.set_segment("acc_0008", "AM referral")
    if change == "churned":
        world.sandbox.load({"vitally": {"accounts": [vitally_account(8, churnedAt=STAMP, segments=[])]}})
        record = "acc_0008"
    else:
        record = "acc_9999"
    world.event("vitally", record)
    report = world.mini()
    assert report.counts["queued"] == 0
    assert world.leads() == []
    [(status, note)] = world.state.inbox.execute("SELECT status, note FROM events").fetchall()
    assert (status, note) == ("done", "not planned: " + ("churned" if change == "churned" else "not found"))


def test_a_failed_read_leaves_the_events_pending_until_max_attempts(world: World) -> None:
    world.cycle()
    world.event("vitally", "acc_0001")
    world.sandbox.add_fault("reset", method="GET", path_prefix="/resources/accounts/", count=1000)
    world.config = replace(
        world.config,
        events=replace(world.config.events, max_attempts=2),
        vitally=replace(world.config.vitally, max_attempts=1),
    )
    world.vitally = make_vitally(world.config, sleep=_no_wait)
    with pytest.raises(UnreachableError):
        world.mini()
    assert world.state.pending_events(10)[0].attempts == 1
    with pytest.raises(UnreachableError):
        world.mini()
    assert world.state.event_counts() == {"failed": 1}
    assert world.state.runs(1)[0]["status"] == "failed"


# -- the same decisions as a whole plan -------------------------------------------------------------


def _restricted(plan: list[PlannedWrite], records: set[str]) -> list[tuple[Any, ...]]:
    return sorted(
        (w.system, w.op, w.record, sorted(w.payload.items()), w.rule)
        for w in plan
        if w.record in records or w.account in records
    )


def test_a_mini_cycle_plans_what_a_whole_plan_plans_for_its_records(tmp_path: Path) -> None:
    book = generate_book(150, seed=11, now=NOW, malformed_share=0.0)
    for world in _world(tmp_path, book):
        world.cycle()
        accounts = sorted(a["id"] for a in book["vitally"]["accounts"])[10:90:4]
        for account, segment in zip(accounts, itertools.cycle(["AM referral", "AE referral"]), strict=False):
            world.sandbox.set_segment(account, segment)
        sources = ["Demo request", "Sales email", "Trust center", "Demo request"]
        # A demo request without a real form is classified spam (demo.classification): give each one.
        inbound = {
            "Country": "US",
            "Status": "Open - Not Contacted",
            "Form_Text__c": "We would like a demo for our data team of 40 engineers.",
        }
        rows = [
            {**inbound, "LastName": f"L{i}", "Company": f"Co {i}", "LeadSource": s, "Email": f"j{i}@northwind{i}.com"}
            for i, s in enumerate(sources)
        ]
        leads = _web_to_lead(world, *rows)
        whole_state = StateDB.snapshot(world.path)  # the same state, planned whole (a dry run)
        try:
            whole = list(world.cycle(dry_run=True, state=whole_state).plan)
        finally:
            whole_state.close()
        for account in accounts:
            world.event("vitally", account)
        for lead in leads:
            world.event("salesforce", lead)
        mini = list(world.mini().plan)

        records = set(accounts) | set(leads)
        assert _restricted(mini, records) == _restricted(whole, records)
        assert sum(1 for w in mini if w.op == "upsert_lead") >= 3  # the book routes several of them
        assert sum(1 for w in mini if w.op == "update_lead" and "OwnerId" in w.payload) == len(leads)


def _stamp(world: World) -> str:
    """The sandbox clock's instant as Salesforce writes `SystemModstamp`."""
    return world.sandbox.now().strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _account_of(world: World, account: str, sf_account: str) -> None:
    """A Salesforce Account naming the Vitally account `account`, as a rep creates it."""
    world.sandbox.set_clock(advance_seconds=60)
    stamp = _stamp(world)
    row = {"Id": sf_account, "Name": account, "Vitally_Account_Id__c": account, "CreatedDate": stamp}
    world.sandbox.load({"salesforce": {"Account": [{**row, "SystemModstamp": stamp}]}})


def _opened_on(world: World, sf_account: str, opportunity: str) -> None:
    """A rep opens (or moves) an opportunity directly on a Salesforce Account (no lead converted;
    the shape of the sandbox book's opportunities)."""
    world.sandbox.set_clock(advance_seconds=60)
    stamp = _stamp(world)
    row = {
        "Id": opportunity,
        "Name": "Annual plan",
        "AccountId": sf_account,
        "StageName": "Prospecting",
        "CloseDate": "2026-12-20",
        "Amount": 24000,
        "CreatedDate": stamp,
    }
    world.sandbox.load({"salesforce": {"Opportunity": [{**row, "SystemModstamp": stamp}]}})


def _whole_plan(world: World) -> list[PlannedWrite]:
    """What a whole cycle would plan now (it reads every record changed since the last one)."""
    whole_state = StateDB.snapshot(world.path)
    try:
        return list(world.cycle(dry_run=True, state=whole_state).plan)
    finally:
        whole_state.close()


def test_an_opportunity_opened_on_an_account_is_planned_by_its_own_outbound_message(world: World) -> None:
    """A Flow on Opportunity sends its Outbound Message (sync.outbound.EVENT_OBJECTS): the
    mini-cycle reads the opportunity by id and plans the account it belongs to, from the mirror,
    as a whole cycle would: an open opportunity makes the account's stage the TAE's, within
    seconds instead of at the next cycle. Two reads: the opportunity, the last look before the PUT."""
    _account_of(world, "acc_0005", "001000000000077AAA")
    world.cycle()  # mirrors the Account
    opportunity = "006000000000077AAA"
    _opened_on(world, "001000000000077AAA", opportunity)
    whole = _whole_plan(world)
    world.event("salesforce", opportunity)
    world.sandbox.reset()

    report = world.mini()

    [query] = _opportunity_queries(world)
    assert query.endswith(f"FROM Opportunity WHERE Id IN ('{opportunity}')")
    mini = list(report.plan)
    assert mini and _restricted(mini, {"acc_0005"}) == _restricted(whole, {"acc_0005"})
    [stage] = [w for w in mini if w.rule == "lifecycle.stage"]
    assert stage.fields == {"lifecycle_stage": "Technical account executive"}
    assert report.counts["applied"] == len(mini) and world.state.event_counts() == {"done": 1}
    assert world.reads_and_writes() == (2, 1)  # the opportunity's query and the account's last look; its PUT
    assert world.cycle().counts["planned"] == 0  # the next whole cycle agrees


def test_an_opportunity_moved_to_another_account_plans_both(world: World) -> None:
    _account_of(world, "acc_0006", "001000000000078AAA")
    opportunity = "006000000000078AAA"
    _opened_on(world, "001000000000078AAA", opportunity)
    world.cycle()
    world.cycle()  # reads its writes back: nothing left to plan
    # The rep creates an Account for acc_0007 and moves the opportunity there: the Account, not
    # mirrored yet, is read by id (one query more).
    _account_of(world, "acc_0007", "001000000000079AAA")
    _opened_on(world, "001000000000079AAA", opportunity)
    whole = _whole_plan(world)
    world.event("salesforce", opportunity)
    world.sandbox.reset()

    mini = list(world.mini().plan)

    account_queries = [str(c["soql"]) for c in world.sandbox.calls() if "FROM Account" in str(c.get("soql", ""))]
    assert [q.rpartition(" FROM ")[2] for q in account_queries] == ["Account WHERE Id IN ('001000000000079AAA')"]

    accounts = {"acc_0006", "acc_0007"}
    assert {w.record for w in mini if w.system == "vitally"} == accounts  # each one's stage moves
    assert _restricted(mini, accounts) == _restricted(whole, accounts)
    assert world.cycle().counts["planned"] == 0


def test_an_opportunity_of_no_account_crm_sync_knows_plans_nothing(world: World) -> None:
    world.cycle()
    opportunity = "006000000000080AAA"
    world.sandbox.load(
        {
            "salesforce": {
                "Opportunity": [
                    {
                        "Id": opportunity,
                        "Name": "Unrelated",
                        "AccountId": "001000000000080AAA",
                        "StageName": "Prospecting",
                        "CloseDate": "2026-12-20",
                        "SystemModstamp": _stamp(world),
                    }
                ]
            }
        }
    )
    world.event("salesforce", opportunity)
    world.sandbox.reset()
    report = world.mini()
    assert list(report.plan) == [] and world.state.event_counts() == {"done": 1}
    assert world.reads_and_writes() == (2, 0)  # the opportunity, and its Account, which the mirror does not hold


def test_opportunity_events_plan_what_a_whole_plan_plans_for_their_accounts(tmp_path: Path) -> None:
    """Over a generated book: reps close open opportunities (lost, unresponsive), reopen closed
    ones and open new ones on the Accounts the book has; each opportunity's event plans, for the
    accounts it belongs to, exactly what a whole plan plans for them."""
    book = generate_book(150, seed=11, now=NOW, malformed_share=0.0)
    for world in _world(tmp_path, book):
        world.cycle()
        world.cycle()  # reads its writes back
        world.sandbox.set_clock(advance_seconds=60)
        stamp = _stamp(world)
        opportunities = sorted(book["salesforce"]["Opportunity"], key=lambda o: str(o["Id"]))
        changed: list[dict[str, Any]] = []
        for opportunity in opportunities[:16]:
            if str(opportunity["StageName"]).startswith("Closed"):
                change = {"StageName": "Prospecting", "CloseDate": "2026-12-31", "Loss_Reason__c": None}
            else:
                change = {
                    "StageName": "Closed Lost",
                    "CloseDate": NOW.date().isoformat(),
                    "Loss_Reason__c": "Unresponsive",
                }
            changed.append({**opportunity, **change, "SystemModstamp": stamp})
        for i, sf_account in enumerate(sorted({str(o["AccountId"]) for o in opportunities})[:6]):
            new = {"Id": f"0069{i:014d}", "Name": "Expansion", "AccountId": sf_account, "StageName": "Prospecting"}
            changed.append({**new, "CloseDate": "2026-12-31", "CreatedDate": stamp, "SystemModstamp": stamp})
        world.sandbox.load({"salesforce": {"Opportunity": changed}})
        whole = _whole_plan(world)
        for opportunity in changed:
            world.event("salesforce", str(opportunity["Id"]))

        mini = list(world.mini().plan)

        theirs = SalesforceFacts.accounts_of_opportunities(world.state, [str(o["Id"]) for o in changed])
        assert len(theirs) >= 10
        assert _restricted(mini, theirs) == _restricted(whole, theirs)
        assert {w.account or w.record for w in mini} <= theirs  # nothing else is planned
        assert sum(1 for w in mini if w.rule == "lifecycle.stage") >= 5  # stages move both ways


def test_a_bdr_qualified_lead_of_an_account_is_routed_and_staged_once(world: World) -> None:
    """A BDR hands an outbound lead they qualified to the new business team (LeadSource BDR, back
    with the org's default owner, linked to its Vitally account): one cycle gives it a TAE and the
    account the stage "New business lead"; the next cycle plans nothing (the stage is the same on
    both sides of the write that routes it)."""
    world.cycle()
    [lead_id] = _web_to_lead(
        world,
        {**DEMO_REQUEST, "LeadSource": "BDR", "Status": "Working", "Vitally_Account_Id__c": "acc_0003"},
    )
    first = world.cycle()
    [lead] = [lead for lead in world.leads() if lead["Id"] == lead_id]
    assert lead["Routing_Rule__c"] == "new_business.bdr_qualified"
    assert lead["OwnerId"] in {m.user_id for m in world.config.pools["TAE", "US"].members}
    account = next(a for a in world.sandbox.state()["vitally"]["accounts"] if a["id"] == "acc_0003")
    assert account["traits"]["lifecycle_stage"] == "New business lead"
    assert first.counts["planned"] > 0
    assert world.cycle().counts["planned"] == 0


def _stage_of(world: World, account: str) -> Any:
    vitally = world.sandbox.state()["vitally"]["accounts"]
    return next(a for a in vitally if a["id"] == account)["traits"].get("lifecycle_stage")


def test_a_lead_event_moves_its_accounts_stage_in_the_same_mini_cycle(world: World) -> None:
    """The same BDR hand-over, by the lead's own Outbound Message: the mini-cycle routes the lead
    and plans the account it is linked to (`Vitally_Account_Id__c`), from the mirror, so the
    account is a "New business lead" within seconds, not at the next cycle (before 2026-12-07 the
    stage waited for it). Three reads: the lead, the last look before its update, the last look
    before the account's PUT; two writes."""
    world.cycle()
    assert _stage_of(world, "acc_0003") != "New business lead"
    [lead_id] = _web_to_lead(
        world,
        {**DEMO_REQUEST, "LeadSource": "BDR", "Status": "Working", "Vitally_Account_Id__c": "acc_0003"},
    )
    whole = _whole_plan(world)
    world.event("salesforce", lead_id)
    world.sandbox.reset()

    report = world.mini()

    mini = list(report.plan)
    assert _restricted(mini, {"acc_0003"}) == _restricted(whole, {"acc_0003"})
    assert [w.fields for w in mini if w.rule == "lifecycle.stage"] == [{"lifecycle_stage": "New business lead"}]
    assert _stage_of(world, "acc_0003") == "New business lead"
    [lead] = [lead for lead in world.leads() if lead["Id"] == lead_id]
    assert lead["OwnerId"] in {m.user_id for m in world.config.pools["TAE", "US"].members}
    assert world.reads_and_writes() == (3, 2)
    assert report.counts["applied"] == len(mini) and world.state.event_counts() == {"done": 1}
    assert world.cycle().counts["planned"] == 0  # the next whole cycle agrees


def test_lead_events_plan_what_a_whole_plan_plans_for_their_accounts(tmp_path: Path) -> None:
    """Over a generated book (its leads' shapes: sandbox.generator, from the org's Lead fields):
    people close open linked leads (disqualified, or qualified by their BDR), move a lead to
    another account, and a form creates leads linked to accounts; each lead's Outbound Message
    plans, for the accounts the lead was and is linked to, exactly what a whole plan plans."""
    book = generate_book(150, seed=11, now=NOW, malformed_share=0.0)
    for world in _world(tmp_path, book):
        world.cycle()
        world.cycle()  # reads its writes back
        linked = sorted(
            (lead for lead in world.leads() if lead.get("Vitally_Account_Id__c")), key=lambda lead: str(lead["Id"])
        )
        open_ = [lead for lead in linked if lead["Status"] in ("Open - Not Contacted", "Working", "In progress")]
        assert len(open_) >= 6
        before = {str(lead["Id"]): str(lead["Vitally_Account_Id__c"]) for lead in linked}
        accounts = sorted({a["id"] for a in book["vitally"]["accounts"]})
        changed: list[str] = []
        for lead, change in zip(
            open_,
            [
                {"Status": "Disqualified"},
                {"Status": "Qualified", "LeadSource": "BDR"},
                {"Vitally_Account_Id__c": accounts[-1]},
                {"Status": "Disqualified"},
                {"Status": "Qualified", "LeadSource": "BDR"},
                {"Vitally_Account_Id__c": accounts[-2]},
            ],
            strict=False,
        ):
            person_sets_lead(world.sandbox.url, str(lead["Id"]), **change)
            changed.append(str(lead["Id"]))
        form = {**DEMO_REQUEST, "Company": "Form Co", "Email": "ada@form-co.com"}
        changed += _web_to_lead(
            world, *({**form, "LastName": f"F{i}", "Vitally_Account_Id__c": accounts[20 + 7 * i]} for i in range(3))
        )
        whole = _whole_plan(world)
        for lead_id in changed:
            world.event("salesforce", lead_id)

        mini = list(world.mini().plan)

        now = {str(lead["Id"]): str(lead.get("Vitally_Account_Id__c")) for lead in world.leads()}
        theirs = {before[i] for i in changed if i in before} | {now[i] for i in changed}
        assert len(theirs) >= 10
        records = theirs | set(changed)
        assert _restricted(mini, records) == _restricted(whole, records)
        assert {w.account or w.record for w in mini} <= records  # nothing else is planned
        assert sum(1 for w in mini if w.rule == "lifecycle.stage") >= 4  # the accounts' stages move
        assert world.cycle().counts["planned"] == 0  # the next whole cycle agrees


def test_a_lead_whose_team_has_no_pool_for_its_region_is_reported_not_owned(world: World) -> None:
    """An org with a TAE pool for the US only (no `region = "*"`): a demo request from Germany is
    routed (its routing fields written) but gets no owner from crm-sync, and the cycle says so,
    with the lead and the missing pool (before 2026-12-07 it said nothing). The lead keeps the
    owner Salesforce gave it; its judgement then holds (once the cycle after has read the routing
    write back), so it is not reported at every cycle."""
    world.config = replace(world.config, pools={k: v for k, v in world.config.pools.items() if k != ("TAE", "*")})
    world.cycle()
    [lead_id] = _web_to_lead(world, {**DEMO_REQUEST, "Country": "DE"})
    [lead] = world.leads()
    given = lead["OwnerId"]

    report = world.cycle()

    [lead] = world.leads()
    assert lead["Routing_Rule__c"] == "new_business.demo_request" and lead["OwnerId"] == given
    assert report.counts["no_pool"] == 1
    [said] = report.fallbacks
    assert said.startswith(f"{lead_id}: no TAE pool for region EU ")
    world.cycle()  # reads its write back: the lead is judged again (and said again)
    for _ in range(2):
        again = world.cycle()
        assert again.counts["no_pool"] == 0 and again.fallbacks == [] and again.counts["leads_evaluated"] == 0
    assert [lead["OwnerId"] for lead in world.leads()] == [given]


@pytest.mark.parametrize("churn_event", [True, False], ids=["the-churn-event-first", "no-churn-event"])
def test_a_lead_event_writes_nothing_to_an_account_that_churned_since_the_last_cycle(
    world: World, churn_event: bool
) -> None:
    """acc_0003 churns in Vitally after the last cycle (its own event, when one comes, leaves it
    unplanned); then a BDR lead linked to it sends its Outbound Message. A whole cycle plans
    nothing for a churned account, and nothing is written: the account is planned from the mirror
    as the last cycle read it, and the last look, which reads the account, drops the write. From
    a review's reproduction: the stage was written to the churned account."""
    world.cycle()
    churned_at = "2026-11-22T08:30:00.000Z"
    account = next(a for a in world.sandbox.state()["vitally"]["accounts"] if a["id"] == "acc_0003")
    world.sandbox.load({"vitally": {"accounts": [{**account, "churnedAt": churned_at, "updatedAt": churned_at}]}})
    if churn_event:
        world.event("vitally", "acc_0003")
        world.mini()
    before = dict(account["traits"])
    bdr = {**DEMO_REQUEST, "LeadSource": "BDR", "Status": "Working", "Vitally_Account_Id__c": "acc_0003"}
    [lead_id] = _web_to_lead(world, bdr)
    whole = _whole_plan(world)
    world.event("salesforce", lead_id)

    report = world.mini()

    assert [w for w in whole if w.system == "vitally"] == []
    planned = [w for w in report.plan if w.system == "vitally"]
    assert report.counts["dropped"] == len(planned) > 0
    after = next(a for a in world.sandbox.state()["vitally"]["accounts"] if a["id"] == "acc_0003")
    assert after["traits"] == before


def test_an_onboarding_account_whose_region_has_no_specialist_pool_is_reported_once_and_holds(
    tmp_path: Path,
) -> None:
    """An org whose Onboarding pool serves the US only: a new payer in Germany (onboarding.lead)
    can get no specialist. The cycles that judge it say that no specialist was drawn (the
    specialist is a Vitally trait and task: no Salesforce owner or assignment rule is involved);
    then its judgement holds, as a lead's does, rather than judging and saying it at every cycle,
    until the pools change: the next cycle draws its specialist."""
    account = new_payer("DE")
    probe = example_against("http://127.0.0.1:1")
    said = [
        'onboarding-acc_0001: no Onboarding pool for region EU ([[pools]] team and region, or "*"): '
        "no specialist drawn, the account's specialist trait stays empty and no task is created"
    ]
    for world in _world(tmp_path, {"vitally": {"accounts": [account]}, "salesforce": {"User": pool_users(probe)}}):
        pools = dict(world.config.pools)
        everywhere = pools.pop(("Onboarding", "*"))
        pools["Onboarding", "US"] = replace(everywhere, region="US")
        world.config = replace(world.config, pools=pools)
        specialist = world.config.vitally.written_traits.get("onboarding_specialist", "onboarding_specialist")

        def traits(world: World = world) -> dict[str, Any]:
            found = next(a for a in world.sandbox.state()["vitally"]["accounts"] if a["id"] == "acc_0001")
            return dict(found["traits"])

        report = world.cycle()
        assert report.counts["no_pool"] == 1 and report.fallbacks == said
        world.cycle()  # reads back the first cycle's writes to the account: judged (and said) again
        for _ in range(2):
            again = world.cycle()
            assert again.counts["no_pool"] == 0 and again.fallbacks == []
            assert again.counts["accounts_evaluated"] == 0 and again.counts["accounts_not_judged"] == 1
        assert not traits().get(specialist)

        world.config = replace(world.config, pools={**pools, ("Onboarding", "EU"): replace(everywhere, region="EU")})
        drawn = world.cycle()
        assert drawn.counts["no_pool"] == 0 and drawn.fallbacks == []
        names = {member.name for member in everywhere.members}
        assert traits().get(specialist) in names
