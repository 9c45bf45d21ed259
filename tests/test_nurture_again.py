"""A lead nurtured again gets another revisit task (plg-lead-qualification.md: "If the answer is
'not yet,' change status to 'nurturing' and come back"; "Set a Vitally task to revisit in 30-60
days"). The task was once per lead: a TAM who nurtured a lead, qualified it, then said "not yet"
again got no reminder the second time (found by a review of a lead's life, 2026-12-07). The first
spell keeps the task key crm-sync has always used, so an upgrade creates no second task for it.
Against the in-process sandbox, cycles run at moving times."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import band_account
from test_minicycle import NOW, World
from test_people_win import _person_patches_lead, _world_of

from sync.cycle import run_cycle
from sync.vocabulary import CycleReport

NURTURE = "crm-sync:episode.nurture_follow_up:acc_0001:"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from _world_of(tmp_path, band_account("acc_0001", "Band Co", "bandco.com"))


def _cycle_at(world: World, when: datetime) -> CycleReport:
    world.sandbox.set_clock(when)
    return run_cycle(world.config, world.state, world.vitally, world.salesforce, clock=lambda: when, now=when)


def _nurture_tasks(world: World) -> list[dict[str, Any]]:
    tasks = world.sandbox.state()["vitally"]["tasks"]
    return sorted((t for t in tasks if str(t.get("externalId", "")).startswith(NURTURE)), key=lambda t: t["externalId"])


def test_each_not_yet_gets_its_revisit_task_once(world: World) -> None:
    _cycle_at(world, NOW)
    [lead] = [lead for lead in world.leads() if lead.get("Sync_Key__c")]
    lead_id = lead["Id"]

    first = NOW + timedelta(days=1)
    world.sandbox.set_clock(first)
    _person_patches_lead(world, lead_id, Status="Nurturing")
    for day in (1, 2, 3):
        _cycle_at(world, NOW + timedelta(days=day, hours=1))
    assert [t["externalId"] for t in _nurture_tasks(world)] == [f"{NURTURE}{lead_id}"]  # the key as it always was

    world.sandbox.set_clock(NOW + timedelta(days=100))
    _person_patches_lead(world, lead_id, Status="In progress")
    _cycle_at(world, NOW + timedelta(days=100, hours=1))
    again = NOW + timedelta(days=120)
    world.sandbox.set_clock(again)
    _person_patches_lead(world, lead_id, Status="Nurturing")
    for day in (120, 121, 122):
        _cycle_at(world, NOW + timedelta(days=day, hours=1))

    tasks = _nurture_tasks(world)
    assert [t["externalId"] for t in tasks] == [f"{NURTURE}{lead_id}", f"{NURTURE}{lead_id}:{again.date()}"]
    assert tasks[1]["dueDate"] == (again + timedelta(days=45, hours=1)).date().isoformat()


TOUCHED = NOW + timedelta(days=30)


def _nurtured_then_touched(world: World, *, read: bool = True) -> dict[str, Any]:
    """crm-sync's lead, nurtured by its owner a day after `NOW` (its revisit task sent), then edited
    by a marketing tool at `TOUCHED`, the edit read by a cycle unless not `read`; the lead as first read."""
    _cycle_at(world, NOW)
    [lead] = [lead for lead in world.leads() if lead.get("Sync_Key__c")]
    world.sandbox.set_clock(NOW + timedelta(days=1))
    _person_patches_lead(world, lead["Id"], Status="Nurturing")
    _cycle_at(world, NOW + timedelta(days=1, hours=1))
    world.sandbox.set_clock(TOUCHED)
    _person_patches_lead(world, lead["Id"], Description="Opened the nurture email")  # a marketing tool
    if read:
        _cycle_at(world, TOUCHED + timedelta(hours=1))
    return lead


def test_a_resync_after_the_lead_was_touched_adds_no_second_task(world: World) -> None:
    """The review that had the first version reverted: `resync` forgot the status notes, so the
    spell was dated by the lead's SystemModstamp, after the task already sent, and looked new."""
    lead = _nurtured_then_touched(world)

    with world.state.atomic():
        world.state.reset_mirror()  # what `crm-sync resync` does before its full read
    for day in (31, 32):
        _cycle_at(world, NOW + timedelta(days=day))

    assert [t["externalId"] for t in _nurture_tasks(world)] == [f"{NURTURE}{lead['Id']}"]


def test_a_state_resynced_before_status_dates_survived_adds_no_second_task(world: World) -> None:
    """The adversarial review's upgrade case: a resync of the release before dated every lead by
    its SystemModstamp (the notes gone), after the task sent for the lead's "not yet". Spells
    count from the state's first cycle that dated them (`nurture_spells_since`), so that date is
    the same spell's, and a "not yet" after it still gets its task."""
    lead = _nurtured_then_touched(world)
    with world.state.atomic():  # the old release's resync: the mirror and its notes gone
        for table in ("cursors", "accounts", "sf_records", "lead_status_notes"):
            world.state.db.execute(f"DELETE FROM {table}")
        world.state.db.execute("DELETE FROM marks")  # and the state is one of that release
    for day in (31, 32):
        _cycle_at(world, NOW + timedelta(days=day))
    assert [t["externalId"] for t in _nurture_tasks(world)] == [f"{NURTURE}{lead['Id']}"]

    world.sandbox.set_clock(NOW + timedelta(days=60))
    _person_patches_lead(world, lead["Id"], Status="In progress")
    _cycle_at(world, NOW + timedelta(days=60, hours=1))
    again = NOW + timedelta(days=80)
    world.sandbox.set_clock(again)
    _person_patches_lead(world, lead["Id"], Status="Nurturing")
    _cycle_at(world, again + timedelta(hours=1))
    assert [t["externalId"] for t in _nurture_tasks(world)] == [
        f"{NURTURE}{lead['Id']}",
        f"{NURTURE}{lead['Id']}:{again.date()}",
    ]


def _old_release_resync(world: World) -> None:
    """What a resync of the release before status dates survived left: the mirror and its notes
    gone, and no mark of when spells began to be dated."""
    with world.state.atomic():
        for table in ("cursors", "accounts", "sf_records", "lead_status_notes", "marks"):
            world.state.db.execute(f"DELETE FROM {table}")


def test_an_old_resync_and_the_upgrade_on_the_day_a_tool_touched_the_lead_add_no_second_task(world: World) -> None:
    """A second adversarial review: the upgrade's first cycle ran the day a marketing tool touched
    the lead, so the re-dated spell began on the mark's very day. A spell counts from the day after."""
    lead = _nurtured_then_touched(world, read=False)
    _old_release_resync(world)
    _cycle_at(world, TOUCHED + timedelta(hours=2))
    _cycle_at(world, TOUCHED + timedelta(days=1))
    assert [t["externalId"] for t in _nurture_tasks(world)] == [f"{NURTURE}{lead['Id']}"]


def test_the_mark_is_the_wall_clock_s_not_the_rules_now(world: World) -> None:
    """`crm-sync run --now <a past day>` as the upgrade's first cycle marked that past day for good
    (a second adversarial review): the mark takes the cycle's wall clock."""
    lead = _nurtured_then_touched(world)
    _old_release_resync(world)
    real = NOW + timedelta(days=31)
    world.sandbox.set_clock(real)
    run_cycle(
        world.config, world.state, world.vitally, world.salesforce, clock=lambda: real, now=NOW - timedelta(days=200)
    )
    _cycle_at(world, NOW + timedelta(days=32))
    assert world.state.db.execute("SELECT value FROM marks").fetchall()[0][0][:10] == real.date().isoformat()
    assert [t["externalId"] for t in _nurture_tasks(world)] == [f"{NURTURE}{lead['Id']}"]
