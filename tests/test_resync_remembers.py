"""`crm-sync resync` forgets the mirror and reads both services in full again. Some of what the
mirror held cannot be read again, and forgetting it undid what people had done:

- since when a lead holds its status (`core.records.STATUS_SINCE`). Salesforce keeps no such date
  ("SystemModstamp: the date and time when a user or automated process last modified the record",
  Object Reference, System Fields), so after a resync a lead disqualified months ago and touched
  since by a marketing tool looked disqualified that day, and its account's cool-off began again;
- crm-sync's own lead that a person deleted, their "no". QueryAll returns a deleted record only
  until the recycle bin is emptied ("Get Records that Have Been Deleted or Merged", REST API guide;
  15 days at most), so after a resync the "no" was gone and the account's segments came back;
- which lead a merged-away lead lives on in (`MasterRecordId`, read from that deleted record).

Each test's first half is the scenario of the test that covers it without a resync
(tests/test_salesforce_deleted.py, tests/test_salesforce_merged.py); the second half forgets the
mirror as `resync` does and runs real cycles against the sandbox. The cool-off dated across a
resync is tests/test_status_since.py's, run both ways.
"""

from __future__ import annotations

import io
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import requests
from real_org_world import NOW, after_first_cycle, crm_sync_s_lead, cycle_at, real_org_book, routed
from support import back_to_schema, person_sets_lead, sandbox_org_config

from core.records import parse_lead
from sandbox import Sandbox, SandboxConfig
from state import StateDB
from sync.config import Config
from sync.explain import explain
from sync.vocabulary import CycleReport

HEADERS = {"Authorization": "Bearer x", "Sforce-Auto-Assign": "FALSE"}


def _resync(config: Config, state: StateDB, sandbox: Sandbox, at: datetime) -> CycleReport:
    """What `crm-sync resync` does to the state, then its full read, at `at`."""
    with state.atomic():
        state.reset_mirror()
    sandbox.set_clock(at)
    return cycle_at(config, state, at)


def test_a_status_changed_before_the_resync_read_is_dated_by_the_version_read() -> None:
    with after_first_cycle() as (sandbox, config, state, account):
        lead_id = crm_sync_s_lead(sandbox, account)["Id"]
        sandbox.set_clock(NOW + timedelta(hours=1))
        person_sets_lead(sandbox.url, lead_id, Status="Disqualified")
        cycle_at(config, state, NOW + timedelta(hours=1, minutes=5))
        with state.atomic():
            state.reset_mirror()
        moved = NOW + timedelta(days=10)
        sandbox.set_clock(moved)
        person_sets_lead(sandbox.url, lead_id, Status="Working - Contacted")  # between forgetting and reading

        cycle_at(config, state, moved + timedelta(minutes=5))
        mirrored = parse_lead(state.sf_raw("Lead", lead_id) or {})

    assert mirrored.status == "Working - Contacted"
    assert mirrored.status_since == mirrored.system_modstamp  # the note of another status is not used
    assert mirrored.system_modstamp.date() == moved.date()


def test_a_resync_keeps_crm_sync_s_lead_a_person_deleted_after_the_recycle_bin_is_emptied() -> None:
    with after_first_cycle() as (sandbox, config, state, account):
        cycle_at(config, state, NOW + timedelta(minutes=15))  # reads the lead it created into the mirror
        lead = crm_sync_s_lead(sandbox, account)
        base = f"{sandbox.url}/services/data/v59.0"
        assert requests.delete(f"{base}/sobjects/Lead/{lead['Id']}", headers=HEADERS, timeout=10).ok
        later = NOW + timedelta(hours=2)
        sandbox.set_clock(later)
        answered = cycle_at(config, state, later)  # QueryAll reads the deletion: the person's "no"
        assert sandbox.empty_recycle_bin("Lead") == [lead["Id"]]

        report = _resync(config, state, sandbox, later + timedelta(hours=1))
        out = io.StringIO()
        explain(config, state, account, later, out, io.StringIO())

    # The "no" removed the account's lead segment; the resync does not put it back.
    assert ("remove_segment", "Product-led lead") in {(w.op, w.fields.get("segment")) for w in answered.plan}
    assert [w for w in report.plan if w.account == account] == []
    assert (state.sf_raw("Lead", lead["Id"]) or {}).get("IsDeleted") is True
    assert f"lead {lead['Id']} deleted in Salesforce" in out.getvalue()


def test_a_resync_keeps_the_lead_crm_sync_s_was_merged_into() -> None:
    with after_first_cycle() as (sandbox, config, state, account):
        cycle_at(config, state, NOW + timedelta(minutes=15))
        ours = crm_sync_s_lead(sandbox, account)["Id"]
        made = requests.post(
            f"{sandbox.url}/services/data/v59.0/sobjects/Lead",
            json={"LastName": "Dup", "Company": "Dup Inc", "Status": "Working - Contacted"},
            headers=HEADERS,
            timeout=10,
        )
        theirs = made.json()["id"]
        sandbox.merge("Lead", theirs, [ours])
        cycle_at(config, state, NOW + timedelta(days=1))
        assert sandbox.empty_recycle_bin("Lead") == [ours]

        _resync(config, state, sandbox, NOW + timedelta(days=2))
        after_cool_off = NOW + timedelta(days=120)  # past the 90 days a deletion would hold it
        sandbox.set_clock(after_cool_off)
        late = cycle_at(config, state, after_cool_off, full=True)

    assert state.lead_merges() == {ours: theirs}
    assert account not in routed(late)  # the rep works the lead it lives on in


def test_a_resync_forgets_what_it_can_read_again() -> None:
    tables = ("accounts", "sf_records", "cursors")
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        state = StateDB.memory()
        cycle_at(sandbox_org_config(sandbox.url), state, NOW)
        before = {table: state.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}
        leads = state.db.execute("SELECT count(*) FROM sf_records WHERE object = 'Lead'").fetchone()[0]
        with state.atomic():
            state.reset_mirror()
        after = {table: state.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}
        notes = state.db.execute("SELECT count(*) FROM lead_status_notes").fetchone()[0]

    assert min(before.values()) > 0
    assert after == {"accounts": 0, "sf_records": 0, "cursors": 0}  # none of its own leads deleted here
    assert notes == leads > 0  # a note for every lead, until the read brings it back


def test_a_state_of_schema_19_is_migrated_and_keeps_notes_across_a_resync(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateDB.open(path).close()
    conn = sqlite3.connect(path)
    back_to_schema(conn, 19)
    conn.commit()
    conn.close()

    state = StateDB.open(path)  # state migration 20
    state.upsert_sf(
        [{"object": "Lead", "id": "00Q1", "modstamp": "2026-11-21T09:00:00.000+0000", "error": None,
          "raw": '{"Id": "00Q1", "Status": "Disqualified", "crm_sync_status_since": "2026-08-01T09:00:00.000+0000"}'}]
    )  # fmt: skip
    with state.atomic():
        state.reset_mirror()

    assert state.status_notes(["00Q1"]) == {"00Q1": ("Disqualified", "2026-08-01T09:00:00.000+0000")}
    state.close()


def test_notes_of_leads_that_never_come_back_are_forgotten_after_90_days() -> None:
    """A lead deleted for good, or purged from the recycle bin, never comes back for its note (found
    by an adversarial review: every lead deleted in Salesforce left one for good)."""
    state = StateDB.memory()
    stamp = "2026-11-21T09:00:00.000+0000"
    state.upsert_sf(
        [{"object": "Lead", "id": f"00Q{n}", "modstamp": stamp, "error": None,
          "raw": f'{{"Id": "00Q{n}", "Status": "Disqualified", "SystemModstamp": "{stamp}"}}'} for n in range(3)]
    )  # fmt: skip
    state.remove_sf("Lead", ["00Q0", "00Q1"])
    state.db.execute(
        "UPDATE lead_status_notes SET kept_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-91 days') WHERE id = '00Q0'"
    )

    state.remove_sf("Lead", ["00Q2"])  # the next lead to leave the mirror

    assert sorted(state.status_notes(["00Q0", "00Q1", "00Q2"])) == ["00Q1", "00Q2"]
