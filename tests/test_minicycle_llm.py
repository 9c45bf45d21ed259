"""With `[rules.demo] classifier = "llm"`, a demo request reached by the event path is classified
and routed at once (issue 17: an inbound lead owned within seconds), not a cycle or two later.

Found by the review of the event path (2026-12-04): a mini-cycle never asked the LLM, so a new
demo request named by an Outbound Message waited, unowned, for the next cycle to ask and the one
after it to route (up to twice the interval; the handbook: a demo request is worth most in its
first minutes). The LLM answers through `sandbox.llm.LLMStub`, a real HTTP server speaking the
chat-completions wire format (OpenAI's API reference, as tests/test_e2e_llm.py)."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_minicycle import DEMO_REQUEST, World, _web_to_lead, _world

from sandbox.llm import LLMStub
from sync.app import make_outlets
from sync.config import Config
from sync.daemon import _Cycles, _Events, _JsonLog
from sync.event_settings import EventSettings
from sync.vocabulary import CycleReport

KEY = "sk-stub-key"
SECRET = "vitally-webhook-secret-0123456789abcdef"


@pytest.fixture(name="stub")
def _stub() -> Iterator[LLMStub]:
    with LLMStub(api_key=KEY) as running:
        running.answers[DEMO_REQUEST["Form_Text__c"]] = {"label": "sales", "reason": "a data team asks for a demo"}
        yield running


@pytest.fixture(name="world")
def _world_fixture(tmp_path: Path, stub: LLMStub) -> Iterator[World]:
    for world in _world(tmp_path):
        world.config = _asking(world.config, stub)
        yield world


def _asking(config: Config, stub: LLMStub) -> Config:
    """The config with the `llm` classifier asking the stub."""
    demo = replace(config.policy.demo, classifier="llm")
    llm = replace(config.llm, base_url=stub.base_url, model="stub-model", api_key=KEY)
    return replace(config, policy=replace(config.policy, demo=demo), llm=llm)


def _mini(world: World) -> CycleReport:
    return world.mini(make_outlets(world.config))


def _tae_us(world: World) -> set[str]:
    return {m.user_id for m in world.config.pools["TAE", "US"].members}


def test_an_outbound_message_s_demo_request_is_asked_about_and_routed_in_its_mini_cycle(
    world: World, stub: LLMStub
) -> None:
    world.cycle()
    [lead_id] = _web_to_lead(world, DEMO_REQUEST)
    world.event("salesforce", lead_id)

    report = _mini(world)

    [lead] = world.leads()
    assert report.counts["triage_asked"] == 1
    assert lead["OwnerId"] in _tae_us(world)  # before: None, waiting for the next cycle to ask
    assert lead["Classification__c"] == "sales"
    assert len(stub.requests) == 1
    # Salesforce repeats a delivery: the lead is read again, the submission is not asked again.
    world.event("salesforce", lead_id)
    assert _mini(world).counts["triage_asked"] == 0
    assert len(stub.requests) == 1
    assert world.cycle().counts["planned"] == 0


def test_a_lead_read_twice_in_one_mini_cycle_is_asked_about_once(world: World, stub: LLMStub) -> None:
    """Linked to an account named by a Vitally event and named by an Outbound Message itself."""
    world.cycle()
    [lead_id] = _web_to_lead(world, {**DEMO_REQUEST, "Vitally_Account_Id__c": "acc_0003"})
    world.event("salesforce", lead_id)
    world.event("vitally", "acc_0003")

    report = _mini(world)

    assert report.counts["triage_asked"] == 1
    assert len(stub.requests) == 1
    [lead] = world.leads()
    assert lead["Classification__c"] == "sales"


def test_the_daemon_routes_the_leads_a_cycle_got_verdicts_for_without_waiting_a_cycle(
    world: World, stub: LLMStub
) -> None:
    """A demo request first seen by a scheduled cycle: the cycle asks after its writes, and the
    daemon queues the answered leads as events, so their mini-cycle routes them right away."""
    config = replace(world.config, events=EventSettings(vitally_secret=SECRET)).with_state(world.path)
    assert config.events.enabled
    world.config = config
    out = io.StringIO()
    log = _JsonLog(out)
    cycles = _Cycles(world.config, world.state, log, lambda: False, lambda seconds: None)
    events = _Events(world.config, world.state, cycles, log, lambda: False)
    try:
        cycles()
        [lead_id] = _web_to_lead(world, DEMO_REQUEST)
        cycles()  # reads the lead, cannot route it yet (no verdict), then asks
        assert cycles.triaged() == [lead_id]
        assert world.leads()[0]["OwnerId"] not in _tae_us(world)

        events.after_cycle(cycles.triaged())
        assert events.wake.is_set()  # the main loop's nap ends at once
        events.process()

        [lead] = world.leads()
        assert lead["OwnerId"] in _tae_us(world)
        assert len(stub.requests) == 1
        assert world.state.pending_events(100) == []
        logged = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
        assert logged.count("event_cycle_finished") == 1
        assert "event_not_queued" not in logged
    finally:
        events.close()


def test_a_cycle_that_fails_before_it_begins_does_not_queue_the_last_cycle_s_leads_again(
    world: World, stub: LLMStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review (2026-12-05): the last report was kept, so a cycle failing before its
    report existed (the state locked as it began) had the daemon queue the previous verdicts again."""
    cycles = _Cycles(world.config, world.state, _JsonLog(io.StringIO()), lambda: False, lambda seconds: None)
    cycles()
    _web_to_lead(world, DEMO_REQUEST)
    cycles()
    assert len(cycles.triaged()) == 1

    def locked(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr("sync.daemon.run_cycle", locked)
    cycles()  # logged and counted as failed, never raised

    assert cycles.triaged() == []
    assert cycles.stats["failures"] == 1


def test_a_burst_of_demo_requests_spends_no_more_than_the_hourly_cap(world: World, stub: LLMStub) -> None:
    """A spammed form sends a demo request a second, each an Outbound Message: each mini-cycle
    may ask (`max_calls_per_cycle` bounds one mini-cycle), so before `max_calls_per_hour` the LLM
    spend of a burst had no bound. Over the cap a request waits, unowned, counted and logged."""
    world.config = replace(world.config, llm=replace(world.config.llm, max_calls_per_hour=3))
    world.cycle()
    leads = [
        _web_to_lead(world, {**DEMO_REQUEST, "LastName": f"Doe {i}", "Email": f"jane{i}@northwind-robotics.com"})[0]
        for i in range(5)
    ]
    reports = []
    for lead_id in leads:
        world.event("salesforce", lead_id)
        reports.append(_mini(world))

    assert [r.counts["triage_asked"] for r in reports] == [1, 1, 1, 0, 0]
    assert [r.counts["triage_deferred"] for r in reports] == [0, 0, 0, 1, 1]
    assert len(stub.requests) == 3
    owners = {lead["Id"]: lead["OwnerId"] for lead in world.leads()}
    assert all(owners[lead_id] in _tae_us(world) for lead_id in leads[:3])
    assert all(owners[lead_id] not in _tae_us(world) for lead_id in leads[3:])  # waiting, not routed
    deferred = [data for event, data in world.logged if event == "triage_deferred"]
    assert deferred == [{"submissions": 1, "limit": "triage.llm.max_calls_per_hour"}] * 2
    # The scheduled cycle counts against the same hour: it asks nothing either.
    report = world.cycle()
    assert report.counts["triage_asked"] == 0
    assert report.counts["triage_deferred"] == 2
    assert len(stub.requests) == 3


def test_the_requests_of_the_last_hour_are_counted_and_a_days_kept(world: World) -> None:
    state = world.state
    for number, at in enumerate(("2026-11-21T07:59:59.999Z", "2026-11-22T07:59:59.999Z", "2026-11-22T08:00:00.000Z")):
        with state.atomic():
            state.triage_asked(f"00Q{number}", "digest", at)  # committed before the request goes out
    assert state.llm_calls_since("2026-11-22T08:00:00.000Z") == 1
    assert state.llm_calls_since("2026-11-21T00:00:00.000Z") == 2  # the oldest dropped: over a day old
