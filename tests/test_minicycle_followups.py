"""An event's mini-cycle writes a lead exactly as a cycle does, follow-ups and fields included
(issue 17): the lead it routes is announced in Slack and a support request gets its Zendesk
ticket, within the mini-cycle and once; and it reads a Lead with the fields a cycle reads (with
State and Country/Territory picklists, `CountryCode`), so the mirror holds the same row. Found by
a review of the event path: before, a mini-cycle queued no follow-up (and the next cycle, finding
the lead routed, none either), and it read leads without `CountryCode`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_minicycle import DEMO_REQUEST, World, _web_to_lead, _world

from core.records import parse_lead
from sandbox.slack import WEBHOOK_PATH
from state import StateDB


@pytest.fixture(name="world")
def _world_fixture(tmp_path: Path) -> Iterator[World]:
    yield from _world(tmp_path)


SALES = DEMO_REQUEST
SUPPORT = {
    **SALES,
    "LastName": "Roe",
    "Email": "sam.roe@northwind-robotics.com",
    "Form_Text__c": "Our session replays stopped loading since yesterday and the dashboard shows an error. "
    "Can you fix this bug? We are already customers.",
}


def _with_followups(world: World) -> None:
    """Announcements by the sandbox's incoming webhook, tickets in the sandbox's Zendesk."""
    world.config = replace(
        world.config,
        announcements=replace(
            world.config.announcements, webhook_url=f"{world.sandbox.url}{WEBHOOK_PATH}abcdefgh12345678"
        ),
        zendesk=replace(world.config.zendesk, base_url=world.sandbox.url, email="ops@example.com", api_token="zd-1"),
    )
    assert world.config.announcements.enabled and world.config.zendesk.enabled


def _posts(world: World) -> Counter[str]:
    """Posts in the channel per lead id named in the post (the incoming webhook carries no metadata)."""
    messages = world.sandbox.state()["slack"]["messages"]
    return Counter(
        lead["Id"] for lead in world.leads() for m in messages if f"/lightning/r/Lead/{lead['Id']}/view" in m["text"]
    )


def _tickets(world: World) -> Counter[str]:
    return Counter(t["external_id"] for t in world.sandbox.state()["zendesk"]["tickets"])


def test_an_outbound_message_s_lead_is_announced_and_a_support_request_ticketed_by_the_mini_cycle(
    world: World,
) -> None:
    _with_followups(world)
    world.cycle()
    sales, support = _web_to_lead(world, SALES, SUPPORT)
    world.event("salesforce", sales)
    world.event("salesforce", support)

    report = world.mini()

    leads = {lead["Id"]: lead for lead in world.leads()}
    assert leads[sales]["OwnerId"] in {m.user_id for m in world.config.pools["TAE", "US"].members}
    assert leads[support]["Classification__c"] == "support"
    assert report.counts["followups_queued"] == 2
    assert _posts(world) == Counter({sales: 1})  # announced within the event's mini-cycle
    assert _tickets(world) == Counter({f"crm-sync-lead-{support}": 1})
    # The next cycle finds them done: no second post, no second ticket.
    world.cycle()
    assert _posts(world) == Counter({sales: 1})
    assert _tickets(world) == Counter({f"crm-sync-lead-{support}": 1})


def test_the_lead_a_segment_event_creates_is_announced_by_the_mini_cycle(world: World) -> None:
    _with_followups(world)
    world.cycle()
    world.sandbox.set_segment("acc_0003", "AM referral")
    world.event("vitally", "acc_0003")

    world.mini()

    [lead] = world.leads()
    assert lead["Sync_Key__c"] == "crm-sync-acc_0003-1"
    assert _posts(world) == Counter({lead["Id"]: 1})
    world.cycle()
    assert _posts(world) == Counter({lead["Id"]: 1})


def test_without_slack_or_zendesk_a_mini_cycle_queues_no_follow_up(world: World) -> None:
    world.cycle()
    [lead_id] = _web_to_lead(world, SALES)
    world.event("salesforce", lead_id)

    report = world.mini()

    assert report.counts["followups_queued"] == 0
    assert world.state.db.execute("SELECT COUNT(*) FROM outbox WHERE system IN ('slack', 'zendesk')").fetchone() == (0,)


# Salesforce's integration value for CI in the State and Country/Territory picklists, which
# `normalise_country` does not know as a name: only `CountryCode` says which country it is.
IVORIAN = {**SALES, "Country": "Cote d'Ivoire", "CountryCode": "CI"}


def test_a_mini_cycle_reads_a_lead_with_the_fields_a_cycle_reads_and_plans_what_it_plans(world: World) -> None:
    assert world.config.salesforce.state_country_picklists  # the sandbox org's, and the default
    world.cycle()
    [lead_id] = _web_to_lead(world, IVORIAN)
    whole_state = StateDB.snapshot(world.path)
    try:
        whole = [w for w in world.cycle(dry_run=True, state=whole_state).plan if w.record == lead_id]
        assert parse_lead(whole_state.sf_raw("Lead", lead_id) or {}).country == "CI"
    finally:
        whole_state.close()
    assert whole, "a cycle routes the lead"
    world.event("salesforce", lead_id)

    report = world.mini()

    mirrored: dict[str, Any] = world.state.sf_raw("Lead", lead_id) or {}
    assert mirrored.get("CountryCode") == "CI"
    assert not report.record_errors
    mini = [w for w in report.plan if w.record == lead_id]
    assert [(w.op, w.payload, w.rule) for w in mini] == [(w.op, w.payload, w.rule) for w in whole]
    assert world.cycle().counts["planned"] == 0  # routed once, by the event
