"""Since when a lead holds its status. Salesforce keeps no date of a status change (Field History
Tracking aside), and SystemModstamp moves with every later edit of any field ("SystemModstamp: the
date and time when a user or automated process last modified the record", Object Reference,
System Fields). crm-sync dated a person's disqualification by the lead's SystemModstamp, so a
marketing tool or an enrichment touching a lead disqualified months ago made it look disqualified
that day: its account's cool-off (90 days) started again, for as long as something kept touching it.

crm-sync now notes, in the lead it mirrors, the SystemModstamp of the first version it read with
the lead's current status (`core.records.STATUS_SINCE`, kept by `sync.ingest`), and dates the
disqualification by it. Real cycles against the in-process sandbox; the edits are a person's or a
tool's PATCH of the sObject, which stamps the lead with the sandbox's clock.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import pytest
from real_org_world import NOW, after_first_cycle, crm_sync_s_lead, cycle_at, routed
from support import person_sets_lead
from test_ingest_mirror import _read, _Salesforce

from core.records import STATUS_SINCE, parse_lead
from sandbox import Sandbox
from state import StateDB
from sync.config import Config
from sync.explain import explain


def disqualified_then_touched(
    sandbox: Sandbox, config: Config, state: StateDB, account: str
) -> tuple[str, datetime, datetime]:
    """The owner disqualifies crm-sync's lead for `account` an hour after `NOW` (a cycle reads it),
    and a marketing tool edits the lead 60 days after `NOW`: (the lead's Id, the day of the "no",
    the moment of the edit)."""
    lead_id = crm_sync_s_lead(sandbox, account)["Id"]
    no_day = NOW + timedelta(hours=1)
    sandbox.set_clock(no_day)
    person_sets_lead(sandbox.url, lead_id, Status="Disqualified")  # the owner's "no"
    cycle_at(config, state, no_day + timedelta(minutes=5))
    touched = NOW + timedelta(days=60)
    sandbox.set_clock(touched)
    person_sets_lead(sandbox.url, lead_id, Description="Opened the nurture email")  # a marketing tool
    return lead_id, no_day, touched


@pytest.mark.parametrize("resync", [False, True], ids=["incremental", "after-a-resync"])
def test_a_disqualified_lead_touched_later_keeps_its_cool_off_from_the_disqualification(resync: bool) -> None:
    """Also after `crm-sync resync` forgot the mirror (tests/test_resync_remembers.py): the note
    waits in `lead_status_notes` until the full read brings the lead back."""
    with after_first_cycle() as (sandbox, config, state, account):
        lead_id, no_day, touched = disqualified_then_touched(sandbox, config, state, account)
        if resync:
            with state.atomic():
                state.reset_mirror()
        cycle_at(config, state, touched + timedelta(minutes=5))
        mirrored = parse_lead(state.sf_raw("Lead", lead_id) or {})
        assert state.status_notes([lead_id]) == {}  # none waits: the note is in the mirrored lead

        after = NOW + timedelta(days=92)  # past the 90 days from the "no", not from the touch
        sandbox.set_clock(after)
        report = cycle_at(config, state, after)
        out = io.StringIO()
        explain(config, state, account, after, out, io.StringIO())

    assert mirrored.system_modstamp.date() == touched.date()
    assert mirrored.status_since is not None and mirrored.status_since.date() == no_day.date()
    assert account in routed(report), out.getvalue()  # the cool-off ended 90 days after the "no"
    assert "disqualified" in out.getvalue() and str(no_day.date()) in out.getvalue()


def test_a_status_moved_again_is_dated_by_the_version_that_moved_it() -> None:
    with after_first_cycle() as (sandbox, config, state, account):
        cycle_at(config, state, NOW + timedelta(minutes=15))  # reads back the lead it created
        lead_id = crm_sync_s_lead(sandbox, account)["Id"]
        first = parse_lead(state.sf_raw("Lead", lead_id) or {})
        stamps = []
        for days, status in ((3, "Working - Contacted"), (5, "Working - Contacted"), (9, "Disqualified")):
            sandbox.set_clock(NOW + timedelta(days=days))
            person_sets_lead(sandbox.url, lead_id, Status=status, Title=f"Title on day {days}")
            cycle_at(config, state, NOW + timedelta(days=days, minutes=5))
            stamps.append(parse_lead(state.sf_raw("Lead", lead_id) or {}).status_since)

    assert first.status_since == first.system_modstamp  # first seen: its own stamp
    assert [s.date() if s else None for s in stamps] == [
        (NOW + timedelta(days=3)).date(),  # moved
        (NOW + timedelta(days=3)).date(),  # edited, the same status: kept
        (NOW + timedelta(days=9)).date(),  # moved again
    ]


def _noted_after_an_edit(held_note: object | None) -> object:
    """The note a lead mirrored disqualified on 1 June gets when an edit of another field is read on
    20 November: the mirror's row given the note `held_note` (None: none, as a release before
    this one mirrored it)."""
    june, november = "2026-06-01T10:00:00.000+0000", "2026-11-20T10:00:00.000+0000"
    lead = {"Id": "00Q000000000001EAA", "LastName": "L", "Company": "Acme", "Status": "Disqualified"}
    salesforce, state = _Salesforce(), StateDB.memory()
    salesforce.records = [{**lead, "SystemModstamp": june}]
    _read(state, salesforce)
    held = {**(state.sf_raw("Lead", lead["Id"]) or {})}
    held.pop(STATUS_SINCE)
    if held_note is not None:
        held[STATUS_SINCE] = held_note
    state.db.execute("UPDATE sf_records SET raw = ? WHERE id = ?", [json.dumps(held), lead["Id"]])
    salesforce.records = [{**lead, "SystemModstamp": november, "Title": "Enriched"}]
    _read(state, salesforce)
    return (state.sf_raw("Lead", lead["Id"]) or {})[STATUS_SINCE]


def test_a_lead_mirrored_before_the_note_is_dated_by_the_version_the_mirror_held() -> None:
    """Found by a review (2026-12-07): every lead a release before this one mirrored had no note,
    so the first edit read after the upgrade dated it, once: the cool-off restarted anyway."""
    assert _noted_after_an_edit(None) == "2026-06-01T10:00:00.000+0000"


def test_a_note_that_does_not_read_or_lies_ahead_is_not_kept() -> None:
    """A note that is no time, or a time after the version read (a clock or a state gone wrong),
    would date the lead by every later edit, or hold its account for good."""
    for hostile in ("garbage", 12345, {"x": 1}, "9999-12-31T00:00:00Z"):
        assert _noted_after_an_edit(hostile) == "2026-06-01T10:00:00.000+0000", hostile
    assert _noted_after_an_edit("2026-05-01T00:00:00.000+0000") == "2026-05-01T00:00:00.000+0000"  # kept
