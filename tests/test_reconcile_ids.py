"""The daily comparison of the mirror with the Ids Salesforce has (`sync.ingest._Reader.reconcile`,
`[salesforce] reconcile_hours`), at the level of the read step, against an in-memory port. Found by
a review of the first version (2026-12-05), each test failing before its fix:

- crm-sync's own leads kept marked deleted counted as vanished in every comparison, so enough of
  them made the share valve refuse every comparison for good;
- a record out of sight for a while (removed) and then visible again, its SystemModstamp
  unchanged, was never mirrored again: no change list names it;
- a read from the start over a mirror that was not empty (the first cycle after state migration 13
  forgets the Lead cursors) put the first comparison off by a day."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from core.decoding import Unreadable
from core.records import STATUS_SINCE
from state import StateDB
from sync.ingest import SF_OBJECTS, ingest
from sync.vocabulary import CycleReport, Hooks, iso

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)
STAMP = "2026-11-20T09:00:00.000+0000"


class _Vitally:
    def iter_accounts_since(self, watermark: str | None) -> Iterator[dict[str, Any] | Unreadable]:
        return iter(())


class _Salesforce:
    """Leads only: `live` are the records Salesforce has (what Query, and so `iter_ids`, sees);
    `changed` what the change read (QueryAll) returns this time."""

    def __init__(self, live: list[dict[str, Any]], now: datetime) -> None:
        self.live = live
        self.changed: list[dict[str, Any]] = []
        self.last_query_time: datetime | None = now
        self.scans = 0

    def iter_changed(
        self, sobject: str, fields: Any, since: str | None, *, lookback_seconds: int | None = None
    ) -> Iterator[dict[str, Any] | Unreadable]:
        return iter([dict(r) for r in (self.live if since is None else self.changed) if sobject == "Lead"])

    def iter_ids(self, sobject: str) -> Iterator[str | None]:
        self.scans += sobject == "Lead"
        return iter([r["Id"] for r in self.live if sobject == "Lead"])

    def read_by_ids(self, sobject: str, fields: Any, ids: Sequence[str]) -> Iterator[dict[str, Any] | Unreadable]:
        return iter([dict(r) for r in self.live if r["Id"] in set(ids)])


def _lead(n: int, **fields: Any) -> dict[str, Any]:
    return {"Id": f"00Q{n:015d}", "LastName": f"L{n}", "Company": f"C{n}", "SystemModstamp": STAMP, **fields}


def _read(state: StateDB, salesforce: _Salesforce) -> CycleReport:
    report = CycleReport(run_id=1, dry_run=False, now=NOW)
    port: Any = salesforce  # reads only
    with state.atomic():
        ingest(state, _Vitally(), port, lookback_seconds=300, reconcile_hours=24, reconcile_max_share=0.2,  # type: ignore[arg-type]
               report=report, hooks=Hooks(), objects={"Lead": SF_OBJECTS["Lead"]})  # fmt: skip
    return report


def _a_day_later(salesforce: _Salesforce, days: int = 1) -> None:
    salesforce.last_query_time = NOW + timedelta(days=days, minutes=1)


def test_leads_kept_marked_deleted_do_not_count_against_the_share() -> None:
    live = [_lead(i) for i in range(28)]
    own_deleted = [_lead(100 + i, Sync_Key__c=f"crm-sync-acc_{i}-1", IsDeleted=True) for i in range(11)]
    purged = _lead(999)
    state, salesforce = StateDB.memory(), _Salesforce([*live, *own_deleted, purged], NOW)
    _read(state, salesforce)  # the mirror: 40 leads, 11 of them crm-sync's own, deleted
    salesforce.live = live  # the purged one gone, and the deleted ones are not live either
    _a_day_later(salesforce)

    report = _read(state, salesforce)

    assert state.sf_raw("Lead", purged["Id"]) is None
    assert report.counts["sf_lead_deleted"] == 1
    assert not report.notices
    assert all((state.sf_raw("Lead", lead["Id"]) or {}).get("IsDeleted") is True for lead in own_deleted)


def test_a_record_out_of_sight_for_a_day_is_mirrored_again_when_it_is_back() -> None:
    leads = [_lead(i) for i in range(30)]
    state, salesforce = StateDB.memory(), _Salesforce(leads, NOW)
    _read(state, salesforce)
    salesforce.live = leads[1:]  # out of sight (or deleted and purged): removed at the comparison
    _a_day_later(salesforce)
    _read(state, salesforce)
    assert state.sf_raw("Lead", leads[0]["Id"]) is None

    salesforce.live = leads  # back, its SystemModstamp unchanged: in no change list
    _a_day_later(salesforce, days=2)
    report = _read(state, salesforce)

    # As Salesforce sent it, with crm-sync's note of since when it holds its status (first seen).
    assert state.sf_raw("Lead", leads[0]["Id"]) == {**leads[0], STATUS_SINCE: leads[0]["SystemModstamp"]}
    assert report.counts["sf_lead_read"] == 1


def test_a_read_from_the_start_over_a_mirror_already_holding_leads_compares_at_once() -> None:
    leads = [_lead(i) for i in range(30)]
    state, salesforce = StateDB.memory(), _Salesforce(leads, NOW)
    _read(state, salesforce)
    assert salesforce.scans == 0  # a first read into an empty mirror: nothing to compare
    assert state.cursor("salesforce.Lead.reconciled_at") == iso(NOW)
    with state.atomic():  # state migration 13: the Lead cursors forgotten
        state.db.execute("DELETE FROM cursors WHERE name IN ('salesforce.Lead', 'salesforce.Lead.queried_at')")
        state.db.execute("DELETE FROM cursors WHERE name = 'salesforce.Lead.reconciled_at'")
    salesforce.live = leads[1:]  # purged before the upgrade's read

    _read(state, salesforce)

    assert salesforce.scans == 1
    assert state.sf_raw("Lead", leads[0]["Id"]) is None


def test_a_lead_out_of_sight_and_back_keeps_since_when_it_holds_its_status() -> None:
    """Its note waits while it is away (`StateDB.remove_sf`): back with a later SystemModstamp (a
    restore from the recycle bin moves it, so does any edit), it is dated as before, not as new."""
    leads = [_lead(i, Status="Nurturing") for i in range(30)]
    state, salesforce = StateDB.memory(), _Salesforce(leads, NOW)
    _read(state, salesforce)
    salesforce.live = leads[1:]
    _a_day_later(salesforce)
    _read(state, salesforce)
    assert state.sf_raw("Lead", leads[0]["Id"]) is None

    edited = "2026-11-24T09:00:00.000+0000"
    salesforce.live = [{**leads[0], "SystemModstamp": edited}, *leads[1:]]
    _a_day_later(salesforce, days=2)
    _read(state, salesforce)
    moved = {**leads[1], "SystemModstamp": edited, "Status": "Working"}  # another status: dated anew
    salesforce.changed = [moved]
    _read(state, salesforce)

    assert (state.sf_raw("Lead", leads[0]["Id"]) or {})[STATUS_SINCE] == STAMP
    assert (state.sf_raw("Lead", moved["Id"]) or {})[STATUS_SINCE] == edited
    assert state.status_notes([lead["Id"] for lead in leads]) == {}  # each note served once
