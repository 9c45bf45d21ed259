"""Records deleted (or merged away) in Salesforce. The REST API's Query resource "will
automatically filter out items that have been deleted"; QueryAll returns them, `IsDeleted` true,
with the deletion's SystemModstamp ("Get Records that Have Been Deleted or Merged", REST API guide;
tests/fixtures/real/salesforce_queryall_deleted_page.json). crm-sync reads its changes through
QueryAll: a person's lead or opportunity deleted leaves the mirror, so it no longer holds its
account back (found by a review against the documentation: before, it did so for as long as the
state file lived); a lead crm-sync created that a person deleted stays, marked, and is read as
their "no": not re-created, not written to."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import requests
from real_org_world import NOW, after_first_cycle, crm_sync_s_lead, cycle_at, first_routed, real_org_book, routed
from support import sandbox_org_config

from sandbox import Sandbox, SandboxConfig
from state import StateDB
from sync.config import Config
from sync.explain import explain

HEADERS = {"Authorization": "Bearer x", "Sforce-Auto-Assign": "FALSE"}


def test_the_sandbox_keeps_a_deleted_record_for_query_all_only() -> None:
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        base = f"{sandbox.url}/services/data/v59.0"
        made = requests.post(
            f"{base}/sobjects/Lead", json={"LastName": "D", "Company": "D"}, headers=HEADERS, timeout=10
        )
        lead_id = made.json()["id"]
        before = requests.get(f"{base}/sobjects/Lead/{lead_id}", headers=HEADERS, timeout=10).json()["SystemModstamp"]
        assert requests.delete(f"{base}/sobjects/Lead/{lead_id}", headers=HEADERS, timeout=10).status_code == 204
        soql = f"SELECT Id, IsDeleted, SystemModstamp FROM Lead WHERE Id = '{lead_id}'"
        query = requests.get(f"{base}/query/", params={"q": soql}, headers=HEADERS, timeout=10).json()
        query_all = requests.get(f"{base}/queryAll/", params={"q": soql}, headers=HEADERS, timeout=10).json()
        live = requests.get(
            f"{base}/queryAll/", params={"q": "SELECT Id, IsDeleted FROM Lead LIMIT 1"}, headers=HEADERS, timeout=10
        ).json()
    assert query["records"] == []
    (deleted,) = query_all["records"]
    assert deleted["IsDeleted"] is True and deleted["SystemModstamp"] > before  # the deletion's stamp
    assert live["records"][0]["IsDeleted"] is False


def _a_person_s_lead(base: str, account: str) -> str:
    """An open lead a person creates for `account` in Salesforce; its Id."""
    made = requests.post(
        f"{base}/sobjects/Lead",
        json={"LastName": "Dup", "Company": "Dup Inc", "Vitally_Account_Id__c": account},
        headers=HEADERS,
        timeout=10,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


@contextmanager
def _a_person_s_lead_deleted() -> Iterator[tuple[Sandbox, Config, StateDB, str, str]]:
    """(sandbox, config, state, account, lead Id): a person's open lead held its account back in
    a first cycle, then the person deleted it in Salesforce."""
    account = first_routed()
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        base = f"{sandbox.url}/services/data/v59.0"
        lead_id = _a_person_s_lead(base, account)
        state = StateDB.memory()
        assert account not in routed(cycle_at(config, state, NOW))  # a person's open lead: held back
        assert requests.delete(f"{base}/sobjects/Lead/{lead_id}", headers=HEADERS, timeout=10).ok
        yield sandbox, config, state, account, lead_id


def test_a_person_s_open_lead_deleted_in_salesforce_stops_holding_its_account_back() -> None:
    with _a_person_s_lead_deleted() as (_, config, state, account, lead_id):
        later = NOW + timedelta(hours=1)
        report = cycle_at(config, state, later)  # an incremental cycle, not --full

        assert account in routed(report)
        assert report.counts["sf_lead_deleted"] == 1
        assert state.sf_raw("Lead", lead_id) is None  # gone from the mirror


def _delete_crm_sync_s_lead(sandbox: Sandbox, account: str) -> dict[str, Any]:
    """A person deletes, in Salesforce, the lead crm-sync created for `account`; returns it."""
    lead = crm_sync_s_lead(sandbox, account)
    base = f"{sandbox.url}/services/data/v59.0"
    assert requests.delete(f"{base}/sobjects/Lead/{lead['Id']}", headers=HEADERS, timeout=10).ok
    return lead


def test_a_lead_crm_sync_created_that_a_person_deleted_is_not_created_again_nor_written_to() -> None:
    with after_first_cycle() as (sandbox, config, state, account):
        lead = _delete_crm_sync_s_lead(sandbox, account)

        later = NOW + timedelta(hours=1)
        report = cycle_at(config, state, later, full=True)  # every account and lead judged again
        out = io.StringIO()
        explain(config, state, account, later, out, io.StringIO())

    assert account not in routed(report)  # the person's "no" is not undone
    assert not [w for w in report.plan if w.record == lead["Id"]]  # nothing written to a deleted lead
    assert (state.sf_raw("Lead", lead["Id"]) or {}).get("IsDeleted") is True  # kept, marked
    assert f"lead {lead['Id']} deleted in Salesforce" in out.getvalue()


# -- purged from the recycle bin before a read saw the deletion -----------------------------------
# QueryAll returns a deleted record only while it is in the recycle bin; once purged ("Empty your
# Recycle Bin", or after 15 days) no change list names it, and sObject Get Deleted neither ("or
# earlier if an administrator has purged the Recycle Bin", REST API guide). crm-sync compares the
# mirror with the Ids Salesforce has every `[salesforce] reconcile_hours` (24).


def _id_scans(sandbox: Sandbox, since: int) -> list[str]:
    """The objects whose Ids were read since call `since`."""
    return [c["soql"].split()[-1] for c in sandbox.calls(since) if c.get("soql", "").startswith("SELECT Id FROM ")]


def test_a_person_s_lead_deleted_and_purged_between_two_reads_leaves_the_mirror_at_the_next_comparison() -> None:
    with _a_person_s_lead_deleted() as (sandbox, config, state, account, lead_id):
        # A first read sees every record: nothing to compare, the comparison is due a day later.
        assert state.cursor("salesforce.Lead.reconciled_at") == "2026-11-22T09:00:00.000Z"
        emptied = requests.post(f"{sandbox.url}/_sandbox/recycle_bin", json={"object": "Lead"}, timeout=10)
        assert emptied.json() == {"purged": [lead_id]}  # the control endpoint, as `empty_recycle_bin`

        hour = NOW + timedelta(hours=1)
        sandbox.set_clock(hour)
        start = sandbox.calls_total()
        report = cycle_at(config, state, hour)
        assert _id_scans(sandbox, start) == []  # not due yet: no request beyond the change reads
        assert account not in routed(report)  # the purged lead, still mirrored, holds it back
        assert report.counts["sf_lead_deleted"] == 0

        day = NOW + timedelta(hours=24, minutes=1)
        sandbox.set_clock(day)
        start = sandbox.calls_total()
        report = cycle_at(config, state, day)

        assert _id_scans(sandbox, start) == ["Lead", "Opportunity", "Account"]  # a page each here
        assert state.sf_raw("Lead", lead_id) is None
        assert report.counts["sf_lead_deleted"] == 1
        assert account in routed(report)
        start = sandbox.calls_total()
        cycle_at(config, state, day + timedelta(minutes=15))
        assert _id_scans(sandbox, start) == []  # compared again a day later


def test_a_lead_crm_sync_created_deleted_and_purged_is_kept_marked_and_not_created_again() -> None:
    account = first_routed()
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        org = sandbox_org_config(sandbox.url)
        config = replace(org, salesforce=replace(org.salesforce, reconcile_hours=1))
        state = StateDB.memory()
        cycle_at(config, state, NOW)
        cycle_at(config, state, NOW + timedelta(minutes=15))  # reads the lead it created into the mirror
        lead = _delete_crm_sync_s_lead(sandbox, account)
        assert sandbox.empty_recycle_bin("Lead") == [lead["Id"]]
        assert state.sf_raw("Lead", lead["Id"]) is not None

        later = NOW + timedelta(hours=2)
        sandbox.set_clock(later)
        report = cycle_at(config, state, later, full=True)  # every account and lead judged again

    assert report.counts["sf_lead_deleted"] == 1
    assert account not in routed(report)  # the person's "no" is not undone
    assert not [w for w in report.plan if w.record == lead["Id"]]
    kept = state.sf_raw("Lead", lead["Id"]) or {}
    assert kept.get("IsDeleted") is True  # kept, marked, as when QueryAll reads the deletion
    assert kept["SystemModstamp"].startswith(later.strftime("%Y-%m-%dT%H:%M"))  # when it was first known


def test_a_comparison_that_would_empty_much_of_the_mirror_is_reported_not_applied() -> None:
    """The integration user losing sight of most leads (a sharing rule or permission change) looks
    like mass deletion to a comparison of Ids: removing them would let crm-sync create leads beside
    ones it no longer sees. More than `reconcile_max_share` (0.2) of an object's mirrored records,
    and more than 10: reported, the mirror kept."""
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.memory()
        cycle_at(config, state, NOW)
        mirrored = state.sf_ids("Lead")
        hidden = mirrored[: len(mirrored) // 2]
        with sandbox._lock:  # gone from every answer, as records the user may no longer see
            for lead_id in hidden:
                sandbox._salesforce.tables["lead"].remove(lead_id)

        day = NOW + timedelta(hours=25)
        sandbox.set_clock(day)
        report = cycle_at(config, state, day)

    assert set(mirrored) <= set(state.sf_ids("Lead"))  # every one kept (and the leads it created since)
    assert report.counts["sf_lead_deleted"] == 0
    [notice] = [n for n in report.notices if n.startswith("Salesforce Lead:")]
    assert f"{len(hidden)} of the {len(state.sf_ids('Lead'))} mirrored records are no longer visible" in notice
    assert "reconcile_max_share = 0.2" in notice


def test_a_deleted_lead_of_crm_sync_s_is_not_judged_again_by_the_cycles_after() -> None:
    """The accounts' rules are shown each linked lead as the cycle will leave it, which takes
    judging it (`linked_leads_judged`), unless its judgement holds. A lead crm-sync created that a
    person deleted is never judged by the leads' own pass, so its judgement never held: before
    2026-12-07 the accounts' view judged it at every cycle, for as long as the state kept it (a
    cost of every idle cycle that grew with the leads people delete). It is never written to, so
    its account sees it as it is: marked deleted, the person's "no"."""
    account = first_routed()
    with Sandbox(real_org_book(), config=SandboxConfig(real_org=True), now=NOW) as sandbox:
        config = sandbox_org_config(sandbox.url)
        state = StateDB.memory()
        cycle_at(config, state, NOW)
        settled = [cycle_at(config, state, NOW + timedelta(minutes=m)) for m in (15, 30)]
        assert settled[-1].counts["linked_leads_judged"] == 0  # every linked lead's judgement holds
        lead = _delete_crm_sync_s_lead(sandbox, account)

        after = [cycle_at(config, state, NOW + timedelta(minutes=m)) for m in (45, 60, 75)]
        out = io.StringIO()
        explain(config, state, account, NOW + timedelta(minutes=75), out, io.StringIO())

    assert [r.counts["linked_leads_judged"] for r in after] == [0, 0, 0]
    assert not [w for r in after for w in r.plan if w.record == lead["Id"]]
    assert f"lead {lead['Id']} deleted in Salesforce" in out.getvalue()  # its account still sees it
