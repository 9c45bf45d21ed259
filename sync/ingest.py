"""Ingest, the first step of a cycle: what changed in Vitally and Salesforce since the cursors goes
into the mirror a page at a time, and the cursors move.

Runs inside the cycle's transaction (`sync.cycle`): the mirror and the cursors commit together
with the plan they cause, or not at all. Nothing of the read is held in memory beyond a page.
Records are stored raw; a Vitally account is parsed (and reported when malformed) once, when the
planner reads it (`sync.accounts`); a Salesforce record is parsed here to report it at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.base import SalesforcePort, VitallyPort
from connectors.salesforce import SalesforceSettings
from core.decoding import Unreadable, json_text
from core.errors import RecordError
from core.records import STATUS_SINCE, parse_lead, parse_opportunity, parse_sf_account, parse_timestamp, parse_user
from core.safe_json import json_encoder
from state import StateDB
from sync.vocabulary import PAGE, CycleReport, Hooks, detached, iso

__all__ = ["SF_OBJECTS", "ingest", "mirror_accounts", "mirror_sf", "sf_objects"]

# Salesforce objects mirrored each cycle and the fields read (data-model.md).
SF_OBJECTS: Mapping[str, tuple[str, ...]] = {
    "Lead": (
        "Id", "FirstName", "LastName", "Email", "Company", "Title", "Role__c", "Sub_Role__c", "Country",
        "NumberOfEmployees", "AnnualRevenue", "Industry", "LeadSource", "Status", "OwnerId", "IsConverted",
        "Form_Text__c", "Vitally_Account_Id__c", "CreatedDate", "SystemModstamp", "Lead_Score__c",
        "Sync_Key__c", "Routing_Rule__c", "Routing_Reason__c", "Classification__c", "ConvertedDate",
        "ConvertedOpportunityId", "IsDeleted", "MasterRecordId",
    ),
    "User": ("Id", "Name", "Email", "IsActive", "SystemModstamp"),
    "Opportunity": (
        "Id", "AccountId", "StageName", "CloseDate", "Loss_Reason__c", "OwnerId", "SystemModstamp", "IsDeleted",
    ),
    "Account": (
        "Id", "Name", "Website", "Vitally_Account_Id__c", "OwnerId", "SystemModstamp", "IsDeleted", "MasterRecordId",
    ),
}  # fmt: skip


def sf_objects(settings: SalesforceSettings) -> Mapping[str, tuple[str, ...]]:
    """`SF_OBJECTS` for this org: with State and Country/Territory picklists, a Lead's
    `CountryCode` (the ISO code, read first) besides `Country` (there a picklist's name). An org
    without them has no `CountryCode`: selecting it would fail the whole query (INVALID_FIELD)."""
    if not settings.state_country_picklists:
        return SF_OBJECTS
    return {**SF_OBJECTS, "Lead": (*SF_OBJECTS["Lead"], "CountryCode")}


# `json.dumps`'s text from an encoder made once (a record is a tree: `core.safe_json.json_encoder`).
_ENCODE = json_encoder()

_SF_PARSERS: Mapping[str, Callable[[Mapping[str, Any]], object]] = {
    "Lead": parse_lead,
    "User": parse_user,
    "Opportunity": parse_opportunity,
    "Account": parse_sf_account,
}


def ingest(
    state: StateDB,
    vitally: VitallyPort,
    salesforce: SalesforcePort | None,
    *,
    lookback_seconds: int,
    reconcile_hours: float,
    reconcile_max_share: float,
    report: CycleReport,
    hooks: Hooks,
    objects: Mapping[str, tuple[str, ...]],
    vitally_reconcile: tuple[float, float] = (0, 1.0),
    now: datetime | None = None,
) -> None:
    """Read Vitally's changed accounts, then each Salesforce object's changed records (`objects`:
    sObject -> fields, `sf_objects(config.salesforce)`: every reader reads the same fields, or a
    record mirrored without one keeps lacking it once the cursor has moved past it) into the
    mirror; every `reconcile_hours` (0: never), compare the mirrored Leads, Opportunities and
    Accounts with the Ids Salesforce has (`_Reader.reconcile`; a comparison that would remove more
    than `reconcile_max_share` of an object's records, and more than 10, is reported instead);
    every `vitally_reconcile` (hours, max share: `[vitally] reconcile_hours`, `reconcile_max_share`)
    from `now`, the mirrored accounts with the ids Vitally lists (`_Reader.reconcile_accounts`).
    Returns early when `hooks.should_stop()`: the caller then rolls the cycle back."""
    reader = _Reader(state, report, hooks, reconcile_hours, reconcile_max_share)
    reader.vitally(vitally)
    hours, share = vitally_reconcile
    if now is not None and hours > 0 and not hooks.should_stop():
        reader.reconcile_accounts(vitally, now, hours, share)
    if salesforce is not None:
        reader.salesforce(salesforce, lookback_seconds, objects)


def mirror_accounts(
    state: StateDB, records: list[dict[str, Any] | Unreadable], *, report: CycleReport, hooks: Hooks
) -> None:
    """Accounts read outside `ingest` (an event's mini-cycle reads them by id) into the mirror,
    as `ingest` stores a page of them (unchanged versions dropped, unreadable ones reported);
    no cursor moves."""
    _Reader(state, report, hooks)._store_accounts(records)


def mirror_sf(
    state: StateDB, sobject: str, records: list[dict[str, Any] | Unreadable], *, report: CycleReport, hooks: Hooks
) -> None:
    """Salesforce records read outside `ingest` into the mirror, as `ingest` stores a page of
    them; no cursor moves."""
    _Reader(state, report, hooks)._store_sf(sobject, records, None)


def _later(first: str | None, second: str | None) -> str | None:
    """The later of two timestamps (either may be missing or, from an old state, unreadable)."""
    try:
        if first is None or (second is not None and parse_timestamp(second) > parse_timestamp(first)):
            return second
    except ValueError:
        return first
    return first


def _earlier_note(note: Any, held: str, stamp: Any) -> Any:
    """The note of a lead whose status did not change: the note the mirror holds when it reads as
    a time no later than this version's `stamp`, else the SystemModstamp of the version it holds
    (`held`), else `stamp`."""
    now = _moment(stamp)
    for candidate in (note, held):
        moment = _moment(candidate)
        if moment is not None and (now is None or moment <= now):
            return candidate
    return stamp


def _newest(stamp: str, newest: str | None) -> str | None:
    """`stamp` when it is readable and not older than `newest`, else `newest`."""
    try:
        if newest is None or parse_timestamp(stamp) >= parse_timestamp(newest):
            return stamp
    except ValueError:
        pass
    return newest


# The objects whose records a person deletes (`reconcile`); users are deactivated, never deleted.
_RECONCILED = frozenset({"Lead", "Opportunity", "Account"})
# Records a comparison of Ids may always remove, whatever `reconcile_max_share` says.
_RECONCILE_FLOOR = 10


class _Reader:
    def __init__(
        self,
        state: StateDB,
        report: CycleReport,
        hooks: Hooks,
        reconcile_hours: float = 0,
        reconcile_max_share: float = 1.0,
    ) -> None:
        self.state = state
        self.report = report
        self.hooks = hooks
        self.reconcile_hours = reconcile_hours
        self.reconcile_max_share = reconcile_max_share
        self._noted: list[str] = []  # leads whose note, kept by a resync, this page used or passed

    # -- Vitally --------------------------------------------------------------------------------

    def vitally(self, vitally: VitallyPort) -> None:
        """Changed accounts since the cursor into the mirror, a page at a time; boundary duplicates
        and our own writes' echo (same id and updatedAt) are dropped. The records are parsed (and
        a malformed one reported) when the rules read them, once."""
        counts = self.report.counts
        newest: str | None = None
        newest_at: datetime | None = None
        page: list[dict[str, Any] | Unreadable] = []
        for raw in vitally.iter_accounts_since(self.state.cursor("vitally.accounts")):
            if self.hooks.should_stop():
                return  # the cycle rolls back before planning anything
            counts["accounts_read"] += 1
            stamp = raw.stamp if isinstance(raw, Unreadable) else raw.get("updatedAt")
            moment = _moment(stamp)
            if moment is not None and (newest_at is None or moment > newest_at):
                # Unchanged records (our own writes' echo) move the watermark too, so they are
                # not read again next cycle.
                newest, newest_at = str(stamp), moment
            page.append(raw)
            if len(page) >= PAGE:
                self._store_accounts(page)
                page = []
                self.hooks.progress("Vitally accounts read", counts["accounts_read"], None)
        self._store_accounts(page)
        self.hooks.progress("Vitally accounts read", counts["accounts_read"], None)
        if newest:
            self.state.set_cursor("vitally.accounts", newest)

    def reconcile_accounts(self, vitally: VitallyPort, now: datetime, hours: float, max_share: float) -> None:
        """Every `hours`, compare the mirrored accounts with the ids Vitally lists (one request per
        100; the ids held in a temporary table): an account deleted in Vitally is in no list any
        more and leaves no trace an incremental read could see. Each mirrored account no longer
        listed leaves the mirror (and its judgement), and its pending writes are dropped: a PUT to
        it would be refused, and a lead for a customer deleted from Vitally is wanted by nobody. The
        first cycle only starts the clock. An id that cannot be read, or more vanished accounts
        than `max_share` of them (and more than 10), leaves the mirror as it is until the next
        comparison, reported."""
        name = "vitally.accounts.reconciled_at"
        last = _moment(self.state.cursor(name))
        if last is None:
            self.state.set_cursor(name, iso(now))
            return
        if (now - last).total_seconds() < hours * 3600:
            return
        complete = self._present_ids(vitally.iter_account_ids())
        if complete is None:
            return
        self.state.set_cursor(name, iso(now))
        if not complete:
            self.report.notices.append(
                f"Vitally accounts: an id could not be read; the mirror is compared again in {hours:g} hours"
            )
            return
        live, vanished = self.state.compare_account_ids()
        if len(vanished) > max(_RECONCILE_FLOOR, max_share * live):
            self.report.notices.append(
                f"Vitally accounts: {len(vanished)} of the {live} mirrored accounts are no longer listed; not removed "
                f"from the mirror (more than [vitally] reconcile_max_share = {max_share:g}: check the API key's "
                f"workspace; raise the share if they were deleted). Compared again in {hours:g} hours."
            )
            return
        if vanished:
            dropped = self.state.remove_accounts(vanished, f"the account was deleted in Vitally ({iso(now)})", iso(now))
            self.report.counts["accounts_deleted"] += len(vanished)
            self.report.counts["dropped"] += dropped

    def _store_accounts(self, page: list[dict[str, Any] | Unreadable]) -> None:
        page = self._storable("vitally", page, "id", "updatedAt")
        held = self.state.account_versions([i for raw in page if (i := _account_id(raw)) is not None])
        rows: dict[str, dict[str, Any]] = {}
        for raw in page:
            if isinstance(raw, Unreadable):
                row = self._unreadable("vitally", raw, held)
                if row is not None:
                    rows[row["id"]] = {**row, "updated_at": row.pop("modstamp")}
                continue
            record_id = raw.get("id")
            updated = raw.get("updatedAt")
            if not isinstance(record_id, str):
                self.report.record_errors.append(RecordError("vitally", str(record_id), "id", "missing account id"))
                continue
            error = None
            version = updated if isinstance(updated, str) else json.dumps(updated)
            if held.get(record_id) == version:
                self.report.counts["accounts_unchanged"] += 1
                continue
            if not isinstance(updated, str):
                # Remembered under its odd value, so it is reported once, not every cycle.
                self.report.record_errors.append(
                    RecordError("vitally", record_id, "updatedAt", f"expected a timestamp, got {version[:60]}")
                )
                error = json.dumps({"field": "updatedAt", "message": "missing or not text"})
            # The text the record was decoded from when the connector kept it: not encoded again.
            rows[record_id] = {"id": record_id, "updated_at": version, "raw": json_text(raw), "error": error}
            held[record_id] = version
        self.state.upsert_accounts(rows.values(), read_run=self.report.run_id)

    # -- Salesforce -----------------------------------------------------------------------------

    def salesforce(
        self, salesforce: SalesforcePort, lookback_seconds: int, objects: Mapping[str, tuple[str, ...]]
    ) -> None:
        """Changed Salesforce records since each object's cursor into the mirror, a page at a time."""
        for sobject, fields in objects.items():
            if self.hooks.should_stop() or not self._read_object(salesforce, sobject, fields, lookback_seconds):
                return  # the cycle rolls back before planning anything

    def _read_object(
        self, salesforce: SalesforcePort, sobject: str, fields: tuple[str, ...], lookback_seconds: int
    ) -> bool:
        """Mirror one object's changes and move its cursors; False when asked to stop midway."""
        name = f"salesforce.{sobject}"
        counted = f"sf_{sobject.lower()}_read"
        newest: str | None = None
        page: list[dict[str, Any] | Unreadable] = []
        since = _later(self.state.cursor(name), self.state.cursor(f"{name}.queried_at"))
        first = since is None and not self.state.has_sf(sobject)
        for raw in salesforce.iter_changed(sobject, fields, since, lookback_seconds=lookback_seconds):
            if self.hooks.should_stop():
                return False
            self.report.counts[counted] += 1
            page.append(raw)
            if len(page) >= PAGE:
                newest = self._store_sf(sobject, page, newest)
                page = []
                self.hooks.progress(f"Salesforce {sobject} read", self.report.counts[counted], None)
        newest = self._store_sf(sobject, page, newest)
        self.hooks.progress(f"Salesforce {sobject} read", self.report.counts[counted], None)
        if newest:
            self.state.set_cursor(name, newest)
        queried = salesforce.last_query_time
        if queried is not None:
            # This read saw every record that was visible when it started: the next one need not
            # look further back than `lookback_seconds` before that moment, even when the newest
            # change is older (otherwise an idle cycle re-reads the last burst forever).
            self.state.set_cursor(f"{name}.queried_at", iso(queried))
            if sobject in _RECONCILED and self.reconcile_hours > 0:
                if first:  # a read from the start into an empty mirror: nothing to compare
                    self.state.set_cursor(f"{name}.reconciled_at", iso(queried))
                elif self._reconcile_due(name, queried):
                    return self.reconcile(salesforce, sobject, fields, queried)
        return True

    def _reconcile_due(self, name: str, now: datetime) -> bool:
        last = _moment(self.state.cursor(f"{name}.reconciled_at"))
        return last is None or (now - last).total_seconds() >= self.reconcile_hours * 3600

    def reconcile(self, salesforce: SalesforcePort, sobject: str, fields: tuple[str, ...], now: datetime) -> bool:
        """Compare the mirrored `sobject` records with the Ids Salesforce has now (one request per
        2,000; the Ids held in a temporary table); False when asked to stop midway. A record
        deleted and then purged from the recycle bin before a read saw its deletion (QueryAll
        returns a deleted record only while it is in the bin) is in no change list: without this
        it would stay in the mirror for good, a person's purged lead holding its account back.
        Each mirrored record no longer there is handled as a deletion read by QueryAll
        (`_store_sf`): it leaves the mirror, except a lead crm-sync created, kept marked deleted
        (a person's "no"), its SystemModstamp this moment (when the deletion was first known). A
        present record the mirror lacks (out of sight for a while, or restored) is read by id
        and mirrored (one request per 200). An Id that cannot be read, or more vanished records
        than `reconcile_max_share` allows, leaves the mirror as it is until the next comparison."""
        complete = self._scan_ids(salesforce, sobject)
        if complete is None:
            return False
        self.state.set_cursor(f"salesforce.{sobject}.reconciled_at", iso(now))
        if not complete:
            self.report.notices.append(
                f"Salesforce {sobject}: an Id could not be read; the mirror is compared again in "
                f"{self.reconcile_hours:g} hours"
            )
            return True
        live, vanished, unseen = self.state.compare_ids(sobject)
        if len(vanished) > max(_RECONCILE_FLOOR, self.reconcile_max_share * live):
            self.report.notices.append(
                f"Salesforce {sobject}: {len(vanished)} of the {live} mirrored records are no longer "
                f"visible to crm-sync; not removed from the mirror (more than [salesforce] reconcile_max_share = "
                f"{self.reconcile_max_share:g}: check the integration user's access to {sobject} records; raise the "
                f"share if they were purged). Compared again in {self.reconcile_hours:g} hours."
            )
            vanished = []
        if vanished:
            self._vanished(sobject, vanished, now)
        return self._read_unseen(salesforce, sobject, fields, unseen)

    def _scan_ids(self, salesforce: SalesforcePort, sobject: str) -> bool | None:
        """Every present Id of `sobject` into the comparison's table: whether every one could be
        read (None: asked to stop midway)."""
        return self._present_ids(salesforce.iter_ids(sobject))

    def _present_ids(self, ids: Iterable[str | None]) -> bool | None:
        """The ids a service lists into the comparison's table (`StateDB.begin_id_comparison`), a
        page at a time: whether every one could be read (None: asked to stop midway)."""
        self.state.begin_id_comparison()
        complete = True
        batch: list[str] = []
        for record_id in ids:
            if self.hooks.should_stop():
                return None
            if record_id is None:
                complete = False
                continue
            batch.append(record_id)
            if len(batch) >= PAGE:
                self.state.add_present_ids(batch)
                batch = []
        self.state.add_present_ids(batch)
        return complete

    def _read_unseen(self, salesforce: SalesforcePort, sobject: str, fields: tuple[str, ...], ids: list[str]) -> bool:
        """Read and mirror these present records the mirror lacks; False when asked to stop."""
        page: list[dict[str, Any] | Unreadable] = []
        for raw in salesforce.read_by_ids(sobject, fields, ids) if ids else ():
            if self.hooks.should_stop():
                return False
            self.report.counts[f"sf_{sobject.lower()}_read"] += 1
            page.append(raw)
            if len(page) >= PAGE:
                self._store_sf(sobject, page, None)
                page = []
        self._store_sf(sobject, page, None)
        return True

    def _vanished(self, sobject: str, vanished: list[str], now: datetime) -> None:
        """Mirrored records Salesforce no longer has, handled as deletions read by QueryAll."""
        stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        mirrored = self.state.sf_raw_many(sobject, vanished)
        kept: list[dict[str, Any]] = []
        gone: list[str] = []
        for record_id in vanished:
            raw = mirrored.get(record_id, {})
            if sobject == "Lead" and raw.get("Sync_Key__c"):  # crm-sync's own lead: kept, marked
                marked = _ENCODE({**raw, "IsDeleted": True, "SystemModstamp": stamp})
                kept.append({"object": sobject, "id": record_id, "modstamp": stamp, "raw": marked, "error": None})
            else:
                gone.append(record_id)
            self.report.counts[f"sf_{sobject.lower()}_deleted"] += 1
        self.state.upsert_sf(kept)
        self.state.remove_sf(sobject, gone)

    def _store_sf(self, sobject: str, page: list[dict[str, Any] | Unreadable], newest: str | None) -> str | None:
        """Mirror one page of `sobject`; returns the newest readable SystemModstamp so far."""
        page = self._storable(f"salesforce {sobject}", page, "Id", "SystemModstamp")
        page = self._status_since(sobject, page)
        held = self.state.sf_versions(sobject, (str(_sf_id(raw)) for raw in page))
        # SystemModstamp has one-second precision: a record changed twice within a second, read in
        # between, comes back under the stamp the mirror holds. Only a record whose content is
        # also the same is the unchanged repeat of a look-back.
        same = self.state.sf_holds(
            sobject,
            {
                str(raw.get("Id")): _ENCODE(raw)
                for raw in page
                if isinstance(raw, dict) and held.get(str(raw.get("Id"))) == raw.get("SystemModstamp")
            },
        )
        rows: dict[str, dict[str, Any]] = {}
        gone: list[str] = []
        for raw in page:
            if isinstance(raw, Unreadable):
                row = self._unreadable(f"salesforce {sobject}", raw, held)
                if row is not None:
                    rows[row["id"]] = {**row, "object": sobject}
                    newest = _newest(row["modstamp"], newest) if raw.stamp is not None else newest
                continue
            record_id = str(raw.get("Id"))
            stamp = raw.get("SystemModstamp")
            if not isinstance(stamp, str):
                self.report.record_errors.append(
                    RecordError(f"salesforce {sobject}", record_id, "SystemModstamp", "missing SystemModstamp")
                )
                continue
            if held.get(record_id) == stamp and record_id in same:
                continue
            if raw.get("IsDeleted") is True and not (sobject == "Lead" and raw.get("Sync_Key__c")):
                # Deleted, or merged into another record, in Salesforce (QueryAll): no longer a
                # fact. crm-sync's own leads are kept, marked deleted: a person deleted what
                # crm-sync created, and rules.episodes reads that as their "no" (never re-created).
                gone.append(record_id)
                held[record_id] = stamp
                newest = _newest(stamp, newest)
                self.report.counts[f"sf_{sobject.lower()}_deleted"] += 1
                continue
            problem = self._problem(sobject, raw)
            rows[record_id] = {"object": sobject, "id": record_id, "modstamp": stamp, "raw": _ENCODE(raw)}
            rows[record_id]["error"] = None if problem is None else json.dumps(problem)
            held[record_id] = stamp
            if problem is None or problem["field"] != "SystemModstamp":  # an unreadable stamp is no cursor
                newest = _newest(stamp, newest)
        self._upsert_sf(rows.values())
        if gone:
            self.state.remove_sf(sobject, gone)
        merges = {"Lead": self._merges, "Account": self._account_merges}.get(sobject)
        if merges is not None:
            merges(page)
        return newest

    def _upsert_sf(self, rows: Iterable[dict[str, Any]]) -> None:
        """Mirror `rows`; the notes a `resync` kept for the page's leads have then served."""
        self.state.upsert_sf(rows)
        if self._noted:
            self.state.drop_status_notes(self._noted)
            self._noted = []

    def _status_since(self, sobject: str, page: list[dict[str, Any] | Unreadable]) -> list[dict[str, Any] | Unreadable]:
        """For Leads, each lead of `page` with crm-sync's note of since when it holds its `Status`
        (`core.records.STATUS_SINCE`): kept from the mirror while the status is the one it holds,
        else this version's SystemModstamp (a status changed, or a lead first seen). Salesforce
        keeps no such date, and SystemModstamp moves with any later edit (a marketing tool's, an
        enrichment's): read from it, a lead disqualified months ago and touched since would look
        disqualified yesterday, and its account's cool-off would start again (`rules.episodes`).
        The note is part of the record as mirrored, so a version read again is still the same.

        A lead the mirror holds in the same status without a readable note (mirrored by a release
        that kept none) is dated by the version it holds: the status was there then. A note later
        than the version read (a clock or a state gone wrong) is not kept. A lead the mirror no
        longer holds after a `resync` keeps the note it had (`StateDB.reset_mirror`); the note is
        forgotten once the lead is mirrored again (`_store_sf`)."""
        if sobject != "Lead":
            return page
        ids = [str(raw.get("Id")) for raw in page if isinstance(raw, dict)]
        known = self.state.lead_statuses(ids) if ids else {}
        unknown = [record_id for record_id in ids if record_id not in known]
        waiting = self.state.status_notes(unknown) if unknown else {}
        self._noted.extend(waiting)
        known.update((record_id, (status, since, since)) for record_id, (status, since) in waiting.items())
        noted: list[dict[str, Any] | Unreadable] = []
        for raw in page:
            if isinstance(raw, dict):
                stamp = raw.get("SystemModstamp")
                held = known.get(str(raw.get("Id")))
                if held is not None and held[0] == raw.get("Status"):
                    stamp = _earlier_note(held[1], held[2], stamp)
                raw = {**raw, STATUS_SINCE: stamp}
            noted.append(raw)
        return noted

    def _merges(self, page: list[dict[str, Any] | Unreadable]) -> None:
        """Which lead each lead of `page` merged away lives on in (`MasterRecordId`), for
        `SalesforceFacts` (crm-sync's lead merged into a person's is not their "no"), a person's
        merged lead included (it leaves the mirror, and a merge into it must still be followed);
        a lead read not deleted (restored) is merged no longer."""
        merged: list[tuple[str, str, str, bool]] = []
        live: list[str] = []
        for raw in page:
            if not isinstance(raw, dict):
                continue
            record_id = _stored_text(raw.get("Id"))
            master, stamp = _stored_text(raw.get("MasterRecordId")), _stored_text(raw.get("SystemModstamp"))
            if record_id is None:
                continue
            if raw.get("IsDeleted") is not True:
                live.append(record_id)
            elif master and stamp:
                merged.append((record_id, master, stamp, bool(raw.get("Sync_Key__c"))))
        self.state.record_merges(merged, live=live)

    def _storable(
        self, system: str, page: list[dict[str, Any] | Unreadable], id_key: str, stamp_key: str
    ) -> list[dict[str, Any] | Unreadable]:
        """`page` without the records whose id or timestamp is text SQLite cannot store (a lone
        surrogate: bytes that were not UTF-8 on the wire, `core.decoding`), each reported with
        its id, escaped; a malformed value elsewhere in a record is the parsers' to report."""
        kept: list[dict[str, Any] | Unreadable] = []
        for raw in page:
            values = (
                (raw.record_id, raw.stamp) if isinstance(raw, Unreadable) else (raw.get(id_key), raw.get(stamp_key))
            )
            bad = [key for key, value in zip((id_key, stamp_key), values, strict=True) if _unstorable(value)]
            if not bad:
                kept.append(raw)
                continue
            shown = (
                values[0].encode("utf-8", "backslashreplace").decode() if isinstance(values[0], str) else "(unknown id)"
            )
            self.report.record_errors.append(RecordError(system, shown, bad[0], "not valid text (not UTF-8)"))
        return kept

    def _account_merges(self, page: list[dict[str, Any] | Unreadable]) -> None:
        """Which Salesforce Account each Account of `page` merged away lives on in
        (`MasterRecordId`), with the Vitally account it named: the merge moved its opportunities
        to that Account, which may name none (`SalesforceFacts` joins them to it all the same).
        A value SQLite cannot store (a lone surrogate: a hostile record) is not a merge's."""
        merged: list[tuple[str, str, str | None, str]] = []
        for raw in page:
            if not isinstance(raw, dict) or raw.get("IsDeleted") is not True:
                continue
            record_id, master = _stored_text(raw.get("Id")), _stored_text(raw.get("MasterRecordId"))
            stamp = _stored_text(raw.get("SystemModstamp"))
            if record_id and master and stamp:
                merged.append((record_id, master, _stored_text(raw.get("Vitally_Account_Id__c")), stamp))
        self.state.record_account_merges(merged)

    def _unreadable(self, system: str, record: Unreadable, held: Mapping[str, str]) -> dict[str, Any] | None:
        """A record the connector could not decode within the limits: reported (id and field) the
        first time this version is read, then remembered in the mirror as malformed under its id
        and timestamp (a stub holding only those), so that it is not reported again until the
        service sends it changed. Returns that row (`id`, `modstamp`, `raw`, `error`), or None
        when it was reported before, or has no id to remember it by."""
        version = record.stamp if record.stamp is not None else "(unreadable)"
        if record.record_id is not None and held.get(record.record_id) == version:
            return None
        error = RecordError(system, record.record_id or "(unknown id)", record.field, record.message)
        self.report.record_errors.append(error)
        if record.record_id is None:
            return None
        stub = {"Id" if system.startswith("salesforce") else "id": record.record_id}
        problem = {"field": record.field, "message": record.message}
        return {"id": record.record_id, "modstamp": version, "raw": json.dumps(stub), "error": json.dumps(problem)}

    def _problem(self, sobject: str, raw: Mapping[str, Any]) -> dict[str, str] | None:
        """What is wrong with a Salesforce record (reported now), or None when it parses."""
        try:
            _SF_PARSERS[sobject](raw)
        except RecordError as bad:
            self.report.record_errors.append(detached(bad))
            return {"field": bad.field, "message": bad.message}
        return None


def _unstorable(value: object) -> bool:
    """Whether `value` is text SQLite cannot store as UTF-8 (it holds a lone surrogate). ASCII, as
    every id and timestamp nearly always is, is answered without encoding (two per record read)."""
    return isinstance(value, str) and not value.isascii() and _stored_text(value) is None


def _stored_text(value: object) -> str | None:
    """`value` when it is text SQLite can store (UTF-8: no lone surrogate), not empty; else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return None
    return value


def _account_id(raw: Mapping[str, Any] | Unreadable) -> str | None:
    record_id = raw.record_id if isinstance(raw, Unreadable) else raw.get("id")
    return record_id if isinstance(record_id, str) else None


def _sf_id(raw: Mapping[str, Any] | Unreadable) -> object:
    return raw.record_id if isinstance(raw, Unreadable) else raw.get("Id")


def _moment(updated: object) -> datetime | None:
    """A readable `updatedAt`, else None (an unreadable one is reported with the record)."""
    if not isinstance(updated, str):
        return None
    try:
        return parse_timestamp(updated)
    except ValueError:
        return None
