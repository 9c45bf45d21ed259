"""What the read step stores in the mirror (sync/ingest.py): a Vitally account as the JSON text it
arrived in when the connector kept it (issue #17: no second encoding on the hot path of a cold
read), else encoded; either way the same record when read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from core.decoding import Unreadable, decode_page
from core.records import STATUS_SINCE
from state import StateDB
from sync.ingest import SF_OBJECTS, ingest
from sync.vocabulary import CycleReport, Hooks

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)


class _Vitally:
    """A VitallyPort that serves fixed records (only reads are needed here)."""

    def __init__(self, records: list[dict[str, Any] | Unreadable]) -> None:
        self.records = records

    def iter_accounts_since(self, watermark: str | None) -> Iterator[dict[str, Any] | Unreadable]:
        yield from self.records

    def iter_account_tasks(self, account_id: str) -> Iterator[dict[str, Any] | Unreadable]:
        raise AssertionError("ingest reads no tasks")

    def put_traits_many(self, items: Any, *, workers: int = 4) -> Iterator[Any]:
        raise AssertionError("ingest never writes")

    def upsert_task(self, task: Any) -> dict[str, Any]:
        raise AssertionError("ingest never writes")

    def iter_account_ids(self) -> Iterator[str | None]:
        raise AssertionError("no comparison of ids is due here")


def test_ingest_stores_a_decoded_account_as_the_text_it_arrived_in() -> None:
    sent = '{"id":"acc_1", "name":"Caf\\u00e9","updatedAt":"2026-11-22T08:00:00Z","traits":{"mrr":1e3}}'
    page = decode_page(
        ('{"results":[' + sent + '],"next":null}').encode(), records_key="results", id_key="id", stamp_key="updatedAt"
    )
    encoded = {"id": "acc_2", "name": "Ünïcode", "updatedAt": "2026-11-22T07:00:00Z"}
    state = StateDB.memory()
    ingest(state, _Vitally([*page["results"], encoded]), None, lookback_seconds=0, reconcile_hours=0,
           reconcile_max_share=1, report=CycleReport(run_id=1, dry_run=False, now=NOW), hooks=Hooks(),
           objects=SF_OBJECTS)  # fmt: skip
    stored = {record_id: raw for record_id, raw, _error, _run in state.iter_accounts()}
    assert stored["acc_1"] == sent  # as sent: not encoded again
    assert stored["acc_2"] == json.dumps(encoded)
    assert state.account_raw("acc_1") == {**json.loads(sent)}
    assert state.cursor("vitally.accounts") == "2026-11-22T08:00:00Z"


class _Salesforce:
    """A SalesforcePort whose reads serve `records` (each read the list as it then is)."""

    last_query_time: datetime | None = None

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def iter_changed(
        self, sobject: str, fields: Any, since: str | None, *, lookback_seconds: int | None = None
    ) -> Iterator[dict[str, Any] | Unreadable]:
        yield from (dict(r) for r in self.records if sobject == "Lead")

    def read_by_ids(self, sobject: str, fields: Any, ids: Any) -> Iterator[dict[str, Any] | Unreadable]:
        raise AssertionError("ingest reads by cursor")


def _read(state: StateDB, salesforce: _Salesforce) -> CycleReport:
    report = CycleReport(run_id=1, dry_run=False, now=NOW)
    port: Any = salesforce  # reads only: the writes of SalesforcePort are never called here
    with state.atomic():
        ingest(
            state,
            _Vitally([]),
            port,
            lookback_seconds=300,
            reconcile_hours=0,
            reconcile_max_share=1,
            report=report,
            hooks=Hooks(),
            objects=SF_OBJECTS,
        )
    return report


def test_a_lead_changed_again_within_the_same_second_is_mirrored_changed() -> None:
    # Salesforce's SystemModstamp has one-second precision (every recorded fixture ends in .000):
    # a lead changed twice in one second, read in between, comes back under the stamp the mirror
    # holds (found by a review: the newer version was dropped as the look-back's repeat).
    stamp = "2026-11-22T09:00:00.000+0000"
    lead = {"Id": "00Q000000000001EAA", "LastName": "Same Second", "Company": "Acme", "SystemModstamp": stamp}
    salesforce, state = _Salesforce(), StateDB.memory()
    salesforce.records = [lead]
    _read(state, salesforce)
    salesforce.records = [{**lead, "LastName": "Renamed"}]  # the second change, the same second

    _read(state, salesforce)

    assert (state.sf_raw("Lead", lead["Id"]) or {})["LastName"] == "Renamed"
    # What tells the look-back's unchanged repeat from a change under the same stamp: the content
    # (as mirrored: with crm-sync's note of since when the lead holds its status).
    renamed = {**lead, "LastName": "Renamed", STATUS_SINCE: stamp}
    assert state.sf_holds("Lead", {lead["Id"]: json.dumps(renamed)}) == {lead["Id"]}
    assert state.sf_holds("Lead", {lead["Id"]: json.dumps({**lead, STATUS_SINCE: stamp})}) == set()


def test_a_record_whose_id_is_not_valid_text_is_reported_and_the_read_goes_on() -> None:
    """Bytes that were not UTF-8 on the wire become lone surrogates (`core.decoding`), which SQLite
    cannot store: a record whose id or timestamp holds one is reported with its id, escaped, and
    skipped; the others of its page are mirrored (before, the whole read failed, every cycle)."""
    stamp = "2026-11-22T09:00:00.000+0000"
    good = {"Id": "00Q000000000001EAA", "LastName": "A", "Company": "Acme", "SystemModstamp": stamp}
    bad_id = {**good, "Id": "00Q00000000000\udc80AA"}
    bad_stamp = {**good, "Id": "00Q000000000003EAA", "SystemModstamp": "2026-11-22T09:00:00\udc80"}
    salesforce, state = _Salesforce(), StateDB.memory()
    salesforce.records = [bad_id, good, bad_stamp]
    accounts = [
        {"id": "acc_\udc80", "name": "X", "updatedAt": "2026-11-22T08:00:00Z"},
        {"id": "acc_1", "name": "Y", "updatedAt": "2026-11-22T08:00:00Z"},
    ]
    report = _read(state, salesforce)
    vitally_report = CycleReport(run_id=2, dry_run=False, now=NOW)
    ingest(state, _Vitally(list(accounts)), None, lookback_seconds=0, reconcile_hours=0, reconcile_max_share=1,
           report=vitally_report, hooks=Hooks(), objects=SF_OBJECTS)  # fmt: skip

    assert state.sf_raw("Lead", good["Id"]) is not None
    assert [(e.record_id, e.field) for e in report.record_errors] == [
        ("00Q00000000000\\udc80AA", "Id"),
        ("00Q000000000003EAA", "SystemModstamp"),
    ]
    assert [record_id for record_id, *_ in state.iter_accounts()] == ["acc_1"]
    errors = vitally_report.record_errors
    assert [(e.system, e.record_id, e.field) for e in errors] == [("vitally", "acc_\\udc80", "id")]
