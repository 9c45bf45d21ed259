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
from datetime import timedelta

from real_org_world import NOW, crm_sync_s_lead, cycle_at, first_routed, real_org_book, routed
from support import person_sets_lead, sandbox_org_config

from core.records import parse_lead
from sandbox import Sandbox, SandboxConfig
from state import StateDB
from sync.explain import explain


def test_a_disqualified_lead_touched_later_keeps_its_cool_off_from_the_disqualification() -> None:
    account = first_routed()
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.memory()
        cycle_at(config, state, NOW)
        lead_id = crm_sync_s_lead(sandbox, account)["Id"]

        no_day = NOW + timedelta(hours=1)
        sandbox.set_clock(no_day)
        person_sets_lead(sandbox.url, lead_id, Status="Disqualified")  # the owner's "no"
        cycle_at(config, state, no_day + timedelta(minutes=5))
        touched = NOW + timedelta(days=60)
        sandbox.set_clock(touched)
        person_sets_lead(sandbox.url, lead_id, Description="Opened the nurture email")  # a marketing tool
        cycle_at(config, state, touched + timedelta(minutes=5))
        mirrored = parse_lead(state.sf_raw("Lead", lead_id) or {})

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
    account = first_routed()
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.memory()
        cycle_at(config, state, NOW)
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
